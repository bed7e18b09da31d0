"""Scoring a batch with several reward components and one combiner: what a trainer calls.

``pipeline(prompts, chains, images) -> (totals, {component: values})`` is the reward function the
GRPO trainer takes; ``pipeline.evaluate`` keeps every component's reason and raw judge answers for
``gotr1 reward``. Missing values are counted per component. When more than
``max_missing_fraction`` of a batch's totals are missing the pipeline raises
:class:`RewardsUnavailable` instead of letting a dead judge train on almost nothing. A caller that
scores one batch in several calls (GRPO scoring each sampled chunk) makes them one batch with
``with pipeline.one_batch():``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from .base import Reward, RewardResult
from .combine import check_combiner, combine

__all__ = ["CallableReward", "RewardPipeline", "RewardsUnavailable", "ScoredSample"]


class RewardsUnavailable(RuntimeError):
    """Too many samples of a batch could not be scored (judge down, misconfigured, overloaded)."""


class CallableReward(Reward):
    """A plain ``fn(prompts, chains, images) -> list[float | None]`` as a :class:`Reward`."""

    def __init__(self, name: str, fn: Callable[..., Sequence[float | None]]) -> None:
        self.name, self.fn = name, fn

    def __repr__(self) -> str:
        return f"CallableReward({self.name!r}, {self.fn!r})"

    def evaluate_batch(self, prompts, chains, images) -> list[RewardResult]:
        values = list(self.fn(prompts, chains, images))
        if len(values) != len(chains):
            raise ValueError(f"reward {self.name!r} returned {len(values)} values for {len(chains)} samples")
        return [
            RewardResult(None if v is None else float(v), reason=None if v is not None else "missing") for v in values
        ]


@dataclass
class ScoredSample:
    total: float | None
    results: dict[str, RewardResult]

    @property
    def components(self) -> dict[str, float | None]:
        return {name: result.value for name, result in self.results.items()}


@dataclass
class _Counts:
    samples: int = 0
    missing_total: int = 0
    missing: dict[str, int] = field(default_factory=dict)


class RewardPipeline:
    """Named components (each a :class:`Reward` or plain callable) and how to combine them."""

    def __init__(
        self,
        components: Mapping[str, Reward | Callable[..., Sequence[float | None]]],
        combine: str = "product",
        weights: Mapping[str, float] | None = None,
        *,
        max_missing_fraction: float = 1.0,
    ) -> None:
        check_combiner(combine, components, weights)
        self.components: dict[str, Reward] = {
            name: part if isinstance(part, Reward) else CallableReward(name, part) for name, part in components.items()
        }
        self.combine, self.weights = combine, dict(weights or {})
        self.max_missing_fraction = max_missing_fraction
        self.counts = _Counts(missing=dict.fromkeys(self.components, 0))
        self._batch: list[ScoredSample] | None = None  # inside one_batch: what the check will see

    def __repr__(self) -> str:
        return f"RewardPipeline({self.components!r}, combine={self.combine!r})"

    def judges(self) -> list[Any]:
        """The distinct judges behind the components (for their statistics)."""
        seen: dict[int, Any] = {}
        for part in self.components.values():
            judge = getattr(part, "judge", None)
            if judge is not None:
                seen.setdefault(id(judge), judge)
        return list(seen.values())

    def evaluate(
        self, prompts: Sequence[Any], chains: Sequence[str], images: Sequence[Image.Image | None]
    ) -> list[ScoredSample]:
        columns = {name: part.evaluate(prompts, chains, images) for name, part in self.components.items()}
        samples = []
        for i in range(len(chains)):
            results = {name: column[i] for name, column in columns.items()}
            total = combine(self.combine, {n: r.value for n, r in results.items()}, self.weights)
            samples.append(ScoredSample(total, results))
        self._count(samples)
        return samples

    @contextmanager
    def one_batch(self) -> Iterator[None]:
        """Calls inside count as one batch for ``max_missing_fraction``, checked on leaving: scored in
        chunks, a step stops exactly when it would scored at once (not on a chunk that happens to hold
        most of the misses). Calls may come from another thread, one at a time; an error inside skips
        the check."""
        if self._batch is not None:
            raise RuntimeError("RewardPipeline.one_batch does not nest")
        self._batch = []
        try:
            yield
            batch = self._batch
        finally:
            self._batch = None
        self._check(batch)

    def _count(self, samples: list[ScoredSample]) -> None:
        counts = self.counts
        counts.samples += len(samples)
        counts.missing_total += sum(s.total is None for s in samples)
        for sample in samples:
            for name, result in sample.results.items():
                counts.missing[name] += result.missing
        if self._batch is not None:
            self._batch.extend(samples)
        else:
            self._check(samples)

    def _check(self, samples: list[ScoredSample]) -> None:
        """RewardsUnavailable when more than max_missing_fraction of a batch's totals are missing."""
        missing = sum(s.total is None for s in samples)
        if samples and missing / len(samples) > self.max_missing_fraction:
            reasons: dict[str, int] = {}
            for sample in samples:
                for result in sample.results.values():
                    if result.missing:
                        key = (result.reason or "missing")[:120]
                        reasons[key] = reasons.get(key, 0) + 1
            common = ", ".join(f"{k} x{v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
            raise RewardsUnavailable(
                f"{missing} of {len(samples)} samples have no reward "
                f"(limit {self.max_missing_fraction:.0%}); most common: {common}"
            )

    def __call__(
        self, prompts: Sequence[Any], chains: Sequence[str], images: Sequence[Image.Image | None]
    ) -> tuple[list[float | None], dict[str, list[float | None]]]:
        samples = self.evaluate(prompts, chains, images)
        return [s.total for s in samples], {name: [s.results[name].value for s in samples] for name in self.components}

    def report(self) -> dict[str, Any]:
        """Counts of missing values and each judge's statistics."""
        return {
            "samples": self.counts.samples,
            "missing_total": self.counts.missing_total,
            "missing": dict(self.counts.missing),
            "judges": {getattr(j, "model_id", repr(j)): j.stats.as_dict() for j in self.judges()},
        }
