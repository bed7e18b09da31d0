"""Typed prompts back to meanings, so a prompt from a user (demo, HTTP API) gets the world's exact rewards.

The exact rewards score against a prompt's :class:`Meaning`, which the grammar knows only for prompts it
sampled itself. :func:`read_prompt` inverts :func:`gotr1.worlds.shapes.grammar.describe`: it reads every
sentence ``describe`` can write (and little more) and returns None for anything else.

The language read here: an optional ``an image of`` before and ``on a white background`` after a list of
parts joined by ``, `` / `` and `` / ``, and ``; a part is a noun phrase (``two small red circles``) or a
relation clause (``A <relation phrase> B`` or ``B with A on its left``), and a phrase is indefinite
(``a`` / ``an`` / a count word) or a definite ``the ...`` referring back to a group already mentioned. Case,
spacing and a trailing period do not matter. Groups are numbered in order of first mention, relations
point at those numbers, and a scene never holds more than ``MAX_OBJECTS`` objects.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .grammar import RELATION_PHRASES, WITH_PHRASES, Prompt
from .vocabulary import COLORS, COUNT_WORDS, INVERSE, MAX_OBJECTS, PLURALS, SHAPES, SIZES, Group, Meaning, Relation

__all__ = ["read_prompt", "same_scene"]


def _alternatives(words) -> str:
    """A regex alternation of `words`, longest first."""
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_COUNTS = {word: count for count, word in COUNT_WORDS.items()} | {"an": 1}
_SINGULAR = {PLURALS[shape]: shape for shape in SHAPES} | {shape: shape for shape in SHAPES}
_RELATION = {phrase: rel for rel, phrases in RELATION_PHRASES.items() for phrase in phrases}
# "on its left" -> ("left of", singular object), "on their left" -> ("left of", plural object).
_WITH_TAIL = {
    template.format(its="their" if plural else "its", it="them" if plural else "it"): (rel, plural)
    for rel, template in WITH_PHRASES.items()
    for plural in (False, True)
}

_NP = (
    rf"(?:{_alternatives([*_COUNTS, 'the'])}) (?:(?:{_alternatives(SIZES)}) )?"
    rf"(?:{_alternatives(COLORS)}) (?:{_alternatives(_SINGULAR)})"
)
_PHRASE = re.compile(_NP)
_CLAUSE = re.compile(rf"(?P<a>{_NP}) (?P<rel>{_alternatives(_RELATION)}) (?P<b>{_NP})")
_WITH_CLAUSE = re.compile(rf"(?P<b>{_NP}) with (?P<a>{_NP}) (?P<tail>{_alternatives(_WITH_TAIL)})")
_SEPARATOR = re.compile(r", and |, | and ")
_PREFIX, _SUFFIX = "an image of ", " on a white background"


class _Phrase(NamedTuple):
    definite: bool
    count: int | None  # None: a definite plural, whose count is the referred group's
    size: str | None
    color: str
    shape: str

    @property
    def plural(self) -> bool:
        return self.count != 1


def _read_phrase(text: str) -> _Phrase | None:
    if _PHRASE.fullmatch(text) is None:
        return None
    det, *adjectives, noun = text.split()
    singular = noun in SHAPES
    count = (1 if singular else None) if det == "the" else _COUNTS[det]
    if count is not None and (count == 1) != singular:
        return None  # "a red circles", "two red circle"
    size = adjectives[0] if len(adjectives) == 2 else None
    return _Phrase(det == "the", count, size, adjectives[-1], _SINGULAR[noun])


class _Reader:
    """Groups in order of first mention, and the relations between them."""

    def __init__(self) -> None:
        self.groups: list[Group] = []
        self.relations: list[Relation] = []

    def group(self, text: str) -> int | None:
        """The index of the group a phrase names: a new one, or one mentioned before."""
        phrase = _read_phrase(text)
        if phrase is None:
            return None
        found = next((i for i, g in enumerate(self.groups) if g.pair == (phrase.color, phrase.shape)), None)
        if phrase.definite:  # refers back: same number, and the same size if it says one
            if found is None:
                return None
            group = self.groups[found]
            agrees = (group.count > 1) == phrase.plural and phrase.size in (None, group.size)
            return found if agrees else None
        group = Group(phrase.color, phrase.shape, phrase.count, phrase.size)
        if found is not None:  # the world never has two groups of one colour and shape
            return found if self.groups[found] == group else None
        self.groups.append(group)
        return len(self.groups) - 1

    def part(self, text: str) -> bool:
        """Read one noun phrase or relation clause; False when it is neither."""
        if match := _CLAUSE.fullmatch(text):
            return self.relate(match["a"], _RELATION[match["rel"]], match["b"])
        if match := _WITH_CLAUSE.fullmatch(text):  # "B with A on its left": A is left of B
            relation, plural = _WITH_TAIL[match["tail"]]
            b = _read_phrase(match["b"])
            if b is None or b.plural != plural:
                return False
            return self.relate(match["a"], relation, match["b"], subject_first=False)
        return self.group(text) is not None

    def relate(self, a: str, relation: str, b: str, *, subject_first: bool = True) -> bool:
        if subject_first:
            subject, obj = self.group(a), self.group(b)
        else:
            obj, subject = self.group(b), self.group(a)
        if subject is None or obj is None or subject == obj:
            return False
        self.relations.append(Relation(subject, relation, obj))
        return True


def read_prompt(text: str) -> Prompt | None:
    """`Prompt(text, meaning)` for a sentence of the shapes world's language; None for any other text."""
    if not isinstance(text, str):
        return None
    body = re.sub(r"\s*,\s*", ", ", " ".join(text.lower().split())).removesuffix(".").rstrip()
    body = body.removeprefix(_PREFIX).removesuffix(_SUFFIX)
    reader = _Reader()
    if not body or not all(reader.part(part) for part in _SEPARATOR.split(body)):
        return None
    meaning = Meaning(tuple(reader.groups), tuple(reader.relations))
    if meaning.num_objects > MAX_OBJECTS:
        return None
    return Prompt(text, meaning)


def _canonical(meaning: Meaning) -> tuple:
    """Groups sorted, and relations as sorted (subject group, relation, object group) facts, each stated
    with "left of" / "above" (a "right of" b is b "left of" a)."""

    def key(group: Group) -> tuple:
        return (group.color, group.shape, group.count, group.size or "")

    facts = []
    for rel in meaning.relations:
        subject, relation, obj = rel.subject, rel.relation, rel.object
        if relation in ("right of", "below"):
            subject, relation, obj = obj, INVERSE[relation], subject
        facts.append((key(meaning.groups[subject]), relation, key(meaning.groups[obj])))
    return sorted(map(key, meaning.groups)), sorted(facts)


def same_scene(a: Meaning, b: Meaning) -> bool:
    """Do two meanings ask for the same scene, whatever the order of their groups and the side from
    which each relation is stated?"""
    return _canonical(a) == _canonical(b)
