"""A box locator (the interface R_RI grounds planned objects with) built on any object detector."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

from numpy.typing import NDArray
from PIL import Image

from gotr1.chain import Box

from .coco import COCO_LABELS, coco_class
from .yolo import Detection

# --------------------------------------------------------------------------------------------
# The locator


class ObjectDetectorLike(Protocol):
    """Anything with ``detect(image) -> list[Detection]``, best score first."""

    def detect(self, image: Image.Image | NDArray[Any]) -> list[Detection]: ...


class DetectorLocator:
    """A :class:`~gotr1.rewards.grounding.BoxLocator` on a COCO detector, for R_RI.

    ``locate(image, name)`` maps the name to a COCO class (:func:`coco_class`) and returns the
    boxes of that class, best score first. A name with no COCO class returns ``[]``: the object
    cannot be found, so its IoU is 0. The last ``cache_size`` images' detections are kept
    (keyed by identity, holding a reference so the identity cannot be reused), so the several
    names of one chain run the network once; an array changed in place keeps stale detections.
    """

    def __init__(self, detector: ObjectDetectorLike, *, cache_size: int = 4) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        self.detector = detector
        self.labels: tuple[str, ...] = tuple(getattr(detector, "labels", COCO_LABELS))
        self.cache_size = cache_size
        self._cache: OrderedDict[int, tuple[object, list[Detection]]] = OrderedDict()

    def detections(self, image: Image.Image | NDArray[Any]) -> list[Detection]:
        """The detector's detections of ``image``, from the cache when it holds them."""
        key = id(image)
        entry = self._cache.get(key)
        if entry is not None and entry[0] is image:
            self._cache.move_to_end(key)
            return entry[1]
        found = list(self.detector.detect(image))
        self._cache[key] = (image, found)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return found

    def locate(self, image: Image.Image | NDArray[Any], name: str) -> list[Box]:
        label = coco_class(name, self.labels)
        if label is None:
            return []
        return [d.box for d in self.detections(image) if d.label == label]

    def clear(self) -> None:
        """Forget cached detections."""
        self._cache.clear()

    def __repr__(self) -> str:
        return f"DetectorLocator(COCO names -> boxes of {self.detector!r})"
