"""What every reward is: a batch function over (prompt, chain, image) triples.

``reward(prompts, chains, images) -> list[float | None]`` with a ``name``, as trl-style trainers
expect; ``reward.evaluate(...)`` gives the same values with the reason and the judge's raw answers
behind each, for ``gotr1 reward`` and for debugging. None means *missing* (no image, or the judge
could not answer): never a silent zero, so a trainer can drop the sample.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

__all__ = ["Reward", "RewardResult", "prompt_text"]


@dataclass
class RewardResult:
    """One sample's score in [0, 1] (None: missing), why, and what the judge said."""

    value: float | None
    reason: str | None = None
    raw: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def missing(self) -> bool:
        return self.value is None


def prompt_text(prompt: Any) -> str:
    """A prompt as text: strings as they are, prompt objects (e.g. the shapes world's) by ``.text``."""
    return prompt if isinstance(prompt, str) else str(getattr(prompt, "text", prompt))


class Reward(ABC):
    """A batch reward. Subclasses implement :meth:`evaluate`."""

    name: str

    def __call__(
        self, prompts: Sequence[Any], chains: Sequence[str], images: Sequence[Image.Image | None]
    ) -> list[float | None]:
        return [result.value for result in self.evaluate(prompts, chains, images)]

    def evaluate(
        self, prompts: Sequence[Any], chains: Sequence[str], images: Sequence[Image.Image | None]
    ) -> list[RewardResult]:
        if not len(prompts) == len(chains) == len(images):
            raise ValueError(f"batch sizes differ: {len(prompts)} prompts, {len(chains)} chains, {len(images)} images")
        return self.evaluate_batch(prompts, chains, images)

    @abstractmethod
    def evaluate_batch(
        self, prompts: Sequence[Any], chains: Sequence[str], images: Sequence[Image.Image | None]
    ) -> list[RewardResult]:
        """Results for equally long inputs."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
