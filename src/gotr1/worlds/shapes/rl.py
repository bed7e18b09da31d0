"""What GRPO needs from the shapes world: prompts to train on and the exact reward to train with."""

from __future__ import annotations

from ...rewards.scoring import RewardPipeline
from ...train.prompts import shuffled_source
from .grammar import ShapesGrammar
from .rewards import RPI, RRI, RSem, RSpa

COMPONENTS = {"r_sem": RSem, "r_spa": RSpa, "r_ri": RRI, "r_pi": RPI}


def reward_function(components=("r_sem", "r_spa", "r_ri", "r_pi"), combine: str = "product",
                    weights: dict[str, float] | None = None, *, max_missing_fraction: float = 1.0) -> RewardPipeline:
    """The exact rewards as a pipeline: ``fn(prompts, chains, images) -> (totals, {component: values})``.

    ``combine`` is any of :data:`gotr1.rewards.combine.COMBINERS`; product / mean_product need all
    four components, sum takes any (e.g. R_RI alone). A total is None when a component it uses is
    None (no image), never a silent 0.
    """
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise ValueError(f"unknown reward component(s) {unknown}; choose from {sorted(COMPONENTS)}")
    return RewardPipeline({name: COMPONENTS[name]() for name in components}, combine, weights,
                          max_missing_fraction=max_missing_fraction)


def prompt_source(grammar: ShapesGrammar, prompts_per_step: int, *, split: str = "train", pool: int = 5000):
    """source(step, rng) -> prompts: shuffled passes over a fixed pool of the split's prompts."""
    return shuffled_source(grammar.prompts(split, pool), prompts_per_step)
