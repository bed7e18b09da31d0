"""GenEval's colour check: zero-shot CLIP over ten colour names, on the object cut out from its image.

As the official scorer does it (djghosh13/geneval ``evaluation/evaluate_images.py``, with open_clip's
ViT-L-14 "openai" weights and clip-benchmark 1.4.0's zero-shot helpers):

- the object is pasted through its mask onto a #999999 grey canvas the size of the image, then cropped to
  its box (PIL rounds the box's corners);
- each colour's text embedding is the mean of the three templates' L2-normalised text embeddings,
  normalised again; an image embedding is L2-normalised and the colour with the largest dot product wins;
- clip-benchmark runs both under CUDA fp16 autocast (its ``amp=True`` default); we do the same on CUDA and
  run in fp32 on a CPU.

Here the model is transformers' :class:`~transformers.CLIPModel` (``openai/clip-vit-large-patch14``: the
same OpenAI weights as open_clip's ViT-L-14 "openai") with its processor: a bicubic resize of the short side
to 224 and a 224 centre crop with CLIP's mean and std, as open_clip's transform does (the centre crop's
rounding may differ by a pixel).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..rules.geneval import COLOR_TEMPLATES, COLORS, Detection
from .common import eval_on

__all__ = ["DEFAULT_CLIP", "GREY_BACKGROUND", "ClipColourClassifier", "colour_prompts", "cut_out"]

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
GREY_BACKGROUND = (153, 153, 153)  # the official "#999"


def cut_out(
    image: Image.Image,
    box: Sequence[float],
    mask: np.ndarray | None,
    background: tuple[int, int, int] = GREY_BACKGROUND,
) -> Image.Image:
    """The object alone: its mask's pixels on a grey canvas, cropped to ``box`` (x1, y1, x2, y2 pixels);
    without a mask, the plain crop."""
    rgb = image.convert("RGB")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (rgb.height, rgb.width):
            raise ValueError(f"mask of shape {mask.shape} for an image of {rgb.width}x{rgb.height}")
        canvas = Image.new("RGB", rgb.size, background)
        rgb = Image.composite(rgb, canvas, Image.fromarray(mask))
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return rgb.crop((x1, y1, x2, y2))


def colour_prompts(
    classname: str, colours: Sequence[str] = COLORS, templates: Sequence[str] = COLOR_TEMPLATES
) -> list[list[str]]:
    """Per colour, its prompts for objects of ``classname`` ("a photo of a red car", ...)."""
    return [[t.format(colour=c, object=classname) for t in templates] for c in colours]


def _features(output: Any) -> torch.Tensor:
    """Projected embeddings: transformers 5 returns them as ``pooler_output``, older releases as a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClipColourClassifier:
    """Names the colour of detected objects. Build from loaded objects, or with :meth:`from_pretrained`.

    ``processor`` is a CLIP processor (image processor + tokenizer). ``amp``: fp16 autocast, by default on
    CUDA only (as the official run). Text embeddings are cached per class name.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 16,
        colours: Sequence[str] = COLORS,
        templates: Sequence[str] = COLOR_TEMPLATES,
        amp: bool | None = None,
        source: str = "built",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model, self.device = eval_on(model, device)
        self.processor = processor
        self.batch_size = batch_size
        self.colours = tuple(colours)
        self.templates = tuple(templates)
        self.amp = self.device.type == "cuda" if amp is None else amp
        self.source = source
        self._text: dict[str, torch.Tensor] = {}

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = DEFAULT_CLIP, **kwargs: Any) -> ClipColourClassifier:
        """Load model and processor by hub id or local path; errors are transformers' own."""
        from transformers import CLIPModel, CLIPProcessor

        model = CLIPModel.from_pretrained(str(name_or_path))
        processor = CLIPProcessor.from_pretrained(str(name_or_path))
        return cls(model, processor, source=str(name_or_path), **kwargs)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp:
            return torch.autocast(device_type=self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    def colour_embeddings(self, classname: str) -> torch.Tensor:
        """``(len(colours), dim)``: per colour the renormalised mean of its templates' unit text embeddings."""
        cached = self._text.get(classname)
        if cached is not None:
            return cached
        prompts = colour_prompts(classname, self.colours, self.templates)
        flat = [p for per_colour in prompts for p in per_colour]
        tokens = self.processor.tokenizer(flat, padding=True, return_tensors="pt").to(self.device)
        with torch.inference_mode(), self._autocast():
            features = _features(self.model.get_text_features(**tokens))
        features = F.normalize(features.float(), dim=-1).view(len(self.colours), len(self.templates), -1)
        embeddings = F.normalize(features.mean(dim=1), dim=-1)
        self._text[classname] = embeddings
        return embeddings

    def image_embeddings(self, crops: Sequence[Image.Image]) -> torch.Tensor:
        """``(len(crops), dim)`` unit image embeddings, ``batch_size`` crops at a time."""
        chunks = []
        for start in range(0, len(crops), self.batch_size):
            batch = list(crops[start : start + self.batch_size])
            pixels = self.processor.image_processor(images=batch, return_tensors="pt")["pixel_values"]
            pixels = pixels.to(self.device, dtype=self.model.dtype)
            with torch.inference_mode(), self._autocast():
                features = _features(self.model.get_image_features(pixel_values=pixels))
            chunks.append(F.normalize(features.float(), dim=-1))
        return torch.cat(chunks) if chunks else torch.empty(0, 0)

    def classify_crops(self, crops: Sequence[Image.Image], classname: str) -> list[str]:
        """The colour of each crop, among :attr:`colours`, for objects called ``classname``."""
        if not crops:
            return []
        logits = self.image_embeddings(crops) @ self.colour_embeddings(classname).T
        return [self.colours[i] for i in logits.argmax(dim=1).tolist()]

    def classify(self, image: Image.Image, detections: Sequence[Detection], classname: str) -> list[str]:
        """The colour of each detected object of ``image`` (cut out with its mask, cropped to its box)."""
        return self.classify_crops([cut_out(image, d.box, d.mask) for d in detections], classname)

    def __repr__(self) -> str:
        return f"ClipColourClassifier({self.source!r}, device={self.device}, amp={self.amp})"
