"""CLIPScore as T2I-CompBench's CLIP_similarity.py computes it: the plain cosine similarity of CLIP ViT-B/32's
image and prompt embeddings (no x100, no x2.5 rescaling, no clipping at 0).

The official script uses OpenAI's ``clip`` package; transformers' ``openai/clip-vit-base-patch32`` holds the
same weights. Its preprocessing is reproduced on PIL: resize the short side to 224 (bicubic, long side
``int(224 * long / short)`` as torchvision computes it), centre-crop 224, CLIP mean/std. The official
``clip.tokenize`` raises on prompts over 77 tokens; here they are truncated (no val prompt is that long).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from .common import CLIP_MEAN, CLIP_STD, ModelWrapper, normalisation

log = logging.getLogger(__name__)

__all__ = ["ClipScore", "center_crop", "resize_short_side"]


def resize_short_side(image: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """torchvision ``Resize(size)`` on a PIL image: short side to ``size``, long side ``int(size*long/short)``."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_size = (new_short, new_long) if width <= height else (new_long, new_short)
    return image if new_size == image.size else image.resize(new_size, resample)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision ``CenterCrop(size)`` for an image at least ``size`` on each side."""
    width, height = image.size
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


class ClipScore(ModelWrapper):
    """Cosine similarity of images and texts in CLIP's joint embedding space, batched."""

    DEFAULT_ID = "openai/clip-vit-base-patch32"
    WHAT = "CLIP model"
    NAME = "clip"
    MAX_TOKENS = 77

    def __init__(self, model: Any, processor: Any, *, batch_size: int = 32, model_id: str | None = None) -> None:
        super().__init__(model, batch_size=batch_size, model_id=model_id)
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.mean, self.std = normalisation(getattr(processor, "image_processor", None), CLIP_MEAN, CLIP_STD)
        self.image_size = int(model.config.vision_config.image_size)

    @staticmethod
    def auto_classes() -> tuple[Any, Any]:
        from transformers import AutoProcessor, CLIPModel  # noqa: PLC0415 (heavy import)

        return CLIPModel, AutoProcessor

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The ``clip`` package's preprocessing: Resize(224, BICUBIC), CenterCrop(224), RGB, Normalize."""
        size = self.image_size
        crops = [center_crop(resize_short_side(image, size, Image.Resampling.BICUBIC), size) for image in images]
        return self.normalized(crops, self.mean, self.std)

    @torch.inference_mode()
    def image_embeddings(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Unit-norm projected image embeddings, float32, one row per image."""
        rows = []
        for i in range(0, len(images), self.batch_size):
            pixel_values = self.pixel_values(images[i : i + self.batch_size])
            rows.append(self.model.get_image_features(pixel_values=pixel_values).pooler_output)
        features = torch.cat(rows).float()
        return features / features.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm projected text embeddings, float32, one row per text."""
        rows = []
        for i in range(0, len(texts), self.batch_size):
            encoded = self.tokenizer(
                list(texts[i : i + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.MAX_TOKENS,
                return_tensors="pt",
            )
            output = self.model.get_text_features(
                input_ids=encoded["input_ids"].to(self.device), attention_mask=encoded["attention_mask"].to(self.device)
            )
            rows.append(output.pooler_output)
        features = torch.cat(rows).float()
        return features / features.norm(dim=-1, keepdim=True)

    def similarities(self, images: Sequence[Image.Image], texts: Sequence[str]) -> list[float]:
        """Cosine similarity of each image with its own text (pairs in order); identical texts embedded once."""
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        if not images:
            return []
        unique = list(dict.fromkeys(texts))
        text_features = self.text_embeddings(unique)
        rows = torch.tensor([unique.index(t) for t in texts], device=text_features.device)
        image_features = self.image_embeddings(images)
        return (image_features * text_features[rows]).sum(dim=-1).tolist()
