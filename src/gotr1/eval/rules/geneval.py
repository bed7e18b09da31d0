"""GenEval's scoring rules, model-free: which detections count, what "left of" means, when an image is correct.

Re-implemented from the official code (djghosh13/geneval at af4902f: ``evaluation/evaluate_images.py`` and
``evaluation/summary_scores.py``) in our own words. The detector and the colour classifier stay outside: the
rules take detections (label, confidence, pixel box, optional mask) and a callable that names the colour of
the objects a clause asks about, so the same rules judge a detector's output and a model's written plan.

What the official code does, and so what these functions do:

- a detection counts at confidence > 0.3 (> 0.9 for the ``counting`` tag); per class at most 16, most
  confident first (ties: the later detection first, as the official reversed ``argsort`` has it);
- an ``include`` clause looks only at the ``count`` most confident objects of its class: it needs that many,
  then each of them in the clause's colour, then every one of them in the relation to every object of the
  clause it refers to; clauses are ANDed, and a failed clause is no target for a later relation;
- an ``exclude`` clause fails the image when at least ``count`` objects of its class are detected (ORed);
- ``reason`` is the failed checks' messages, one per line, "" for a correct image;
- the arithmetic is the official code's, dtype for dtype (see "Dtypes" below the class list): mmdetection's
  boxes and scores are float32 numpy arrays, so a score is compared with the threshold in float32, and a
  relative position is worked out in float32 from float32 boxes;
- a tag's score is the mean of ``correct`` over its images; the overall score is the plain mean of the tag
  means (not of the images).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import DATA
from ..benchmark import BenchmarkError

__all__ = [
    "COLORS",
    "COLOR_TEMPLATES",
    "DEFAULT_OPTIONS",
    "GENEVAL_CLASSES",
    "METADATA_PATH",
    "RELATIONS",
    "TAGS",
    "ColourOf",
    "Detection",
    "GenEvalOptions",
    "GenEvalSummary",
    "MetadataError",
    "Verdict",
    "box_iou",
    "colour_words",
    "detections_json",
    "evaluate",
    "geneval_class",
    "load_metadata",
    "relative_position",
    "select_detections",
    "summarize",
    "validate_metadata",
]

METADATA_PATH = DATA / "geneval" / "evaluation_metadata.jsonl"

# The 80 COCO classes in the detector's label order, spelled as GenEval's evaluation/object_names.txt spells
# them: mmdetection's COCO names except "mouse", "remote", "keyboard", which GenEval calls "computer mouse",
# "tv remote", "computer keyboard". The official scorer maps label index i to the i-th name.
GENEVAL_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "computer mouse", "tv remote",
    "computer keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

TAGS: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
COLORS: tuple[str, ...] = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white",
)  # fmt: skip
# The zero-shot colour classifier's prompts; a colour's text embedding is the mean over the three.
COLOR_TEMPLATES: tuple[str, ...] = (
    "a photo of a {colour} {object}",
    "a photo of a {colour}-colored {object}",
    "a photo of a {colour} object",
)
# In the order the official code tests them (it reports them as a Python set, whose order varies).
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")

_CLASS_INDEX = {name: i for i, name in enumerate(GENEVAL_CLASSES)}

# Dtypes: which dtype the official code computes in, and so which dtype these rules compute in. Worked out from
# evaluate_images.py and checked under numpy 1.23.5 (GenEval's environment.yml pins 1.23.1) and 2.4.6:
#
# - mmdetection 2.x returns, per class, a float32 array of rows [x1, y1, x2, y2, score].
# - The confidence test ``scores > threshold`` is a float32 *array* against a Python float. numpy 1.x's
#   value-based casting lets the array's dtype win over a Python scalar of the same kind, and numpy 2's NEP 50
#   treats a Python float as "weak": under both the threshold becomes float32(0.3) = 0.300000011920929, so a
#   score of exactly float32(0.3) does not count (in float64, 0.300000011920929 > 0.3 would count it). For
#   0.9 it happens to make no difference (float32(0.9) < 0.9), for other thresholds it can. The ranking sorts
#   the same float32 scores, so two scores equal in float32 are a tie (the later detection first).
# - The relative position is array arithmetic throughout (centres, sizes, the offset, its shrink by
#   0.1 x the summed sizes, the 1e-3 "no relation" test, the Euclidean norm, the division), so every step
#   rounds to float32, Python constants included, under numpy 1.x and 2 alike; only the final tests against
#   +-0.5 compare a float32 scalar with a Python float, which is exact either way.
# - The overlap suppression (``max_overlap`` < 1; off by default) works on float32 *scalars*. There numpy 1.x
#   (the pinned version) promotes a float32 scalar combined with a Python int or float to float64, numpy 2
#   keeps float32: the widths ``x2 - x1`` are float32 subtractions, and the +1, the areas, the ratio and the
#   comparison with ``max_overlap`` are float64, as under the pinned numpy.
_F32 = np.float32


class MetadataError(BenchmarkError):
    """A GenEval metadata line the rules cannot evaluate: one line naming where it came from."""


@dataclass(frozen=True)
class GenEvalOptions:
    """The official scorer's ``--options`` and their defaults (``threshold``, ``counting_threshold``,
    ``max_objects``, ``max_overlap``, ``position_threshold``)."""

    threshold: float = 0.3
    counting_threshold: float = 0.9
    max_objects: int = 16
    max_overlap: float = 1.0  # 1.0: no suppression of overlapping same-class boxes (the default)
    position_threshold: float = 0.1

    def confidence_threshold(self, tag: str) -> float:
        """Counting asks for surer detections, so an unsure duplicate does not spoil the count."""
        return self.counting_threshold if tag == "counting" else self.threshold


DEFAULT_OPTIONS = GenEvalOptions()


@dataclass(frozen=True, eq=False)
class Detection:
    """One detected (or planned) object.

    ``label`` is a name of :data:`GENEVAL_CLASSES`; ``box`` is ``(x1, y1, x2, y2)`` in pixels; ``mask`` an
    ``(H, W)`` bool array or None; ``colour`` a colour already known without looking (a plan names it),
    None for a detector's output.
    """

    label: str
    score: float
    box: tuple[float, float, float, float]
    mask: NDArray[np.bool_] | None = None
    colour: str | None = None

    def as_row(self) -> list[float]:
        """``[x1, y1, x2, y2, score]`` as the official results line lists a box (float32 values)."""
        return [float(v) for v in np.asarray([*self.box, self.score], dtype=np.float32)]


# (the top-`count` objects of a class, the class name) -> one colour name per object.
ColourOf = Callable[[Sequence[Detection], str], Sequence[str]]


@dataclass
class Verdict:
    """An image's result: correct or not, GenEval's reason text, and the colours the classifier named."""

    correct: bool
    reason: str
    colours: dict[str, list[str]] = field(default_factory=dict)


def geneval_class(name: str) -> str | None:
    """The GenEval class a free-text object name refers to ("two red apples" -> "apple", "a mouse" ->
    "computer mouse"), or None. GenEval's names map to themselves; other names go through the project's
    COCO matcher (:func:`gotr1.rewards.detector.coco_class`), whose label list has the same order."""
    from ...rewards.detector import COCO_LABELS, coco_class

    text = " ".join(name.lower().split())
    if text in _CLASS_INDEX:
        return text
    label = coco_class(name)
    return None if label is None else GENEVAL_CLASSES[COCO_LABELS.index(label)]


def colour_words(name: str, label: str | None = None) -> str | None:
    """The first colour word of an object name ("a red-colored car" -> "red"), or None.

    When the class itself is a colour word ("orange"), its own last mention is the noun, not a colour:
    "an orange" has no colour, "a yellow orange" is yellow, "an orange orange" is orange.
    """
    words = "".join(c if c.isalpha() else " " for c in name.lower()).split()
    if label is not None and label in COLORS and label in words:
        del words[len(words) - 1 - words[::-1].index(label)]
    return next((w for w in words if w in COLORS), None)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union with the official inclusive-pixel convention (+1 on each side), in the
    official dtypes (see "Dtypes" below the class list): corners as float32, each width and height a float32
    subtraction, the rest in float64 (numpy 1.23's promotion of a float32 scalar with a Python number)."""

    def area(x1: np.float32, y1: np.float32, x2: np.float32, y2: np.float32) -> float:
        return max(float(x2 - x1) + 1, 0) * max(float(y2 - y1) + 1, 0)

    ax1, ay1, ax2, ay2 = (_F32(v) for v in a[:4])
    bx1, by1, bx2, by2 = (_F32(v) for v in b[:4])
    inter = area(max(ax1, bx1), max(ay1, by1), min(ax2, bx2), min(ay2, by2))
    union = area(ax1, ay1, ax2, ay2) + area(bx1, by1, bx2, by2) - inter
    return inter / union if union else 0.0


def select_detections(
    detections: Iterable[Detection], tag: str, options: GenEvalOptions = DEFAULT_OPTIONS
) -> dict[str, list[Detection]]:
    """Class -> the detections that count, most confident first; classes in GenEval's order, empty ones left
    out. Strictly above the tag's threshold, at most ``max_objects`` per class; with ``max_overlap`` < 1 a
    box overlapping a more confident one of its class by IoU >= ``max_overlap`` is dropped."""
    by_class: dict[str, list[Detection]] = {}
    for det in detections:
        if det.label not in _CLASS_INDEX:
            raise ValueError(f"detection label {det.label!r} is not a GenEval class")
        by_class.setdefault(det.label, []).append(det)
    # float32 scores against a float32 threshold, as the official float32 array against a Python float.
    threshold = _F32(options.confidence_threshold(tag))
    selected: dict[str, list[Detection]] = {}
    for name in GENEVAL_CLASSES:
        candidates = by_class.get(name)
        if not candidates:
            continue
        scores = [_F32(d.score) for d in candidates]
        # Descending by float32 score; among equal ones the later one first (numpy's argsort reversed).
        order = sorted(range(len(candidates)), key=lambda i: (scores[i], i), reverse=True)
        ranked = [candidates[i] for i in order if scores[i] > threshold][: options.max_objects]
        kept: list[Detection] = []
        while ranked:
            best = ranked.pop(0)
            kept.append(best)
            if options.max_overlap != 1:
                ranked = [d for d in ranked if box_iou(best.box, d.box) < options.max_overlap]
        if kept:
            selected[name] = kept
    return selected


def relative_position(
    box_a: Sequence[float], box_b: Sequence[float], position_threshold: float = DEFAULT_OPTIONS.position_threshold
) -> tuple[str, ...]:
    """Where A is relative to B, as a subset of :data:`RELATIONS` (in that order).

    The centre offset A - B is shrunk towards 0 on each axis by ``position_threshold`` x (A's size + B's
    size) on that axis, so boxes that overlap a lot are in no relation; what remains, divided by the length
    of the *unshrunk* offset, must pass 0.5 on an axis for a relation on it.

    Every step rounds to float32, in the official order (see "Dtypes" below the class list): centre
    ``(x1 + x2) / 2``, size ``|x2 - x1|``, offset ``centre_a - centre_b``, shrink
    ``max(|offset| - float32(threshold) * (size_a + size_b), 0) * sign(offset)``, the test
    ``|shrunk| < float32(1e-3)`` on both axes, norm ``sqrt(ox * ox + oy * oy)``, then ``shrunk / norm``.
    """
    ax1, ay1, ax2, ay2 = (_F32(v) for v in box_a[:4])
    bx1, by1, bx2, by2 = (_F32(v) for v in box_b[:4])
    two, zero, threshold = _F32(2), _F32(0), _F32(position_threshold)
    offset = ((ax1 + ax2) / two - (bx1 + bx2) / two, (ay1 + ay2) / two - (by1 + by2) / two)
    sizes = (abs(ax2 - ax1) + abs(bx2 - bx1), abs(ay2 - ay1) + abs(by2 - by1))
    shrunk = [max(abs(o) - threshold * s, zero) * np.sign(o) for o, s in zip(offset, sizes)]
    if all(abs(v) < _F32(1e-3) for v in shrunk):
        return ()
    norm = np.sqrt(offset[0] * offset[0] + offset[1] * offset[1])
    dx, dy = shrunk[0] / norm, shrunk[1] / norm
    found = {"left of": dx < -0.5, "right of": dx > 0.5, "above": dy < -0.5, "below": dy > 0.5}
    return tuple(rel for rel in RELATIONS if found[rel])


def evaluate(
    metadata: Mapping[str, Any],
    detected: Mapping[str, Sequence[Detection]],
    colour_of: ColourOf | None = None,
    options: GenEvalOptions = DEFAULT_OPTIONS,
) -> Verdict:
    """Is the image correct for its metadata line, given the detections that count
    (:func:`select_detections`)? ``colour_of`` is asked only for clauses with a colour, and only about the
    clause's top-``count`` objects."""
    correct = True
    reasons: list[str] = []
    colours_seen: dict[str, list[str]] = {}
    groups: list[Sequence[Detection] | None] = []  # per include clause: its objects, None when it failed
    for clause in metadata.get("include", []):
        name, count = clause["class"], int(clause["count"])
        found = list(detected.get(name, []))[:count]
        matched = True
        if len(found) < count:
            matched = False
            reasons.append(f"expected {name}>={count}, found {len(found)}")
        else:
            if "color" in clause:
                if colour_of is None:
                    raise ValueError(f"a colour clause ({clause['color']} {name}) needs a colour classifier")
                colours = [str(c) for c in colour_of(found, name)]
                if len(colours) != len(found):
                    raise ValueError(f"the colour classifier named {len(colours)} colours for {len(found)} objects")
                colours_seen.setdefault(name, colours)
                wanted = clause["color"]
                if colours.count(wanted) < count:
                    matched = False
                    tally = ", ".join(f"{colours.count(c)} {c}" for c in COLORS if c in colours)
                    reasons.append(
                        f"expected {wanted} {name}>={count}, found {colours.count(wanted)} {wanted}; and {tally}"
                    )
            if "position" in clause and matched:
                relation, target = clause["position"][0], int(clause["position"][1])
                targets = groups[target]
                if targets is None:
                    matched = False
                    reasons.append(f"no target for {name} to be {relation}")
                else:
                    matched = _all_pairs_hold(found, targets, relation, name, reasons, options)
        groups.append(found if matched else None)
        correct = correct and matched
    for clause in metadata.get("exclude", []):
        name, count = clause["class"], int(clause["count"])
        present = len(detected.get(name, []))
        if present >= count:
            correct = False
            reasons.append(f"expected {name}<{count}, found {present}")
    return Verdict(correct, "\n".join(reasons), colours_seen)


def _all_pairs_hold(
    objects: Sequence[Detection],
    targets: Sequence[Detection],
    relation: str,
    name: str,
    reasons: list[str],
    options: GenEvalOptions,
) -> bool:
    """Every object against every target; the first pair that fails is reported and ends the check."""
    for obj in objects:
        for target in targets:
            relations = relative_position(obj.box, target.box, options.position_threshold)
            if relation not in relations:
                reasons.append(f"expected {name} {relation} target, found {' and '.join(relations)} target")
                return False
    return True


def detections_json(detected: Mapping[str, Sequence[Detection]]) -> dict[str, list[list[float]]]:
    """The official results line's ``details``: class -> ``[x1, y1, x2, y2, score]`` per counted object."""
    return {name: [det.as_row() for det in dets] for name, dets in detected.items()}


# --------------------------------------------------------------------------------------------
# Metadata


def validate_metadata(entry: Any, where: str = "metadata") -> dict[str, Any]:
    """``entry`` if the rules can evaluate it, else :class:`MetadataError` naming ``where`` and the key."""
    if not isinstance(entry, dict):
        raise MetadataError(f"{where}: a metadata line is a JSON object, got {type(entry).__name__}")
    for key in ("tag", "prompt", "include"):
        if key not in entry:
            raise MetadataError(f"{where}: missing key {key!r}")
    if entry["tag"] not in TAGS:
        raise MetadataError(f"{where}: tag {entry['tag']!r} is not one of {', '.join(TAGS)}")
    for key in ("include", "exclude"):
        clauses = entry.get(key, [])
        if not isinstance(clauses, list):
            raise MetadataError(f"{where}: {key!r} must be a list")
        for i, clause in enumerate(clauses):
            _validate_clause(clause, f"{where}: {key}[{i}]", i if key == "include" else None)
    return entry


def _validate_clause(clause: Any, where: str, include_index: int | None) -> None:
    if not isinstance(clause, dict):
        raise MetadataError(f"{where}: a clause is a JSON object")
    if clause.get("class") not in _CLASS_INDEX:
        raise MetadataError(f"{where}: class {clause.get('class')!r} is not a GenEval class")
    count = clause.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise MetadataError(f"{where}: count must be a positive integer, got {count!r}")
    if "color" in clause and clause["color"] not in COLORS:
        raise MetadataError(f"{where}: color {clause['color']!r} is not one of {', '.join(COLORS)}")
    if "position" in clause:
        position = clause["position"]
        valid = (
            include_index is not None
            and isinstance(position, list)
            and len(position) == 2
            and position[0] in RELATIONS
            and isinstance(position[1], int)
            and not isinstance(position[1], bool)
            and 0 <= position[1] < include_index
        )
        if not valid:
            raise MetadataError(
                f"{where}: position must be [relation, index of an earlier include clause], got {position!r}"
            )


def load_metadata(path: Path = METADATA_PATH) -> list[dict[str, Any]]:
    """Every metadata line in file order, each checked; an error names the file and line."""
    entries = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                entry = json.loads(line)
            except ValueError as exc:
                raise MetadataError(f"{where}: not JSON ({exc})") from None
            entries.append(validate_metadata(entry, where))
    return entries


# --------------------------------------------------------------------------------------------
# Aggregation


@dataclass(frozen=True)
class GenEvalSummary:
    """What ``summary_scores.py`` prints: per-tag accuracy (tags in order of first appearance), the overall
    score (the mean of the tag accuracies), and the image- and prompt-level accuracies."""

    tag_scores: dict[str, float]
    tag_counts: dict[str, tuple[int, int]]  # tag -> (correct, images)
    overall: float
    images: int
    prompts: int
    image_accuracy: float
    prompt_accuracy: float  # a prompt counts when any of its images is correct


def summarize(rows: Iterable[Mapping[str, Any]]) -> GenEvalSummary:
    """Aggregate results rows (``tag``, ``correct``, ``metadata``; e.g. the lines of ``results.jsonl``).
    Prompts are told apart by their metadata, as the official script groups them."""
    counts: dict[str, list[int]] = {}
    prompts: dict[str, bool] = {}
    total = right = 0
    for row in rows:
        ok = bool(row["correct"])
        tally = counts.setdefault(str(row["tag"]), [0, 0])
        tally[0] += ok
        tally[1] += 1
        total += 1
        right += ok
        metadata = row.get("metadata")
        key = metadata if isinstance(metadata, str) else json.dumps(metadata)
        prompts[key] = prompts.get(key, False) or ok
    if not total:
        raise ValueError("no results to summarize")
    tag_scores = {tag: c / n for tag, (c, n) in counts.items()}
    return GenEvalSummary(
        tag_scores=tag_scores,
        tag_counts={tag: (c, n) for tag, (c, n) in counts.items()},
        overall=sum(tag_scores.values()) / len(tag_scores),
        images=total,
        prompts=len(prompts),
        image_accuracy=right / total,
        prompt_accuracy=sum(prompts.values()) / len(prompts),
    )
