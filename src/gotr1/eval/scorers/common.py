"""What the scorers' model wrappers share: one-line load errors, where a model lives, and pixel batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from ..records import ScorerError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's (also BLIP's) normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
T = TypeVar("T")


def one_line(error: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def load_or_explain(what: str, model_id: str, load: Callable[[], T]) -> T:
    """`load()`, any failure (no network, a wrong id, a broken folder) turned into one ScorerError line
    naming the model."""
    try:
        return load()
    except Exception as error:  # noqa: BLE001 (the user's to fix, whatever it is)
        raise ScorerError(f"cannot load {what} {model_id!r}: {one_line(error)}") from error


def load_pretrained(
    what: str, model_id: str, model_class: Any, processor_class: Any, *, device: Any, dtype: Any
) -> tuple[Any, Any]:
    """(model on ``device`` in ``dtype``, processor) from a hub id or local folder, or one ScorerError line."""
    return load_or_explain(
        what,
        model_id,
        lambda: (
            model_class.from_pretrained(model_id, dtype=dtype).to(device),
            processor_class.from_pretrained(model_id),
        ),
    )


class OnDevice:
    """Device and dtype read from a wrapped torch model's parameters (``self.model``)."""

    model: Any

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def normalized(self, arrays: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
        """HxWx3 float arrays in [0, 1] -> a normalised [B, 3, H, W] batch on the model's device and dtype."""
        pixels = torch.from_numpy(np.stack(arrays).astype(np.float32)).permute(0, 3, 1, 2)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        return ((pixels - mean_t) / std_t).to(self.device, self.dtype)
