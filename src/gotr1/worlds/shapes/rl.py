"""What GRPO needs from the shapes world: prompts to train on and the exact reward to train with."""

from __future__ import annotations

import random
from itertools import product

from ...rewards.scoring import RewardPipeline
from ...train.prompts import shuffled_source
from .grammar import SPLITS, Prompt, ShapesGrammar, describe, sample_meaning
from .rewards import RPI, RRI, RSem, RSpa
from .vocabulary import COLORS, SHAPES

COMPONENTS = {"r_sem": RSem, "r_spa": RSpa, "r_ri": RRI, "r_pi": RPI}


def reward_function(
    components=("r_sem", "r_spa", "r_ri", "r_pi"),
    combine: str = "product",
    weights: dict[str, float] | None = None,
    *,
    max_missing_fraction: float = 1.0,
) -> RewardPipeline:
    """The exact rewards as a pipeline: ``fn(prompts, chains, images) -> (totals, {component: values})``.

    ``combine`` is any of :data:`gotr1.rewards.combine.COMBINERS`; product / mean_product need all
    four components, sum takes any (e.g. R_RI alone). A total is None when a component it uses is
    None (no image), never a silent 0.
    """
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise ValueError(f"unknown reward component(s) {unknown}; choose from {sorted(COMPONENTS)}")
    return RewardPipeline(
        {name: COMPONENTS[name]() for name in components}, combine, weights, max_missing_fraction=max_missing_fraction
    )


HELDOUT_PAIRS = "heldout-pairs"  # a prompt set for RL, beside the grammar's splits
PROMPT_SETS = (*SPLITS, HELDOUT_PAIRS)
EVAL_RESERVE = 2000  # held-out prompts (the evaluation's, in order) whose meanings RL prompts never take


def heldout_pair_prompts(grammar: ShapesGrammar, n: int) -> list[Prompt]:
    """Prompts drawn like the held-out split (each holds a held-out colour x shape pair) from their own
    seed, leaving out every meaning among the first EVAL_RESERVE held-out prompts: the pairs are new to the
    SFT model, the evaluation prompts stay new to RL (as a benchmark's train prompts are to its test set)."""
    rng = random.Random("rl-hdist")
    taken = {p.meaning for p in grammar.prompts("heldout", EVAL_RESERVE)}
    pairs = list(product(COLORS, SHAPES))
    out = []
    while len(out) < n:
        meaning = sample_meaning(rng, pairs, must_include=grammar.heldout_pairs)
        if meaning not in taken:
            out.append(Prompt(describe(meaning, rng), meaning))
    return out


def check_clear_of_evaluation(prompt_set: str, eval_prompts: int) -> None:
    """ValueError when evaluating on `eval_prompts` held-out prompts would meet the RL prompts of `prompt_set`."""
    if prompt_set == HELDOUT_PAIRS and eval_prompts > EVAL_RESERVE:
        raise ValueError(
            f"{eval_prompts} would overlap the RL prompts of {HELDOUT_PAIRS}, which keep clear of the "
            f"first {EVAL_RESERVE} evaluation prompts only"
        )
    if eval_prompts > EVAL_RESERVE:
        raise ValueError(
            f"{eval_prompts} is more than the held-out evaluation holds: it draws from the first "
            f"{EVAL_RESERVE} held-out prompts (as gotr1 eval shapes does); give at most {EVAL_RESERVE}"
        )


def prompt_source(grammar: ShapesGrammar, prompts_per_step: int, *, split: str = "train", pool: int = 5000):
    """source(step, rng) -> prompts: shuffled passes over a fixed pool of a split's prompts, or of
    `heldout_pair_prompts` (split "heldout-pairs")."""
    if split not in PROMPT_SETS:
        raise ValueError(f"unknown shapes prompt set {split!r}; choose from {', '.join(PROMPT_SETS)}")
    prompts = heldout_pair_prompts(grammar, pool) if split == HELDOUT_PAIRS else grammar.prompts(split, pool)
    return shuffled_source(prompts, prompts_per_step)
