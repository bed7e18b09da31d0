"""YOLOv3-tiny on OpenCV's DNN module: decoding its output rows into detections, and the detector."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from gotr1.chain import Box

from .weights import CONFIG_FILE, MODEL_FILES, NAMES_FILE, WEIGHTS_FILE, DetectorError, fetch_yolov3_tiny

# --------------------------------------------------------------------------------------------
# Decoding network output


@dataclass(frozen=True)
class Detection:
    """A detected object: COCO label, score in 0..1, box on the image's ``0..GRID`` grid."""

    label: str
    score: float
    box: Box


def decode_yolo_rows(
    rows: NDArray[np.floating[Any]],
    width: float,
    height: float,
    *,
    score_threshold: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.intp]]:
    """Candidate boxes from YOLO output rows, before NMS.

    Each row is ``cx, cy, w, h, objectness, score_0 .. score_{C-1}`` with the box relative to the
    image (0..1). OpenCV's YOLO layer already multiplies each class score by the objectness, so a
    class score is the detection's score. As in Darknet, every (row, class) pair at or above
    ``score_threshold`` is a candidate, so one box may carry two labels.

    Returns pixel corners ``x1, y1, x2, y2`` clipped to the image (boxes with no area left are
    dropped), scores and class indices.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] < 6:
        raise ValueError(f"expected rows of shape (N, 5 + classes), got {rows.shape}")
    rows = rows[np.isfinite(rows).all(axis=1)]
    row_index, class_ids = np.nonzero(rows[:, 5:] >= score_threshold)
    chosen = rows[row_index]
    scores = chosen[np.arange(len(chosen)), 5 + class_ids]
    cx, cy = chosen[:, 0] * width, chosen[:, 1] * height
    half_w, half_h = np.abs(chosen[:, 2]) * width / 2, np.abs(chosen[:, 3]) * height / 2
    corners = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    corners = np.clip(corners, 0.0, [width, height, width, height])
    keep = (corners[:, 2] > corners[:, 0]) & (corners[:, 3] > corners[:, 1])
    return (
        corners[keep].reshape(-1, 4),
        scores[keep],
        class_ids[keep].astype(np.intp),
    )


def postprocess_yolo_rows(
    rows: NDArray[np.floating[Any]],
    width: float,
    height: float,
    labels: Sequence[str],
    *,
    score_threshold: float = 0.25,
    nms_threshold: float = 0.45,
) -> list[Detection]:
    """Detections from YOLO output rows: decoded, class-wise NMS (``cv2.dnn.NMSBoxes``), boxes
    on the ``0..GRID`` grid of a ``width`` x ``height`` image, best score first."""
    rows = np.asarray(rows)
    if rows.ndim == 2 and rows.shape[1] - 5 != len(labels):
        raise ValueError(f"rows have {rows.shape[1] - 5} class scores but {len(labels)} labels")
    corners, scores, class_ids = decode_yolo_rows(rows, width, height, score_threshold=score_threshold)
    if len(scores) == 0:
        return []
    cv2 = _import_cv2()
    detections = []
    for class_id in np.unique(class_ids):
        (index,) = np.nonzero(class_ids == class_id)
        xywh = [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in corners[index]]
        kept = cv2.dnn.NMSBoxes(xywh, [float(s) for s in scores[index]], float(score_threshold), float(nms_threshold))
        for i in index[np.asarray(kept, dtype=np.intp).reshape(-1)]:
            x1, y1, x2, y2 = (float(v) for v in corners[i])
            box = Box.from_pixels(x1, y1, x2, y2, width, height)
            detections.append(Detection(labels[int(class_id)], float(scores[i]), box))
    detections.sort(key=lambda d: -d.score)
    return detections


# --------------------------------------------------------------------------------------------
# The detector


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(
            "the COCO detector needs OpenCV: pip install 'gotr1[detector]' (opencv-python-headless)"
        ) from exc
    return cv2


def _as_rgb_uint8(image: Image.Image | NDArray[Any]) -> NDArray[np.uint8]:
    """An (H, W, 3) uint8 RGB array; arrays are RGB (or grey, or RGBA) in 0..255, as elsewhere."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4) or 0 in array.shape:
        raise ValueError(f"expected an RGB image, got an array of shape {array.shape}")
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


class YoloDetector:
    """YOLOv3-tiny (COCO, 80 classes) on OpenCV's DNN module, on CPU.

    ``input_size`` is the square side the image is resized to (a multiple of 32), or several: the
    network then runs at each and the candidates are pooled before NMS. YOLOv3-tiny's largest
    anchor is 344 px, so at the standard 416 it often misses an object that fills the frame (a
    portrait, a close-up cat) that it finds at 256-320; ``input_size=(256, 320, 416)`` trades
    three passes for that recall. Not thread-safe: one instance per thread.
    """

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        score_threshold: float = 0.25,
        nms_threshold: float = 0.45,
        input_size: int | Sequence[int] = 416,
    ) -> None:
        if not 0.0 < score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in (0, 1], got {score_threshold}")
        if not 0.0 < nms_threshold <= 1.0:
            raise ValueError(f"nms_threshold must be in (0, 1], got {nms_threshold}")
        sizes = (input_size,) if isinstance(input_size, int) else tuple(input_size)
        if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 or s % 32 for s in sizes):
            raise ValueError(f"input_size must be positive multiples of 32, got {input_size!r}")
        cv2 = _import_cv2()
        self.model_dir = Path(model_dir) if model_dir is not None else fetch_yolov3_tiny()
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.input_size: int | tuple[int, ...] = sizes[0] if len(sizes) == 1 else sizes
        self._sizes = sizes
        paths = {name: self.model_dir / name for name in MODEL_FILES}
        for name, path in paths.items():
            if not path.is_file():
                raise DetectorError(f"{name} not found in {self.model_dir}")
        self.labels: tuple[str, ...] = tuple(
            line.strip() for line in paths[NAMES_FILE].read_text().splitlines() if line.strip()
        )
        # OpenCV's YOLO layer zeroes class scores under its `thresh` (0.2 unless the cfg says
        # otherwise); setting it to our threshold lets thresholds under 0.2 work.
        config = re.sub(
            r"^\[yolo\][ \t]*$",
            f"[yolo]\nthresh={self.score_threshold}",
            paths[CONFIG_FILE].read_text(),
            flags=re.MULTILINE,
        )
        try:
            self._net = cv2.dnn.readNetFromDarknet(
                np.frombuffer(config.encode(), dtype=np.uint8),
                np.fromfile(paths[WEIGHTS_FILE], dtype=np.uint8),
            )
            self._outputs = list(self._net.getUnconnectedOutLayersNames())
        except cv2.error as exc:
            message = " ".join(str(exc).split())
            raise DetectorError(f"OpenCV could not load the model in {self.model_dir}: {message}") from exc
        self._cv2 = cv2

    def detect(self, image: Image.Image | NDArray[Any]) -> list[Detection]:
        """Every detection in ``image``, best score first, boxes on its ``0..GRID`` grid."""
        rgb = _as_rgb_uint8(image)
        height, width = rgb.shape[:2]
        rows = []
        for size in self._sizes:
            blob = self._cv2.dnn.blobFromImage(rgb, 1 / 255.0, (size, size), swapRB=False, crop=False)
            self._net.setInput(blob)
            for out in self._net.forward(self._outputs):
                rows.append(np.asarray(out).reshape(-1, out.shape[-1]))
        return postprocess_yolo_rows(
            np.concatenate(rows),
            width,
            height,
            self.labels,
            score_threshold=self.score_threshold,
            nms_threshold=self.nms_threshold,
        )

    def __repr__(self) -> str:
        return (
            f"YoloDetector(yolov3-tiny COCO-{len(self.labels)}, model_dir={str(self.model_dir)!r}, "
            f"score_threshold={self.score_threshold}, nms_threshold={self.nms_threshold}, "
            f"input_size={self.input_size!r})"
        )
