"""Prompts of the shapes world: a meaning sampler, several surface forms per meaning, and splits.

The held-out split is compositional: a few colour x shape pairs (chosen by the split seed) never occur
in training or validation prompts, and every held-out prompt contains at least one of them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import product

from .vocabulary import (
    COLORS,
    COUNT_WORDS,
    INVERSE,
    MAX_OBJECTS,
    PLURALS,
    RELATIONS,
    SHAPES,
    SIZES,
    Group,
    Meaning,
    Relation,
)

RELATION_PHRASES = {
    "left of": ("to the left of", "left of", "on the left side of"),
    "right of": ("to the right of", "right of", "on the right side of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
# "B with A on its left": A is left of B.
WITH_PHRASES = {"left of": "on {its} left", "right of": "on {its} right", "above": "above {it}", "below": "below {it}"}
SPLITS = ("train", "val", "heldout")


@dataclass(frozen=True)
class Prompt:
    text: str
    meaning: Meaning

    def to_dict(self) -> dict:
        return {"prompt": self.text, "meaning": self.meaning.to_dict()}


def noun_phrase(group: Group) -> str:
    """'a small red circle', 'a cyan square', 'two large blue diamonds'."""
    words = [w for w in (group.size, group.color) if w]
    noun = group.shape if group.count == 1 else PLURALS[group.shape]
    body = " ".join([*words, noun])
    if group.count == 1:
        return ("an " if body[0] in "aeiou" else "a ") + body
    return f"{COUNT_WORDS[group.count]} {body}"


def definite_phrase(group: Group) -> str:
    """'the red circle' / 'the blue squares', for referring back to a group."""
    noun = group.shape if group.count == 1 else PLURALS[group.shape]
    return " ".join(["the", *[w for w in (group.size, group.color) if w], noun])


def _relation_clause(meaning: Meaning, rel: Relation, rng: random.Random, *, refer_back: bool) -> str:
    a, b = meaning.groups[rel.subject], meaning.groups[rel.object]
    b_text = definite_phrase(b) if refer_back else noun_phrase(b)
    form = rng.randrange(3)
    if form == 0 or refer_back:
        return f"{noun_phrase(a)} {rng.choice(RELATION_PHRASES[rel.relation])} {b_text}"
    if form == 1:  # the same fact from the other side
        return f"{noun_phrase(b)} {rng.choice(RELATION_PHRASES[INVERSE[rel.relation]])} {noun_phrase(a)}"
    plural = b.count > 1
    tail = WITH_PHRASES[rel.relation].format(its="their" if plural else "its", it="them" if plural else "it")
    return f"{noun_phrase(b)} with {noun_phrase(a)} {tail}"


def describe(meaning: Meaning, rng: random.Random) -> str:
    """One surface form of a meaning, chosen by `rng`."""
    groups, rels = meaning.groups, meaning.relations
    if not rels:
        phrases = [noun_phrase(g) for g in groups]
        if len(phrases) == 1:
            return rng.choice(("{}", "{} on a white background", "an image of {}")).format(phrases[0])
        joined = ", ".join(phrases[:-1]) + " and " + phrases[-1]
        return rng.choice(("{}", "{} on a white background")).format(joined)
    clauses = [_relation_clause(meaning, rels[0], rng, refer_back=False)]
    for rel in rels[1:]:
        clauses.append(_relation_clause(meaning, rel, rng, refer_back=True))
    return ", and ".join(clauses)


def sample_meaning(rng: random.Random, pairs: list[tuple[str, str]], *, must_include=None) -> Meaning:
    """A random meaning whose colour x shape pairs come from `pairs` (one from `must_include` if given)."""
    n_groups = rng.choices((1, 2, 3), weights=(3, 5, 2))[0]
    chosen: list[tuple[str, str]] = []
    if must_include:
        chosen.append(rng.choice(sorted(must_include)))
    while len(chosen) < n_groups:
        pair = rng.choice(pairs)
        if pair not in chosen:
            chosen.append(pair)
    rng.shuffle(chosen)
    counts = [1] * n_groups
    budget = MAX_OBJECTS - n_groups
    for i in range(n_groups):
        if budget and rng.random() < 0.3:
            extra = rng.randint(1, min(budget, 2))
            counts[i] += extra
            budget -= extra
    groups = []
    for (color, shape), count in zip(chosen, counts):
        size = rng.choice((None, *SIZES)) if count == 1 else rng.choice((None, "small"))
        groups.append(Group(color, shape, count, size))
    relations: list[Relation] = []
    if n_groups >= 2 and rng.random() < 0.8:
        relations.append(Relation(0, rng.choice(RELATIONS), 1))
        if n_groups == 3:
            relations.append(Relation(2, rng.choice(RELATIONS), 1))
    return Meaning(tuple(groups), tuple(relations))


class ShapesGrammar:
    """Deterministic prompt sets: the same (seed, split, n) always gives the same prompts."""

    def __init__(self, seed: int = 0, heldout_pairs: int = 4):
        all_pairs = list(product(COLORS, SHAPES))
        rng = random.Random(f"heldout-{seed}")
        # Hold out pairs so that every colour and every shape still occurs in training.
        while True:
            held = set(rng.sample(all_pairs, heldout_pairs))
            seen = [p for p in all_pairs if p not in held]
            if {c for c, _ in seen} == set(COLORS) and {s for _, s in seen} == set(SHAPES):
                break
        self.seed = seed
        self.heldout_pairs = frozenset(held)
        self.train_pairs = sorted(seen)

    def prompts(self, split: str, n: int) -> list[Prompt]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        rng = random.Random(f"{split}-{self.seed}")
        out = []
        for _ in range(n):
            if split == "heldout":
                meaning = sample_meaning(rng, list(product(COLORS, SHAPES)), must_include=self.heldout_pairs)
            else:
                meaning = sample_meaning(rng, self.train_pairs)
            out.append(Prompt(describe(meaning, rng), meaning))
        return out

    def is_heldout(self, meaning: Meaning) -> bool:
        return any(g.pair in self.heldout_pairs for g in meaning.groups)
