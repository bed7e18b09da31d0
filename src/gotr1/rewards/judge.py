"""The judge interface: ask a vision-language model questions, with or without images, in batches.

Every reward that needs a judge talks to it through :class:`Judge` alone, so the same reward runs on
a vLLM fleet (:mod:`.openai_judge`), on a local model (:mod:`.local_judge`) or on a cache
(:mod:`.cache`). A question that cannot be answered comes back as a :class:`JudgeAnswer` with an
``error``, never as an exception and never as an empty string, so a reward can mark exactly that
sample as missing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from PIL import Image

__all__ = ["Judge", "JudgeAnswer", "JudgeRequest", "JudgeStats", "judge_view"]

# Qwen2.5-VL sees images in 28-pixel patches (14-px patches merged 2x2); an image whose sides are
# multiples of 28 and whose area lies in the processor's bounds reaches the model unresized, so the
# absolute pixel boxes it answers with are in the frame of the image we sent.
PATCH_MULTIPLE = 28
DEFAULT_JUDGE_PIXELS = 448 * 448


@dataclass(frozen=True)
class JudgeRequest:
    """One question: a user turn of text and images (images come first in the turn)."""

    prompt: str
    images: tuple[Image.Image, ...] = ()
    system: str | None = None
    max_tokens: int = 256
    schema: dict | None = None  # JSON schema of the answer, for servers that can enforce one

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(self.images))


@dataclass
class JudgeAnswer:
    """The judge's text, or why there is none. ``attempts`` counts calls made (retries included)."""

    text: str | None
    error: str | None = None
    attempts: int = 1
    cached: bool = False
    server: str | None = None

    @property
    def ok(self) -> bool:
        return self.text is not None and self.error is None


@dataclass
class JudgeStats:
    """Counts over a judge's lifetime; rewards add what they find when reading answers."""

    requests: int = 0
    answered: int = 0
    failed: int = 0
    retries: int = 0
    cached: int = 0
    unreadable: int = 0  # answered, but no score / box could be read: a judge failure of the reward
    clamped: int = 0  # scores outside the scale, clamped
    errors: dict[str, int] = field(default_factory=dict)

    def add_answers(self, answers: Sequence[JudgeAnswer]) -> None:
        for answer in answers:
            self.requests += 1
            self.retries += max(0, answer.attempts - 1)
            self.cached += answer.cached
            if answer.ok:
                self.answered += 1
            else:
                self.failed += 1
                kind = (answer.error or "unknown").split(":", 1)[0]
                self.errors[kind] = self.errors.get(kind, 0) + 1

    def as_dict(self) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


@runtime_checkable
class Judge(Protocol):
    """A batch question-answering VLM.

    ``model_id`` names what answers (cache keys include it). ``ask`` returns one answer per request,
    in order; it may run them concurrently or batched, and never raises for a single failed request.
    """

    model_id: str
    stats: JudgeStats

    def ask(self, requests: Sequence[JudgeRequest]) -> list[JudgeAnswer]: ...


def judge_view(image: Image.Image, pixels: int = DEFAULT_JUDGE_PIXELS, multiple: int = PATCH_MULTIPLE) -> Image.Image:
    """The image as the judge should see it: RGB, aspect kept, area about ``pixels``, each side a
    multiple of ``multiple`` (so the server does not resize it again and pixel answers stay in
    this frame). Small images are enlarged with nearest-neighbour so their edges stay sharp."""
    image = image.convert("RGB")
    scale = math.sqrt(pixels / (image.width * image.height))
    width = max(multiple, round(image.width * scale / multiple) * multiple)
    height = max(multiple, round(image.height * scale / multiple) * multiple)
    if (width, height) == image.size:
        return image
    resample = Image.Resampling.NEAREST if width >= image.width else Image.Resampling.BICUBIC
    return image.resize((width, height), resample=resample)
