"""DPT-Hybrid MiDaS inverse depth, normalised the way T2I-CompBench's 3D_spatial_eval.py prepares it.

The official script runs DPT-Hybrid (``dpt_hybrid-midas-501f0c75.pt``; in transformers ``Intel/dpt-hybrid-midas``)
on the sample resized to 480 x 480 (bilinear, mean 0.5, std 0.5), then for each image: min-max normalises the
prediction, resizes it (bilinear, ``align_corners=True``) to the sample's size, saves it as an 8-bit grey PNG
(``255 * depth`` truncated), reads it back, resizes it like the detector input (``Resize(479, max_size=480)``,
bilinear) and divides by 255. :func:`official_depth_map` repeats those steps in memory, so the 3D rule compares
the same quantised values. MiDaS predicts inverse depth: larger means nearer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..rules.t2i_compbench import detection_frame
from .common import ModelWrapper, normalisation

log = logging.getLogger(__name__)

__all__ = ["DepthEstimator", "official_depth_map"]


def official_depth_map(prediction: np.ndarray | torch.Tensor, image_size: tuple[int, int]) -> np.ndarray:
    """The depth map the official 3D rule reads, from one raw prediction: float32 in [0, 1], shape
    ``(height, width)`` of the detection frame of an image of ``image_size`` (width, height).

    A constant prediction (the official min-max divides by zero and yields NaN) gives all zeros here."""
    depth = torch.as_tensor(prediction, dtype=torch.float32)
    low, high = depth.min(), depth.max()
    depth = (depth - low) / (high - low) if high > low else torch.zeros_like(depth)
    width, height = image_size
    depth = torch.nn.functional.interpolate(
        depth[None, None], size=(height, width), mode="bilinear", align_corners=True
    )[0, 0]
    grey = Image.fromarray((255 * depth).numpy().astype(np.float32)).convert("L")  # truncates, clips
    frame = detection_frame(width, height)
    if frame != grey.size:
        grey = grey.resize(frame, Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.float32) / 255.0


class DepthEstimator(ModelWrapper):
    """Relative inverse depth from a transformers ``DPTForDepthEstimation`` checkpoint, batched."""

    DEFAULT_ID = "Intel/dpt-hybrid-midas"
    WHAT = "depth model"
    NAME = "dpt"
    INPUT_SIZE = 480

    def __init__(
        self,
        model: Any,
        processor: Any = None,
        *,
        input_size: int = INPUT_SIZE,
        batch_size: int = 8,
        model_id: str | None = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, model_id=model_id)
        # The official transform normalises with 0.5 / 0.5, as DPT's processors do.
        half = (0.5, 0.5, 0.5)
        self.mean, self.std = normalisation(getattr(processor, "image_processor", processor), half, half)
        self.input_size = input_size

    @staticmethod
    def auto_classes() -> tuple[Any, Any]:
        from transformers import AutoImageProcessor, DPTForDepthEstimation  # noqa: PLC0415 (heavy import)

        return DPTForDepthEstimation, AutoImageProcessor

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The official transform: Resize([480, 480]) (bilinear), ToTensor, Normalize(0.5, 0.5)."""
        size = (self.input_size, self.input_size)
        resized = [im.convert("RGB").resize(size, Image.Resampling.BILINEAR) for im in images]
        return self.normalized(resized, self.mean, self.std)

    @torch.inference_mode()
    def predict(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """The raw predictions (inverse depth, model resolution), float32, one per image."""
        out = []
        for start in range(0, len(images), self.batch_size):
            depth = self.model(pixel_values=self.pixel_values(images[start : start + self.batch_size])).predicted_depth
            out.extend(d.float().cpu().numpy() for d in depth)
        return out

    def depth_maps(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """The official normalised maps, each in its image's detection frame (see :func:`official_depth_map`)."""
        return [official_depth_map(prediction, image.size) for prediction, image in zip(self.predict(images), images)]
