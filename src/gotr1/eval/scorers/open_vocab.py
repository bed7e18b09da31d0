"""An open-vocabulary detector from transformers standing in for T2I-CompBench's UniDet.

UniDet (detectron2, a unified label space over COCO/Objects365/OpenImages/Mapillary) has no transformers port.
OWLv2 (``google/owlv2-base-patch16-ensemble`` by default; OWL-ViT checkpoints work the same way) is queried
with the object names the official rule looks for, and its detections are put into UniDet's shape:

- the image is first resized as UniDet's input was (torchvision ``Resize(479, max_size=480)``, bilinear), and
  boxes are returned in that frame, so the rule's 150 px threshold means what it means officially;
- each box gets one label, the best-scoring query (as UniDet's classifier picks one class), kept when its score
  passes ``threshold``; same-label boxes overlapping by IoU > 0.5 are suppressed (detectron2's test-time NMS);
- detections are sorted by confidence, highest first, so "the first detection with the label" is the most
  confident one, as in detectron2's output.

Scores are NOT comparable to UniDet's: UniDet keeps softmax scores >= 0.5, OWLv2's sigmoid scores for correct
objects mostly lie between 0.1 and 0.6. The default threshold is 0.1, the one OWLv2's own examples and
post-processing use; the confidences still enter the official formula (``0.25 * conf1 + 0.25 * conf2 + ...``),
so spatial and numeracy numbers from this detector are not the official ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from ..records import ScorerError
from ..rules.t2i_compbench import Detection, box_iou, detection_frame
from .common import ModelWrapper

log = logging.getLogger(__name__)

__all__ = ["OpenVocabDetector", "non_max_suppression"]


def non_max_suppression(detections: Sequence[Detection], iou_threshold: float = 0.5) -> list[Detection]:
    """Per-label greedy NMS, highest confidence first; returns the survivors sorted by confidence."""
    kept: list[Detection] = []
    for detection in sorted(detections, key=lambda d: -d.score):
        if all(k.label != detection.label or box_iou(k.box, detection.box) <= iou_threshold for k in kept):
            kept.append(detection)
    return kept


class OpenVocabDetector(ModelWrapper):
    """Text-queried detection returning :class:`Detection` s in the official detection frame."""

    DEFAULT_ID = "google/owlv2-base-patch16-ensemble"
    WHAT = "detector"
    NAME = "owlv2"
    DEFAULT_THRESHOLD = 0.1
    QUERY_TEMPLATE = "a photo of a {}"

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        nms_iou: float = 0.5,
        query_template: str = QUERY_TEMPLATE,
        batch_size: int = 4,
        model_id: str | None = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, model_id=model_id)
        self.processor = processor
        self.threshold = threshold
        self.nms_iou = nms_iou
        self.query_template = query_template
        # OWLv2 pads the image to a square (bottom/right) before resizing; OWL-ViT stretches it.
        self.pads_to_square = getattr(model.config, "model_type", "owlv2") == "owlv2"
        self.max_query_tokens = int(model.config.text_config.max_position_embeddings)

    @staticmethod
    def auto_classes() -> tuple[Any, Any]:
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor  # noqa: PLC0415

        return AutoModelForZeroShotObjectDetection, AutoProcessor

    @classmethod
    def check_loaded(cls, model: Any, model_id: str) -> None:
        if getattr(model.config, "model_type", None) not in ("owlv2", "owlvit"):
            raise ScorerError(f"detector {model_id!r}: model type {model.config.model_type!r} is not OWLv2/OWL-ViT")

    @staticmethod
    def to_detection_frame(image: Image.Image) -> Image.Image:
        """The image as UniDet received it (``Resize(479, max_size=480)``, bilinear)."""
        size = detection_frame(*image.size)
        return image if size == image.size else image.resize(size, Image.Resampling.BILINEAR)

    def detect(self, images: Sequence[Image.Image], labels: Sequence[Sequence[str]]) -> list[list[Detection]]:
        """Detections of each image for its own label queries (consecutive images with the same queries —
        the 10 samples of a prompt — share a batch)."""
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} label lists")
        out: list[list[Detection]] = [[] for _ in images]
        i = 0
        while i < len(images):
            queries = tuple(dict.fromkeys(labels[i]))
            j = i + 1
            while j < len(images) and j - i < self.batch_size and tuple(dict.fromkeys(labels[j])) == queries:
                j += 1
            if queries:
                for k, detections in enumerate(self._detect_batch(images[i:j], queries)):
                    out[i + k] = detections
            i = j
        return out

    @torch.inference_mode()
    def _detect_batch(self, images: Sequence[Image.Image], queries: Sequence[str]) -> list[list[Detection]]:
        frames = [self.to_detection_frame(image.convert("RGB")) for image in images]
        pixel_values = self.processor.image_processor(images=frames, return_tensors="pt")["pixel_values"]
        texts = [self.query_template.format(q) for q in queries] * len(frames)
        encoded = self.processor.tokenizer(
            texts, padding="max_length", truncation=True, max_length=self.max_query_tokens, return_tensors="pt"
        )
        outputs = self.model(
            input_ids=encoded["input_ids"].to(self.device),
            attention_mask=encoded["attention_mask"].to(self.device),
            pixel_values=pixel_values.to(self.device, self.dtype),
        )
        scores, best = torch.sigmoid(outputs.logits.float()).max(dim=-1)  # (batch, boxes): one label per box
        scores, best, boxes = scores.cpu(), best.cpu(), outputs.pred_boxes.float().cpu()
        results = []
        for b, frame in enumerate(frames):
            width, height = frame.size
            scale_x, scale_y = (max(width, height),) * 2 if self.pads_to_square else (width, height)
            keep = (scores[b] > self.threshold).nonzero().flatten().tolist()
            detections = []
            for index in keep:
                cx, cy, w, h = boxes[b, index].tolist()
                x1 = min(max((cx - w / 2) * scale_x, 0.0), width)
                y1 = min(max((cy - h / 2) * scale_y, 0.0), height)
                x2 = min(max((cx + w / 2) * scale_x, 0.0), width)
                y2 = min(max((cy + h / 2) * scale_y, 0.0), height)
                detections.append(Detection(queries[int(best[b, index])], float(scores[b, index]), (x1, y1, x2, y2)))
            results.append(non_max_suppression(detections, self.nms_iou))
        return results
