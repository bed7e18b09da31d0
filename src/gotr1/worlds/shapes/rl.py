"""What GRPO needs from the shapes world: prompts to train on and the exact reward to train with."""

from __future__ import annotations

import random

from .grammar import ShapesGrammar
from .rewards import RPI, RRI, RSem, RSpa, mean_product_reward, product_reward

COMPONENTS = {"r_sem": RSem, "r_spa": RSpa, "r_ri": RRI, "r_pi": RPI}
COMBINES = ("product", "mean_product", "sum")


def reward_function(components=("r_sem", "r_spa", "r_ri", "r_pi"), combine: str = "product",
                    weights: dict[str, float] | None = None):
    """reward_fn(prompts, chains, images) -> (totals, {component: values}) for the GRPO trainer.

    product / mean_product: the paper's R_PI * (R_sem + R_spa) * R_RI (and its halved v2 form; both
    need all four components); sum: a weighted sum of the chosen components (e.g. R_RI alone).
    A total is None when any component it uses is None (e.g. no image), never a silent 0.
    """
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise ValueError(f"unknown reward component(s) {unknown}; choose from {sorted(COMPONENTS)}")
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}")
    if combine != "sum" and set(components) != set(COMPONENTS):
        raise ValueError(f"combine={combine!r} needs all four components")
    scorers = {name: COMPONENTS[name]() for name in components}
    weights = {name: 1.0 for name in components} | (weights or {})

    def reward_fn(prompts, chains, images):
        values = {name: scorer(prompts, chains, images) for name, scorer in scorers.items()}
        totals = []
        for i in range(len(chains)):
            row = {name: values[name][i] for name in components}
            if combine == "sum":
                totals.append(None if any(v is None for v in row.values())
                              else sum(weights[k] * v for k, v in row.items()))
            else:
                fn = product_reward if combine == "product" else mean_product_reward
                totals.append(fn(row["r_sem"], row["r_spa"], row["r_ri"], row["r_pi"]))
        return totals, values

    return reward_fn


def prompt_source(grammar: ShapesGrammar, prompts_per_step: int, *, split: str = "train", pool: int = 5000):
    """prompt_source(step, rng) -> prompts: a shuffled pass over a fixed pool of training prompts."""
    prompts = grammar.prompts(split, pool)

    def source(step: int, rng: random.Random):
        order = random.Random(f"epoch-{(step * prompts_per_step) // len(prompts)}").sample(range(len(prompts)),
                                                                                         len(prompts))
        start = (step * prompts_per_step) % len(prompts)
        return [prompts[order[(start + i) % len(prompts)]] for i in range(prompts_per_step)]

    return source
