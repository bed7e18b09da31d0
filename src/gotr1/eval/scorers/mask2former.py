"""GenEval's object detector, Mask2Former instance segmentation, on transformers' port.

The official scorer runs mmdetection 2.x's ``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco`` checkpoint
(COCO instance segmentation, Swin-S). transformers has the architecture
(:class:`~transformers.Mask2FormerForUniversalSegmentation`) but not that checkpoint: the default here,
``facebook/mask2former-swin-small-coco-instance``, is the Mask2Former authors' own Swin-S COCO-instance
training (Detectron2), converted. Same architecture and task, separately trained weights, so confidences
and masks differ somewhat from the official detector's.

What we keep from mmdetection, because it decides which detections exist and how confident they are:

- input: the image resized keeping its aspect ratio so that it fits 1333 x 800 (scale =
  min(1333 / long side, 800 / short side), sides rounded), bilinear without antialiasing (as cv2), values
  rounded back to 0..255, normalised with the ImageNet mean and std, zero-padded (after normalising) at the
  bottom and right to a multiple of 32. transformers' processor for that checkpoint instead squashes every
  image to 384 x 384, so it is used for its mean and std only;
- output: mmdetection's instance post-processing, not transformers' ``post_process_instance_segmentation``
  (which keeps scores >= 0.5 and works on 384 x 384 masks): the 100 best (query, class) pairs by class
  probability; each pair's mask logits upsampled (bilinear) to the padded input, cropped to the resized
  image, upsampled to the original size; mask = logits > 0; confidence = class probability x the mean
  mask probability inside the mask; box = the mask's extent, ``[x_min, y_min, x_max + 1, y_max + 1]``.

No confidence threshold is applied here (the rules apply GenEval's); ``min_score`` only drops what no rule
could count. Same-size images are batched (same padding, so the same result as one at a time).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..rules.geneval import GENEVAL_CLASSES, Detection, geneval_class
from .common import eval_on, normalisation

__all__ = [
    "DEFAULT_DETECTOR",
    "MMDET_SCALE",
    "Mask2FormerDetector",
    "geneval_labels",
    "mask_boxes",
    "mmdet_resized_size",
    "postprocess_instances",
]

logger = logging.getLogger(__name__)

DEFAULT_DETECTOR = "facebook/mask2former-swin-small-coco-instance"
MMDET_SCALE = (1333, 800)  # mmdetection's test-time img_scale: long side, short side
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # mmdetection's img_norm_cfg / 255
IMAGENET_STD = (0.229, 0.224, 0.225)


def mmdet_resized_size(height: int, width: int, scale: tuple[int, int] = MMDET_SCALE) -> tuple[int, int]:
    """(height, width) after mmdetection's keep-ratio resize into ``scale`` (long, short)."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def geneval_labels(id2label: Mapping[Any, str], num_labels: int) -> tuple[str, ...]:
    """The GenEval class of each of the model's labels.

    By name when the model names its labels ("motorcycle", "mouse", "tv"...); by position when it has 80
    unnamed labels (``LABEL_i``), as the official scorer maps index i to the i-th COCO class. Anything else
    is not a COCO detector: ValueError.
    """
    names = [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(num_labels)]
    if num_labels == len(GENEVAL_CLASSES) and all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        logger.warning("the detector's labels are unnamed; reading them as the 80 COCO classes in order")
        return GENEVAL_CLASSES
    mapped = [geneval_class(name) for name in names]
    unknown = [name for name, m in zip(names, mapped) if m is None]
    if unknown:
        raise ValueError(f"the detector's labels are not COCO classes (e.g. {', '.join(map(repr, unknown[:3]))})")
    if len(set(mapped)) != len(mapped):
        raise ValueError("the detector's labels name some COCO class twice")
    return tuple(m for m in mapped if m is not None)


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` boxes ``[x_min, y_min, x_max + 1, y_max + 1]`` of ``(N, H, W)`` bool masks; zeros for an
    empty mask (mmdetection's ``mask2bbox``)."""
    n, height, width = masks.shape
    columns, rows = masks.any(dim=1), masks.any(dim=2)  # (N, W), (N, H)
    x1 = columns.int().argmax(dim=1)
    x2 = width - columns.flip(1).int().argmax(dim=1)
    y1 = rows.int().argmax(dim=1)
    y2 = height - rows.flip(1).int().argmax(dim=1)
    boxes = torch.stack([x1, y1, x2, y2], dim=1).float()
    boxes[~columns.any(dim=1)] = 0
    return boxes


def postprocess_instances(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    padded_size: tuple[int, int],
    resized_size: tuple[int, int],
    original_size: tuple[int, int],
    *,
    max_per_image: int = 100,
    chunk: int = 25,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """mmdetection's Mask2Former instance results for one image: (labels, scores, boxes, masks).

    ``class_logits`` ``(Q, C + 1)`` (last: no object), ``mask_logits`` ``(Q, h, w)`` over the padded input of
    ``padded_size``, of which the top-left ``resized_size`` is the image; masks come back at
    ``original_size``. Masks are upsampled ``chunk`` at a time to bound memory.
    """
    num_classes = class_logits.shape[-1] - 1
    probs = class_logits.float().softmax(dim=-1)[:, :-1].flatten()
    top_scores, top_index = probs.topk(min(max_per_image, probs.numel()))
    labels = top_index % num_classes
    queries = top_index // num_classes
    masks, mask_scores = [], []
    for start in range(0, len(queries), chunk):
        logits = mask_logits[queries[start : start + chunk]].float()[None]
        logits = F.interpolate(logits, size=padded_size, mode="bilinear", align_corners=False)
        logits = logits[..., : resized_size[0], : resized_size[1]]
        logits = F.interpolate(logits, size=original_size, mode="bilinear", align_corners=False)[0]
        binary = logits > 0
        inside = binary.flatten(1).float()
        mask_scores.append((logits.sigmoid().flatten(1) * inside).sum(1) / (inside.sum(1) + 1e-6))
        masks.append(binary)
    if not masks:
        height, width = original_size
        empty = torch.zeros(0, height, width, dtype=torch.bool)
        return labels, top_scores, torch.zeros(0, 4), empty
    binary_masks = torch.cat(masks)
    return labels, top_scores * torch.cat(mask_scores), mask_boxes(binary_masks), binary_masks


def _corners(box: Sequence[float]) -> tuple[float, float, float, float]:
    return float(box[0]), float(box[1]), float(box[2]), float(box[3])


class Mask2FormerDetector:
    """COCO instance segmentation returning :class:`~gotr1.eval.rules.geneval.Detection` s (GenEval class
    names, pixel boxes from the masks, bool masks), mmdetection-style (see the module docstring).

    Build from a loaded model (and optionally its image processor, for mean and std), or with
    :meth:`from_pretrained`. ``scale`` is mmdetection's (long, short) resize target; ``batch_size`` images
    of equal size go through the network together.
    """

    def __init__(
        self,
        model: Any,
        processor: Any | None = None,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 4,
        scale: tuple[int, int] = MMDET_SCALE,
        size_divisor: int = 32,
        max_per_image: int = 100,
        source: str = "built",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model, self.device = eval_on(model, device)
        self.labels = geneval_labels(model.config.id2label, model.config.num_labels)
        mean, std = normalisation(processor, IMAGENET_MEAN, IMAGENET_STD)
        self._mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) * 255
        self._std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1) * 255
        self.batch_size = batch_size
        self.scale = (max(scale), min(scale))
        self.size_divisor = size_divisor
        self.max_per_image = max_per_image
        self.source = source

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = DEFAULT_DETECTOR, **kwargs: Any) -> Mask2FormerDetector:
        """Load by hub id or local path (mean and std are mmdetection's, which are ImageNet's); errors are
        transformers' own."""
        from transformers import Mask2FormerForUniversalSegmentation

        model = Mask2FormerForUniversalSegmentation.from_pretrained(str(name_or_path))
        return cls(model, None, source=str(name_or_path), **kwargs)

    def _inputs(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, tuple[int, int]]:
        """Normalised, padded ``(B, 3, H, W)`` for same-size images, and their resized (height, width)."""
        height, width = images[0].height, images[0].width
        resized = mmdet_resized_size(height, width, self.scale)
        pad_h = -(-resized[0] // self.size_divisor) * self.size_divisor
        pad_w = -(-resized[1] // self.size_divisor) * self.size_divisor
        batch = torch.zeros(len(images), 3, pad_h, pad_w)
        for i, image in enumerate(images):
            pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32).copy())
            pixels = pixels.permute(2, 0, 1)[None]
            if resized != (height, width):
                pixels = F.interpolate(pixels, size=resized, mode="bilinear", align_corners=False, antialias=False)
                pixels = pixels.round().clamp(0, 255)
            batch[i, :, : resized[0], : resized[1]] = (pixels[0] - self._mean) / self._std
        return batch, resized

    def detect(self, images: Sequence[Image.Image], min_score: float = 0.0) -> list[list[Detection]]:
        """Per image, its detections (up to ``max_per_image``, those scoring above ``min_score``), most
        confident first."""
        results: list[list[Detection]] = []
        start = 0
        while start < len(images):
            size = images[start].size
            stop = start + 1
            while stop < len(images) and stop - start < self.batch_size and images[stop].size == size:
                stop += 1
            results.extend(self._detect_batch(images[start:stop], min_score))
            start = stop
        return results

    def _detect_batch(self, images: Sequence[Image.Image], min_score: float) -> list[list[Detection]]:
        pixels, resized = self._inputs(images)
        with torch.inference_mode():
            output = self.model(pixel_values=pixels.to(self.device, dtype=self.model.dtype))
        padded = (int(pixels.shape[-2]), int(pixels.shape[-1]))
        found = []
        for i, image in enumerate(images):
            labels, scores, boxes, masks = postprocess_instances(
                output.class_queries_logits[i],
                output.masks_queries_logits[i],
                padded,
                resized,
                (image.height, image.width),
                max_per_image=self.max_per_image,
            )
            order = torch.argsort(scores, descending=True, stable=True).tolist()
            scores_list, boxes_list, labels_list = scores.tolist(), boxes.tolist(), labels.tolist()
            keep = [j for j in order if scores_list[j] > min_score]
            kept_masks = masks[keep].cpu().numpy()
            found.append(
                [
                    Detection(self.labels[labels_list[j]], scores_list[j], _corners(boxes_list[j]), kept_masks[n])
                    for n, j in enumerate(keep)
                ]
            )
        return found

    def __repr__(self) -> str:
        return f"Mask2FormerDetector({self.source!r}, device={self.device}, scale={self.scale})"
