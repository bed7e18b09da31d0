"""What the scorers' model wrappers share: loading with one-line errors, where a model lives, pixel batches."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

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


def eval_on(model: Any, device: str | torch.device | None) -> tuple[Any, torch.device]:
    """``model`` in eval mode on ``device`` (default: CUDA when there is one, else the CPU), and that device."""
    resolved = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    return model.to(resolved).eval(), resolved


def normalisation(
    image_processor: Any, mean: Sequence[float], std: Sequence[float]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of ``image_processor`` where it has them, else the given ones."""
    return (
        tuple(getattr(image_processor, "image_mean", None) or mean),
        tuple(getattr(image_processor, "image_std", None) or std),
    )


W = TypeVar("W", bound="ModelWrapper")


class ModelWrapper:
    """A transformers model (``self.model``, eval mode) behind a scorer: loaded by hub id or local folder
    with failures as one ScorerError line, its device and dtype read from its parameters, batched."""

    DEFAULT_ID: str
    WHAT: str  # how a load error names it: "cannot load {WHAT} {model_id!r}: ..."
    NAME: str  # model_id when neither given nor in the model's config

    def __init__(self, model: Any, *, batch_size: int, model_id: str | None) -> None:
        self.model = model.eval()
        self.batch_size = max(1, batch_size)
        self.model_id = model_id or getattr(model.config, "_name_or_path", None) or self.NAME

    @staticmethod
    def auto_classes() -> tuple[Any, Any]:
        """(model class, processor class) to load with; imported when called (transformers is heavy)."""
        raise NotImplementedError

    @classmethod
    def check_loaded(cls, model: Any, model_id: str) -> None:
        """Reject a loaded model this wrapper cannot drive (before it is wrapped)."""

    @classmethod
    def from_pretrained(
        cls: type[W],
        model_id: str | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> W:
        """Load a checkpoint by hub id or local path (default ``DEFAULT_ID``) on ``device`` in ``dtype``; any
        failure is one-line :class:`ScorerError`. ``options`` go to the constructor (checked before loading)."""
        model_id = cls.DEFAULT_ID if model_id is None else model_id
        inspect.signature(cls).bind(None, None, model_id=model_id, **options)  # a wrong option fails fast
        model_class, processor_class = cls.auto_classes()
        model, processor = load_or_explain(
            cls.WHAT,
            model_id,
            lambda: (
                model_class.from_pretrained(model_id, dtype=dtype).to(device),
                processor_class.from_pretrained(model_id),
            ),
        )
        cls.check_loaded(model, model_id)
        return cls(model, processor, model_id=model_id, **options)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def normalized(self, images: Sequence[Image.Image], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
        """Same-size images -> a [B, 3, H, W] batch as torchvision's ToTensor + Normalize make it (RGB in [0, 1],
        then normalised), on the model's device and dtype."""
        arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in images]
        pixels = torch.from_numpy(np.stack(arrays).astype(np.float32)).permute(0, 3, 1, 2)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        return ((pixels - mean_t) / std_t).to(self.device, self.dtype)
