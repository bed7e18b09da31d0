"""T2I-CompBench's official metrics, re-implemented on transformers models, as a :class:`Scorer`.

Per category, as the official scripts (commit 1b70949) score and write them:

=============  ==========================================  ==================================================
category       metric                                      official result file (in the category folder)
=============  ==========================================  ==================================================
color, shape,  BLIP-VQA, product over noun phrases          ``annotation_blip/vqa_result.json``
texture
spatial        detector + 2D rule                           ``labels/annotation_obj_detection_2d/vqa_result.json``
non_spatial    CLIPScore                                    ``annotation_clip/vqa_result.json``
complex        3-in-1 of BLIP, 2D (complex), CLIP (complex)  the three above + ``annotation_3_in_1/vqa_result.json``
numeracy       detector + counting rule                     ``annotation_num/vqa_result.json``
3d_spatial     detector + DPT depth + 3D rule               ``labels/annotation_obj_detection_3d/vqa_result.json``
=============  ==========================================  ==================================================

Each result file is a JSON list of ``{"question_id", "answer"}`` in sorted-file order, with the summary text
file the script writes beside it. ``question_id`` is the position in the sorted list (BLIP, CLIP, 3-in-1) or
the number in the file name (2D, 3D, numeracy), and BLIP's answers are 4-decimal strings, as officially.
Not written: BLIP's eight per-phrase folders ``annotation{1..8}_blip`` and the 3D script's depth PNGs
(intermediates that no other script reads). An image that cannot be opened scores None with a reason and is
left out of the files (the official scripts stop there).

UniDet has no transformers port: an open-vocabulary detector (OWLv2 by default) stands in for it, so the
spatial, numeracy and complex numbers are not the official ones; :attr:`T2IOfficialScorer.notes` says so
wherever they appear. Models load lazily, only when a category needs them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ...outputs import write_bytes_atomic, write_json_atomic
from ...progress import progress
from .. import DATA
from ..benchmark import ScorerOptions
from ..phrases import (
    blip_phrases,
    blip_question,
    complex_spatial_nouns,
    first_last_nouns,
    parser_note,
    to_detector_label,
    without_adjectives,
    words,
)
from ..records import (
    EvalImage,
    ImageScore,
    ScorerError,
)
from ..rules.t2i_compbench import (
    NUMERACY_RENAMES,
    SPATIAL_2D_RELATIONS,
    SPATIAL_3D_RELATIONS,
    ComplexLists,
    Detection,
    ObjectForms,
    SpatialResult,
    blip_answer,
    blip_image_score,
    detection_frame,
    find_relation,
    numeracy_score,
    numeracy_targets,
    plan_attribute_score,
    plan_numeracy,
    plan_spatial,
    spatial_2d_score,
    spatial_3d_score,
    summary_text,
    three_in_one_parts,
    three_in_one_score,
)
from .blip_vqa import BlipVqa
from .clip_score import ClipScore
from .common import W
from .depth import DepthEstimator
from .open_vocab import OpenVocabDetector

log = logging.getLogger(__name__)

__all__ = ["ATTRIBUTE_CATEGORIES", "CATEGORIES", "RESULT_FILES", "T2IOfficialScorer"]

ATTRIBUTE_CATEGORIES = ("color", "shape", "texture")
CATEGORIES = (*ATTRIBUTE_CATEGORIES, "spatial", "non_spatial", "complex", "numeracy", "3d_spatial")
# Where the official scripts write each result, relative to the category folder (the one holding samples/).
RESULT_FILES = {
    "blip": "annotation_blip/vqa_result.json",
    "spatial_2d": "labels/annotation_obj_detection_2d/vqa_result.json",
    "clip": "annotation_clip/vqa_result.json",
    "three_in_one": "annotation_3_in_1/vqa_result.json",
    "numeracy": "annotation_num/vqa_result.json",
    "spatial_3d": "labels/annotation_obj_detection_3d/vqa_result.json",
}


def _dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    if value is None or isinstance(value, torch.dtype):
        return value
    resolved = getattr(torch, str(value).removeprefix("torch."), None)
    if not isinstance(resolved, torch.dtype):
        raise ScorerError(f"unknown dtype {value!r}")
    return resolved


def _file_number(image: EvalImage, position: int) -> int:
    """The running index the official scripts read from ``{prompt}_{idx:06d}.png``; the position if the name
    has none."""
    stem = Path(image.job.path).stem
    try:
        return int(stem.rsplit("_", 1)[-1])
    except ValueError:
        return position


@dataclass
class _Part:
    """One sub-metric's result for one image: its number and what to show about it."""

    score: float | None
    details: dict[str, Any]


class T2IOfficialScorer:
    """The official T2I-CompBench metrics, models replaced where no transformers port exists (see ``notes``).

    Pass ready wrappers (``blip=``, ``clip=``, ``detector=``, ``depth=``; tests do) or let them load lazily
    from the ``*_model`` hub ids / local paths on ``device`` in ``dtype``.
    """

    name = "official"

    def __init__(
        self,
        *,
        blip: BlipVqa | None = None,
        clip: ClipScore | None = None,
        detector: OpenVocabDetector | None = None,
        depth: DepthEstimator | None = None,
        blip_model: str = BlipVqa.DEFAULT_ID,
        clip_model: str = ClipScore.DEFAULT_ID,
        detector_model: str = OpenVocabDetector.DEFAULT_ID,
        depth_model: str = DepthEstimator.DEFAULT_ID,
        detector_threshold: float = OpenVocabDetector.DEFAULT_THRESHOLD,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str | None = None,
        batch_size: int = 8,
        chunk_size: int = 40,
        data_dir: Path | None = None,
    ) -> None:
        self._blip, self._clip, self._detector, self._depth = blip, clip, detector, depth
        self.blip_model = blip.model_id if blip is not None else blip_model
        self.clip_model = clip.model_id if clip is not None else clip_model
        self.detector_model = detector.model_id if detector is not None else detector_model
        self.depth_model = depth.model_id if depth is not None else depth_model
        self.detector_threshold = detector.threshold if detector is not None else detector_threshold
        self.device = device
        self.dtype = _dtype(dtype)
        self.batch_size = batch_size
        self.chunk_size = max(1, chunk_size)
        self.data_dir = Path(data_dir) if data_dir is not None else DATA / "t2i_compbench"
        self._forms: ObjectForms | None = None
        self._lists: ComplexLists | None = None

    @classmethod
    def from_pretrained(cls, **options: Any) -> T2IOfficialScorer:
        """The constructor's keywords (``*_model`` hub ids or local paths, ``device``, ``dtype``, ...): each model
        loads the first time a category needs it."""
        return cls(**options)

    @classmethod
    def from_options(cls, options: ScorerOptions) -> T2IOfficialScorer:
        """From the CLI's ScorerOptions: ``models`` keys blip / clip / detector / depth override the defaults."""
        models = dict(options.models)
        return cls.from_pretrained(
            blip_model=models.get("blip", BlipVqa.DEFAULT_ID),
            clip_model=models.get("clip", ClipScore.DEFAULT_ID),
            detector_model=models.get("detector", OpenVocabDetector.DEFAULT_ID),
            depth_model=models.get("depth", DepthEstimator.DEFAULT_ID),
            device=options.device or ("cuda" if torch.cuda.is_available() else "cpu"),
            batch_size=options.batch_size,
        )

    # -- models, loaded on first use ---------------------------------------------------------------------

    def _loaded(self, attr: str, what: str, wrapper: type[W], model_id: str, **options: Any) -> W:
        """The wrapper kept in ``attr``, loaded on this scorer's device and dtype the first time it is asked for."""
        if getattr(self, attr) is None:
            log.info("loading %s %s", what, model_id)
            setattr(self, attr, wrapper.from_pretrained(model_id, device=self.device, dtype=self.dtype, **options))
        return getattr(self, attr)

    @property
    def blip(self) -> BlipVqa:
        return self._loaded("_blip", "BLIP-VQA", BlipVqa, self.blip_model, batch_size=self.batch_size)

    @property
    def clip(self) -> ClipScore:
        return self._loaded("_clip", "CLIP", ClipScore, self.clip_model, batch_size=4 * self.batch_size)

    @property
    def detector(self) -> OpenVocabDetector:
        return self._loaded(
            "_detector",
            "detector",
            OpenVocabDetector,
            self.detector_model,
            threshold=self.detector_threshold,
            batch_size=self.batch_size,
        )

    @property
    def depth(self) -> DepthEstimator:
        return self._loaded("_depth", "depth model", DepthEstimator, self.depth_model, batch_size=self.batch_size)

    @property
    def forms(self) -> ObjectForms:
        if self._forms is None:
            self._forms = ObjectForms.load(self.data_dir / "new_objects.txt")
        return self._forms

    @property
    def lists(self) -> ComplexLists:
        if self._lists is None:
            self._lists = ComplexLists.load(self.data_dir)
        return self._lists

    @property
    def _query_template(self) -> str:
        return self._detector.query_template if self._detector is not None else OpenVocabDetector.QUERY_TEMPLATE

    @property
    def notes(self) -> list[str]:
        """Every substitution and approximation behind this scorer's numbers."""
        return [
            "numbers are a re-implementation of the official T2I-CompBench scripts on transformers models, "
            "not the official numbers",
            parser_note(),
            f"attribute binding (color/shape/texture/complex): BLIP-VQA as transformers {self.blip_model} at "
            "480 px, position embeddings interpolated from the checkpoint's own size (384 px in the Salesforce "
            "conversions, which were interpolated down from the official 480 px)",
            f"2D spatial, 3D spatial, numeracy, complex: UniDet replaced by {self.detector_model} (text queries "
            f"'{self._query_template.format('<object>')}', score threshold {self.detector_threshold} instead of "
            "UniDet's 0.5, "
            "per-label NMS 0.5); its confidences enter the official formula, so these numbers are not the "
            "official ones",
            f"non-spatial and complex: CLIPScore with transformers {self.clip_model} (OpenAI's ViT-B/32 weights)",
            f"3D spatial: depth from transformers {self.depth_model} (the official DPT-Hybrid MiDaS)",
            "arithmetic as the official scripts': box corners and confidences rounded to float32 (their "
            "tensors' dtype), then float64 in the scripts' order; BLIP's P(yes) formatted from float32 and "
            "multiplied in float32; summary means summed left to right (3D: numpy's pairwise mean)",
            "where the official scripts raise, a defined answer: 2D/3D spatial, two boxes with a union of 0 "
            "(the scripts divide by it): IoU 0; 2D/3D spatial, a prompt with no NOUN (the scripts index the "
            "first noun): no object, score 0; 3D, an object name found only across two joined labels: not "
            "found; numeracy, a prompt with no countable object (the script divides by zero): scored 0, "
            "counted in the mean and written as 0 in vqa_result.json and score.txt alike; numeracy, a singular-"
            "only noun after two..eight or a number word ending the prompt: that object skipped; numeracy, a "
            "found object with no count of its own (its count list runs short): the presence half only; "
            "numeracy, a zero box area in the duplicate test: no duplicate",
        ]

    # -- scoring -----------------------------------------------------------------------------------------

    def score(self, category: str, images: Sequence[EvalImage], out_dir: Path) -> list[ImageScore]:
        """Score one category's images (official sorted-file order) and write its official result files."""
        if category not in CATEGORIES:
            raise ScorerError(
                f"official T2I-CompBench scorer: unknown category {category!r} (known: {', '.join(CATEGORIES)})"
            )
        if not images:
            return []
        out_dir = Path(out_dir)
        complex_prompts = category == "complex"
        metrics = {
            "color": ("attribute",),
            "shape": ("attribute",),
            "texture": ("attribute",),
            "spatial": ("spatial_2d",),
            "non_spatial": ("clip",),
            "complex": ("attribute", "spatial_2d", "clip"),
            "numeracy": ("numeracy",),
            "3d_spatial": ("spatial_3d",),
        }[category]
        parts, sizes, unreadable = self._run(category, images, metrics, complex_prompts)
        scores: list[ImageScore] = []
        for i, image in enumerate(images):
            if i in unreadable:
                scores.append(
                    ImageScore(
                        image.job.path, category, image.prompt, None, reason=unreadable[i], record=image.job.record
                    )
                )
                continue
            details = {metric: parts[metric][i].details for metric in metrics}
            if complex_prompts:
                attribute, spatial, action = (parts[m][i].score for m in metrics)
                value = three_in_one_score(image.prompt, attribute, spatial, action, self.lists)
                details["three_in_one"] = {
                    "parts": list(three_in_one_parts(image.prompt, self.lists)),
                    "attribute": attribute,
                    "spatial": spatial,
                    "action": action,
                }
                reason = None
            else:
                value = parts[metrics[0]][i].score
                reason = details[metrics[0]].get("reason")
            plan_score, plan_details = self._plan_score(category, image, sizes[i])
            if plan_details:
                details["plan"] = plan_details
            scores.append(
                ImageScore(
                    image.job.path,
                    category,
                    image.prompt,
                    value,
                    plan_score=plan_score,
                    reason=reason,
                    record=image.job.record,
                    details=details,
                )
            )
        self._write_official(category, images, parts, scores, unreadable, out_dir)
        return scores

    def _run(
        self, category: str, images: Sequence[EvalImage], metrics: Sequence[str], complex_prompts: bool
    ) -> tuple[dict[str, list[_Part]], list[tuple[int, int]], dict[int, str]]:
        """Run the metrics chunk by chunk (images are opened once per chunk, never all at once)."""
        compute: dict[str, Callable[[list[Image.Image], list[str], bool], list[_Part]]] = {
            "attribute": self._attribute,
            "spatial_2d": self._spatial_2d,
            "clip": self._clip_similarity,
            "numeracy": self._numeracy,
            "spatial_3d": self._spatial_3d,
        }
        parts: dict[str, list[_Part]] = {metric: [] for metric in metrics}
        sizes: list[tuple[int, int]] = []
        unreadable: dict[int, str] = {}
        with progress(len(images), f"official {category}", "image") as bar:
            for start in range(0, len(images), self.chunk_size):
                chunk = images[start : start + self.chunk_size]
                opened: list[Image.Image] = []
                readable: list[int] = []
                for offset, image in enumerate(chunk):
                    try:
                        opened.append(image.image())
                        readable.append(offset)
                        sizes.append(opened[-1].size)
                    except OSError as error:
                        unreadable[start + offset] = f"cannot read {image.path}: {error}"
                        sizes.append((0, 0))
                prompts = [chunk[offset].prompt for offset in readable]
                for metric in metrics:
                    results = compute[metric](opened, prompts, complex_prompts) if opened else []
                    filled = [_Part(None, {}) for _ in chunk]
                    for offset, result in zip(readable, results):
                        filled[offset] = result
                    parts[metric].extend(filled)
                bar.update(len(chunk))
        return parts, sizes, unreadable

    def _attribute(self, images: list[Image.Image], prompts: list[str], complex_prompts: bool) -> list[_Part]:
        phrase_lists = [blip_phrases(prompt) for prompt in prompts]
        questions = [[blip_question(phrase) for phrase in phrases] for phrases in phrase_lists]
        probabilities = self.blip.yes_probabilities(images, questions)
        out = []
        for phrases, asked, p_yes in zip(phrase_lists, questions, probabilities):
            value = blip_image_score(p_yes)
            out.append(
                _Part(
                    value,
                    {
                        "phrases": phrases,
                        "questions": asked,
                        "p_yes": [blip_answer(p) for p in p_yes],
                        "blip_vqa": value,
                    },
                )
            )
        return out

    def _detect_pairs(
        self, images: list[Image.Image], nouns: list[tuple[str | None, str | None]]
    ) -> tuple[list[tuple[str | None, str | None]], list[list[Detection]]]:
        """Each image's two nouns as detector labels, and what the detector finds of them."""
        objects = [(to_detector_label(a), to_detector_label(b)) for a, b in nouns]
        return objects, self.detector.detect(images, [[o for o in pair if o] for pair in objects])

    @staticmethod
    def _spatial_part(result: SpatialResult, nouns: tuple[str | None, str | None], found: list[Detection]) -> _Part:
        return _Part(
            result.score, {"nouns": list(nouns), **result.details(), "detections": [d.to_dict() for d in found]}
        )

    def _spatial_2d(self, images: list[Image.Image], prompts: list[str], complex_prompts: bool) -> list[_Part]:
        nouns = [complex_spatial_nouns(p) if complex_prompts else first_last_nouns(p) for p in prompts]
        objects, detections = self._detect_pairs(images, nouns)
        return [
            self._spatial_part(
                spatial_2d_score(find_relation(prompt, SPATIAL_2D_RELATIONS), obj1, obj2, found), pair, found
            )
            for prompt, pair, (obj1, obj2), found in zip(prompts, nouns, objects, detections)
        ]

    def _clip_similarity(self, images: list[Image.Image], prompts: list[str], complex_prompts: bool) -> list[_Part]:
        texts = [without_adjectives(p) if complex_prompts else p for p in prompts]
        similarities = self.clip.similarities(images, texts)
        return [_Part(value, {"text": text, "clipscore": value}) for text, value in zip(texts, similarities)]

    def _numeracy(self, images: list[Image.Image], prompts: list[str], complex_prompts: bool) -> list[_Part]:
        targets = [numeracy_targets(words(p), self.forms) for p in prompts]
        labels = [list(dict.fromkeys(NUMERACY_RENAMES.get(n, n) for n in t.names)) for t in targets]
        detections = self.detector.detect(images, labels)
        out = []
        for target, found in zip(targets, detections):
            result = numeracy_score(target, found)
            details: dict[str, Any] = {
                "names": target.names,
                "counts": target.counts,
                "detections": [d.to_dict() for d in found],
            }
            if target.problems:
                details["problems"] = target.problems
            if result is None:
                # The official script divides by zero here; the score is what an empty object list adds up
                # to, 0, and it counts in the mean like any image (as it is written in the official files).
                details["reason"] = (
                    "the prompt names no object from new_objects.txt after a number word (the official script "
                    "fails on it): scored 0"
                )
                out.append(_Part(0.0, details))
            else:
                out.append(_Part(result.score, {**details, **result.details()}))
        return out

    def _spatial_3d(self, images: list[Image.Image], prompts: list[str], complex_prompts: bool) -> list[_Part]:
        nouns = [first_last_nouns(p) for p in prompts]
        objects, detections = self._detect_pairs(images, nouns)
        depth_maps = self.depth.depth_maps(images)
        return [
            self._spatial_part(
                spatial_3d_score(find_relation(prompt, SPATIAL_3D_RELATIONS), obj1, obj2, found, depth_map),
                pair,
                found,
            )
            for prompt, pair, (obj1, obj2), found, depth_map in zip(prompts, nouns, objects, detections, depth_maps)
        ]

    # -- the plan, read with the same rules --------------------------------------------------------------

    def _plan_score(self, category: str, image: EvalImage, size: tuple[int, int]) -> tuple[float | None, dict]:
        """The category's rule applied to the planned objects (None where no rule reads a plan, or when the
        sample has no record at all; 0 when the record plans no object)."""
        if category in ("non_spatial", "3d_spatial") or image.record is None:
            return None, {}
        objects = image.objects
        if not objects:
            return 0.0, {"reason": "the plan has no objects"}
        frame = detection_frame(*size) if size[0] > 0 and size[1] > 0 else (1000, 1000)
        prompt = image.prompt
        if category in ATTRIBUTE_CATEGORIES:
            value = plan_attribute_score(blip_phrases(prompt), [o.name for o in objects])
            return value, {"attribute": value}
        if category == "spatial":
            score, result = plan_spatial(prompt, objects, frame)
            return score, result.details()
        if category == "numeracy":
            result = plan_numeracy(numeracy_targets(words(prompt), self.forms), objects, frame, self.forms)
            return (None, {}) if result is None else (result.score, result.details())
        # complex: the parts a plan can show (attribute, and spatial where 3-in-1 uses it; never the action)
        parts = three_in_one_parts(prompt, self.lists)
        attribute = plan_attribute_score(blip_phrases(prompt), [o.name for o in objects])
        values = {"attribute": attribute}
        if "spatial" in parts:
            values["spatial"] = plan_spatial(prompt, objects, frame, complex_prompt=True)[0]
        return float(np.mean(list(values.values()))), values

    # -- official files ----------------------------------------------------------------------------------

    def _write_official(
        self,
        category: str,
        images: Sequence[EvalImage],
        parts: dict[str, list[_Part]],
        scores: Sequence[ImageScore],
        unreadable: dict[int, str],
        out_dir: Path,
    ) -> None:
        readable = [i for i in range(len(images)) if i not in unreadable]

        def entries(values: Callable[[int], Any], by_name: bool) -> list[dict[str, Any]]:
            return [
                {"question_id": _file_number(images[i], i) if by_name else i, "answer": values(i)} for i in readable
            ]

        def summary(metric: str, rows: list[dict[str, Any]]) -> str:
            return summary_text(metric, [row["answer"] for row in rows])

        if "attribute" in parts:
            rows = entries(lambda i: blip_answer(parts["attribute"][i].score), by_name=False)
            self._write(out_dir, RESULT_FILES["blip"], rows, "blip_vqa_score.txt", summary("blip", rows))
        if "spatial_2d" in parts:
            rows = entries(lambda i: parts["spatial_2d"][i].score, by_name=True)
            self._write(out_dir, RESULT_FILES["spatial_2d"], rows, "avg_score.txt", summary("spatial_2d", rows))
            mapping = [
                {"image": Path(images[i].job.path).name, "question_id": _file_number(images[i], i)} for i in readable
            ]
            write_json_atomic(out_dir / Path(RESULT_FILES["spatial_2d"]).parent / "mapping.json", mapping)
        if "clip" in parts:
            rows = entries(lambda i: parts["clip"][i].score, by_name=False)
            self._write(out_dir, RESULT_FILES["clip"], rows, "score_avg.txt", summary("clip", rows))
        if category == "complex":
            rows = entries(lambda i: scores[i].score, by_name=False)
            self._write(out_dir, RESULT_FILES["three_in_one"], rows, "vqa_score.txt", summary("three_in_one", rows))
        if "numeracy" in parts:
            # The same number per image as the image's score (0 where nothing is countable), so the file,
            # its summary and the run's own mean agree.
            rows = entries(lambda i: parts["numeracy"][i].score, by_name=True)
            self._write(out_dir, RESULT_FILES["numeracy"], rows, "score.txt", summary("numeracy", rows))
        if "spatial_3d" in parts:
            rows = entries(lambda i: parts["spatial_3d"][i].score, by_name=True)
            self._write(out_dir, RESULT_FILES["spatial_3d"], rows, "avg_result.txt", summary("spatial_3d", rows))

    @staticmethod
    def _write(out_dir: Path, result_file: str, rows: list[dict[str, Any]], summary_name: str, summary: str) -> None:
        path = out_dir / result_file
        write_json_atomic(path, rows)
        write_bytes_atomic(path.parent / summary_name, summary.encode())
        log.info("wrote %s (%d images)", path, len(rows))
