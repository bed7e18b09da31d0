"""Turning the four reward components into the one number GRPO ranks a group by.

- ``product``: GoT-R1's R_PI * (R_sem + R_spa) * R_RI, in [0, 2]. The paper's ablation prefers it
  to a sum: a sample must do well on every stage to score at all.
- ``mean_product``: the same with the two chain scores averaged, in [0, 1].
- ``v2``: the later release's R_PI * (R_sem + R_spa) / 2 * R_RI * R_HPS (needs an ``r_hps``
  component, e.g. a human-preference scorer supplied as a plug-in reward).
- ``sum``: a weighted sum of whichever components are configured (weights default to 1).
A total is None when any component it uses is None: the sample is missing, not zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["COMBINERS", "check_combiner", "combine", "mean_product_reward", "product_reward"]

COMBINERS = ("product", "mean_product", "v2", "sum")
_NEEDS = {
    "product": ("r_sem", "r_spa", "r_ri", "r_pi"),
    "mean_product": ("r_sem", "r_spa", "r_ri", "r_pi"),
    "v2": ("r_sem", "r_spa", "r_ri", "r_pi", "r_hps"),
}


def product_reward(r_sem: float | None, r_spa: float | None, r_ri: float | None, r_pi: float | None) -> float | None:
    """R_PI * (R_sem + R_spa) * R_RI; None if any part is None."""
    if r_sem is None or r_spa is None or r_ri is None or r_pi is None:
        return None
    return r_pi * (r_sem + r_spa) * r_ri


def mean_product_reward(
    r_sem: float | None, r_spa: float | None, r_ri: float | None, r_pi: float | None
) -> float | None:
    """The product reward with the chain's two scores averaged, in [0, 1]."""
    product = product_reward(r_sem, r_spa, r_ri, r_pi)
    return None if product is None else product / 2


def check_combiner(method: str, components: Iterable[str], weights: Mapping[str, float] | None = None) -> None:
    """Raise ValueError (one line) when ``method`` cannot be computed from ``components``."""
    components = set(components)
    if method not in COMBINERS:
        raise ValueError(f"combine must be one of {', '.join(COMBINERS)}, got {method!r}")
    missing = [name for name in _NEEDS.get(method, ()) if name not in components]
    if missing:
        raise ValueError(f"combine={method!r} needs component(s) {', '.join(missing)}")
    stray = sorted(set(weights or {}) - components)
    if stray:
        raise ValueError(f"weights name component(s) not configured: {', '.join(stray)}")
    if method == "sum" and not components:
        raise ValueError("combine='sum' needs at least one component")


def combine(method: str, row: Mapping[str, float | None], weights: Mapping[str, float] | None = None) -> float | None:
    """The total of one sample's component values under ``method`` (see the module docstring)."""
    if method == "sum":
        if any(value is None for value in row.values()):
            return None
        weights = weights or {}
        return sum(weights.get(name, 1.0) * value for name, value in row.items())  # type: ignore[operator]
    if method not in _NEEDS:
        raise ValueError(f"combine must be one of {', '.join(COMBINERS)}, got {method!r}")
    parts = [row.get(name) for name in _NEEDS[method]]
    if any(value is None for value in parts):
        return None
    base = product_reward(*parts[:4])
    if method == "product":
        return base
    base = base / 2  # type: ignore[operator]
    return base if method == "mean_product" else base * parts[4]  # type: ignore[operator]
