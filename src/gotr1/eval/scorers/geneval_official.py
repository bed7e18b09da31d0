"""GenEval's official scoring, re-implemented on models transformers loads.

The rules are GenEval's own (:mod:`gotr1.eval.rules.geneval`); the detector and the colour classifier are
transformers ports (:mod:`.mask2former`, :mod:`.clip_colour`); :attr:`GenEvalOfficialScorer.notes` names
every substitution. Each image is correct (1.0) or not (0.0), with GenEval's reason text; ``details`` keeps
what the official ``results.jsonl`` line holds, so that :func:`write_official_results` can write that file
for GenEval's own ``summary_scores.py``.

The same rules also judge the plan the model wrote before drawing (``plan_score``): its objects are the
detections (COCO class from the name, colour from a colour word in the name, box from the plan scaled to
the image, confidence 1.0).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from ...chain import GRID, PlannedObject
from ...outputs import write_bytes_atomic
from ...progress import progress
from ..records import EvalImage, ImageScore, ScorerError
from ..rules.geneval import (
    DEFAULT_OPTIONS,
    TAGS,
    Detection,
    GenEvalOptions,
    GenEvalSummary,
    MetadataError,
    Verdict,
    colour_words,
    detections_json,
    evaluate,
    geneval_class,
    select_detections,
    summarize,
    validate_metadata,
)
from .clip_colour import DEFAULT_CLIP, ClipColourClassifier
from .common import one_line
from .mask2former import DEFAULT_DETECTOR, Mask2FormerDetector

__all__ = [
    "OFFICIAL_FIELDS",
    "RESULTS_FILE",
    "GenEvalOfficialScorer",
    "official_result_line",
    "plan_detections",
    "plan_verdict",
    "read_official_results",
    "summarize_scores",
    "write_official_results",
]

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"
# The columns of GenEval's results.jsonl, in its order.
OFFICIAL_FIELDS = ("filename", "tag", "prompt", "correct", "reason", "metadata", "details")


class GenEvalOfficialScorer:
    """GenEval's scorer: Mask2Former detections -> GenEval's rules (CLIP for colour clauses).

    ``detector`` and ``clip`` are hub ids or paths (loaded on first use, on ``device``) or loaded
    :class:`~.mask2former.Mask2FormerDetector` / :class:`~.clip_colour.ClipColourClassifier` objects (or
    anything with their ``detect`` / ``classify`` methods). A model that cannot be loaded raises
    :class:`~gotr1.eval.records.ScorerError`, one line naming it.
    """

    name = "official"

    def __init__(
        self,
        detector: str | Path | Any = DEFAULT_DETECTOR,
        clip: str | Path | Any = DEFAULT_CLIP,
        *,
        device: str | None = None,
        batch_size: int = 16,
        options: GenEvalOptions = DEFAULT_OPTIONS,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._detector_spec = detector
        self._clip_spec = clip
        self._detector: Any | None = None if isinstance(detector, (str, Path)) else detector
        self._clip: Any | None = None if isinstance(clip, (str, Path)) else clip
        self.device = device
        self.batch_size = batch_size
        self.options = options
        self.notes = self._notes()

    @classmethod
    def from_options(cls, options: Any) -> GenEvalOfficialScorer:
        """From the CLI's ScorerOptions: ``models["detector"]`` and ``models["clip"]`` override the defaults."""
        models = dict(getattr(options, "models", None) or {})
        return cls(
            detector=models.get("detector", DEFAULT_DETECTOR),
            clip=models.get("clip", DEFAULT_CLIP),
            device=getattr(options, "device", None),
            batch_size=getattr(options, "batch_size", 16),
        )

    def _model_name(self, spec: Any) -> str:
        return str(spec) if isinstance(spec, (str, Path)) else getattr(spec, "source", type(spec).__name__)

    def _notes(self) -> list[str]:
        detector, clip = self._model_name(self._detector_spec), self._model_name(self._clip_spec)
        return [
            f"detector: transformers Mask2Former {detector} instead of GenEval's mmdetection 2.x "
            "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco checkpoint (the default is the same architecture, "
            "Swin-S COCO instance, trained separately by the Mask2Former authors): confidences differ",
            "detector input and post-processing re-implemented after mmdetection's (keep-ratio resize to "
            "1333x800, pad to 32, top-100 query x class, score = class prob x mean mask prob, boxes from masks), "
            "not transformers' processor (384x384) or post_process_instance_segmentation (threshold 0.5); the "
            "resize is torch bilinear, not cv2 (values may differ by one grey level)",
            f"colour: transformers CLIP {clip} with its processor instead of open_clip ViT-L-14 'openai' (same "
            "OpenAI weights; bicubic 224 resize + centre crop, which may differ by a pixel); fp16 autocast on "
            "CUDA as clip-benchmark's default, fp32 on CPU",
            "reason text: a failed relation lists the relations found in the order left of, right of, above, "
            "below (the official code prints a Python set, whose order varies between runs)",
            "arithmetic in the official dtypes: scores compared with the threshold in float32 (a score of exactly "
            "float32(0.3) does not count) and ranked as float32; relative positions computed in float32 from "
            "float32 boxes in the official order; the optional overlap suppression as under GenEval's pinned "
            "numpy 1.23 (float32 widths, float64 areas and comparison)",
            "where the official code would fail, a defined answer: a position clause whose target is not an "
            "earlier include clause is refused as bad metadata (the image is not scored); the detector's empty "
            "masks give zero-area boxes with score 0, which never pass a threshold, so no zero-size crop reaches "
            "the colour check (one from another detector would fail there, as it does officially)",
            "plan_score: GenEval's rules applied to the written plan (class from the object name, colour from "
            "a colour word in it, box from the plan, confidence 1.0); not part of GenEval",
        ]

    # ---------------------------------------------------------------------------------------------
    # Models

    def detector(self) -> Any:
        if self._detector is None:
            spec = self._detector_spec
            try:
                # At 1333x800 a batch of Mask2Former activations is large: at most 4 images at a time.
                self._detector = Mask2FormerDetector.from_pretrained(
                    spec, device=self.device, batch_size=min(self.batch_size, 4)
                )
            except Exception as exc:  # any failure to load is the user's to fix, in one line
                raise ScorerError(f"cannot load the GenEval detector {str(spec)!r}: {one_line(exc)}") from exc
            logger.info("loaded %r", self._detector)
        return self._detector

    def colour_classifier(self) -> Any:
        if self._clip is None:
            spec = self._clip_spec
            try:
                self._clip = ClipColourClassifier.from_pretrained(spec, device=self.device, batch_size=self.batch_size)
            except Exception as exc:
                raise ScorerError(f"cannot load the GenEval colour model {str(spec)!r}: {one_line(exc)}") from exc
            logger.info("loaded %r", self._clip)
        return self._clip

    # ---------------------------------------------------------------------------------------------
    # Scoring

    def score(self, category: str, images: Sequence[EvalImage], out_dir: Path) -> list[ImageScore]:
        """One score per image, in order: 1.0 correct, 0.0 not, None when the image or its metadata cannot
        be read (``reason`` says why). Nothing is written to ``out_dir``: GenEval's ``results.jsonl`` spans
        all tags (:func:`write_official_results`)."""
        if category not in TAGS:
            raise ScorerError(f"the official GenEval scorer scores the tags {', '.join(TAGS)}, not {category!r}")
        if not images:
            return []
        detector = self.detector()
        needs_colour = any(
            isinstance(clause, dict) and "color" in clause
            for image in images
            if isinstance(image.job.metadata, dict)
            for clause in image.job.metadata.get("include") or []
        )
        classifier = self.colour_classifier() if needs_colour else None
        min_score = min(self.options.threshold, self.options.counting_threshold)
        scores: list[ImageScore] = []
        with progress(len(images), f"GenEval {category}", "image") as bar:
            for start in range(0, len(images), self.batch_size):
                batch = images[start : start + self.batch_size]
                loaded = [self._load(image) for image in batch]
                readable = [pil for pil in loaded if isinstance(pil, Image.Image)]
                found = iter(detector.detect(readable, min_score=min_score) if readable else [])
                for image, pil in zip(batch, loaded):
                    if isinstance(pil, Image.Image):
                        scores.append(self._score_one(image, pil, next(found), classifier))
                    else:
                        scores.append(self._unscorable(image, pil))
                bar.update(len(batch))
        return scores

    def _load(self, image: EvalImage) -> Image.Image | str:
        """The image as the official scorer reads it (EXIF orientation applied), or why it cannot be."""
        try:
            with Image.open(image.path) as opened:
                return ImageOps.exif_transpose(opened).convert("RGB")
        except (OSError, ValueError) as exc:
            return f"cannot read {image.job.path}: {one_line(exc)}"

    def _unscorable(self, image: EvalImage, why: str) -> ImageScore:
        logger.warning("GenEval %s: %s", image.category, why)
        return ImageScore(
            path=image.job.path,
            category=image.category,
            prompt=image.prompt,
            score=None,
            plan_score=None,
            reason=why,
            record=image.job.record,
        )

    def _score_one(
        self, image: EvalImage, pil: Image.Image, detections: list[Detection], classifier: Any | None
    ) -> ImageScore:
        try:
            metadata = validate_metadata(image.job.metadata, f"metadata of {image.job.path}")
        except MetadataError as exc:
            return self._unscorable(image, str(exc))
        detected = select_detections(detections, metadata["tag"], self.options)
        colour_of: Callable[[Sequence[Detection], str], Sequence[str]] | None = None
        if classifier is not None:
            colour_of = functools.partial(classifier.classify, pil)
        verdict = evaluate(metadata, detected, colour_of, self.options)
        plan = None if image.record is None else plan_verdict(metadata, image.objects, pil.size, self.options)
        details = {
            "tag": metadata["tag"],
            "prompt": metadata["prompt"],
            "correct": verdict.correct,
            "reason": verdict.reason,
            "metadata": metadata,
            "details": detections_json(detected),
            "colors": verdict.colours,
        }
        if plan is not None:
            details["plan_reason"] = plan.reason
        return ImageScore(
            path=image.job.path,
            category=image.category,
            prompt=image.prompt,
            score=1.0 if verdict.correct else 0.0,
            plan_score=None if plan is None else (1.0 if plan.correct else 0.0),
            reason=verdict.reason,
            record=image.job.record,
            details=details,
        )

    def __repr__(self) -> str:
        return (
            f"GenEvalOfficialScorer(detector={self._model_name(self._detector_spec)!r}, "
            f"clip={self._model_name(self._clip_spec)!r})"
        )


# -------------------------------------------------------------------------------------------------
# The plan


def plan_detections(objects: Sequence[PlannedObject], size: tuple[int, int] = (GRID, GRID)) -> list[Detection]:
    """The planned objects as detections of a ``size`` (width, height) image: a name that maps to no COCO
    class, or an object without a box, is no detection. All are equally confident, and the rules break ties
    later-first (as the official ``argsort`` does), so the plan is listed backwards to make its first-written
    object the top one."""
    width, height = size
    out = []
    for obj in reversed(objects):
        label = geneval_class(obj.name)
        if label is None or obj.box is None:
            continue
        box = obj.box.ordered().to_pixels(width, height)
        out.append(Detection(label, 1.0, box, None, colour_words(obj.name, label)))
    return out


def plan_verdict(
    metadata: dict[str, Any],
    objects: Sequence[PlannedObject],
    size: tuple[int, int] = (GRID, GRID),
    options: GenEvalOptions = DEFAULT_OPTIONS,
) -> Verdict:
    """GenEval's rules applied to a plan; a plan with no objects is wrong."""
    if not objects:
        return Verdict(False, "the plan has no objects")
    detected = select_detections(plan_detections(objects, size), metadata["tag"], options)

    def planned_colours(dets: Sequence[Detection], name: str) -> list[str]:
        return [d.colour or "" for d in dets]

    return evaluate(metadata, detected, planned_colours, options)


# -------------------------------------------------------------------------------------------------
# GenEval's results.jsonl


def official_result_line(filename: str, details: dict[str, Any]) -> str:
    """One line of ``results.jsonl`` as GenEval writes it (pandas 1.5 ``to_json(orient="records",
    lines=True)``: compact, ASCII-only, "/" escaped as "\\/"), ``metadata`` and ``details`` being JSON
    text (Python ``json.dumps`` defaults) inside it."""
    row = {
        "filename": filename,
        "tag": details["tag"],
        "prompt": details["prompt"],
        "correct": bool(details["correct"]),
        "reason": details["reason"],
        "metadata": json.dumps(details["metadata"]),
        "details": json.dumps(details["details"]),
    }
    # A "/" only ever occurs inside a JSON string, where "\/" is the same character.
    return json.dumps(row, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/")


def write_official_results(run_dir: Path, scores: list[ImageScore], path: Path | None = None) -> Path:
    """Write GenEval's ``results.jsonl`` (``run_dir / "results.jsonl"`` unless ``path``) for its
    ``summary_scores.py``. Each ``filename`` is ``run_dir`` joined with the image's path, as the official
    script joins the image folder it was given (relative stays relative). Images that could not be scored
    have no official line and are left out (logged)."""
    run_dir = Path(run_dir)
    lines, skipped = [], 0
    for score in scores:
        if score.score is None:
            skipped += 1
            continue
        missing = [
            key for key in ("tag", "prompt", "correct", "reason", "metadata", "details") if key not in score.details
        ]
        if missing:
            raise ValueError(f"{score.path}: not a GenEval official score (details lack {', '.join(missing)})")
        lines.append(official_result_line(os.path.join(os.fspath(run_dir), score.path), score.details) + "\n")
    if skipped:
        logger.warning("%d unscored image(s) left out of GenEval's results.jsonl", skipped)
    target = run_dir / RESULTS_FILE if path is None else Path(path)
    # pandas ends even an empty file with a newline.
    write_bytes_atomic(target, ("".join(lines) or "\n").encode("ascii"))
    return target


def read_official_results(path: Path) -> list[dict[str, Any]]:
    """The lines of a GenEval ``results.jsonl`` (ours or the official script's)."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise ValueError(f"{path}:{number}: not JSON ({exc})") from None
    return rows


def summarize_scores(scores: Sequence[ImageScore]) -> GenEvalSummary:
    """GenEval's summary (tag means, overall = mean of tag means) over scored images."""
    return summarize(
        {"tag": s.details["tag"], "correct": s.details["correct"], "metadata": s.details["metadata"]}
        for s in scores
        if s.score is not None
    )
