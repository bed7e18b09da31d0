"""T2I-CompBench's scoring rules, as the official scripts compute them (commit 1b70949), without models.

Each function takes what the official script had at that point (detections, depth map, per-phrase
probabilities, the three complex sub-scores) and returns its number. The scripts' quirks are kept on purpose,
because the benchmark's published numbers include them; each is named in the docstring where it happens:

- 2D spatial: the relation is the first of a fixed phrase list found as a *substring* of the prompt;
  ``on top of`` matches no scoring branch and scores 0 (33 complex prompts use it); the image score is
  ``0.25 * conf1 + 0.25 * conf2 + 0.5 * position`` and anything below 0.5 becomes 0, so one object found
  (at most 0.25) always scores 0; each object is the *first* detection with exactly its label, so two objects
  with the same label are the same box.
- 3D spatial: the same combination without the 0.5 floor; objects matched by *substring* of the labels with a
  loop that keeps the last match before both are found; the depth map is indexed ``[x, y]`` (transposed).
- Numeracy: duplicate same-label boxes merged (IoU or containment > 0.9, with the +1 pixel convention);
  1/n of the score per counted object, half for being present, half for the exact count.
- 3-in-1: which two or three sub-scores are averaged depends on the prompt's list.
- BLIP-VQA: per-phrase probabilities rounded to 4 decimals, multiplied in float32.

Arithmetic, dtype for dtype, as the scripts at 1b70949 do it (their .pyc files are CPython 3.9's; numpy 1.25):

- the detector's boxes and confidences are float32 tensors that the scripts read with ``.item()``: exact
  float32 values, then Python (float64) arithmetic. The rules round every box corner and confidence they
  read to float32 first (:func:`as_float32`), so a detector or plan handing in float64 numbers is scored as
  the official script would score the float32 tensor, then compute in float64 in the scripts' order;
- BLIP's per-phrase P(yes) is a float32 tensor formatted with 4 decimals; the product is a float32 tensor;
- the summary files' means are left-to-right sums from 0 (BLIP, 2D, CLIP, numeracy, and 3-in-1's ``sum``,
  which is a plain left-to-right sum before Python 3.12) divided by the count, except 3D's ``np.mean``, which
  sums pairwise in float64 (:func:`summary_text`).

Where the official scripts raise, the rules give a defined answer instead (each listed in the official
scorer's notes): two boxes whose union is 0 (both spatial scripts divide by it): IoU 0; a numeracy prompt
with no countable object (``1 / len(my_obj)``): no result (the scorer scores 0); a number word before a
singular-only noun, a number word ending the prompt, a count missing for a found object: see
:func:`numeracy_targets` and :func:`numeracy_score`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...chain import PlannedObject
from .. import DATA

__all__ = [
    "DETECTION_LONG_SIDE",
    "DETECTION_SHORT_SIDE",
    "NUMBER_WORDS",
    "NUMERACY_RENAMES",
    "SPATIAL_2D_RELATIONS",
    "SPATIAL_3D_RELATIONS",
    "ComplexLists",
    "Detection",
    "NumeracyResult",
    "NumeracyTargets",
    "ObjectForms",
    "SpatialResult",
    "as_float32",
    "blip_answer",
    "blip_image_score",
    "box_iou",
    "detection_frame",
    "find_relation",
    "first_with_label",
    "merge_duplicate_detections",
    "numeracy_score",
    "numeracy_targets",
    "plan_attribute_score",
    "planned_detections",
    "position_score_2d",
    "position_score_3d",
    "prompt_key",
    "region_mean_depth",
    "spatial_2d_score",
    "spatial_3d_score",
    "summary_text",
    "three_in_one_parts",
    "three_in_one_score",
]

PixelBox = tuple[float, float, float, float]

# UniDet's input: torchvision Resize(size=479, max_size=480) of the sample; boxes come back in that frame.
DETECTION_SHORT_SIDE = 479
DETECTION_LONG_SIDE = 480

# 2D_spatial_eval.py's locality list, in its order: the first one found as a substring wins.
SPATIAL_2D_RELATIONS = (
    "on side of",
    "next to",
    "near",
    "on the left of",
    "on the right of",
    "on the bottom of",
    "on the top of",
    "on top of",
)
# 3D_spatial_eval.py's list, same rule.
SPATIAL_3D_RELATIONS = ("in front of", "behind", "hidden")
_NEAR_RELATIONS = ("next to", "on side of", "near")


@dataclass(frozen=True)
class Detection:
    """One detected object: its label, confidence and box ``(x1, y1, x2, y2)`` in pixels of the detection
    frame (see :func:`detection_frame`)."""

    label: str
    score: float
    box: PixelBox

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "score": round(float(self.score), 6),
            "box": [round(float(v), 2) for v in self.box],
        }


def detection_frame(
    width: int, height: int, short_side: int = DETECTION_SHORT_SIDE, max_long_side: int = DETECTION_LONG_SIDE
) -> tuple[int, int]:
    """(width, height) of the image as UniDet saw it: torchvision ``Resize(479, max_size=480)``: short side to
    479, long side ``int(479 * long / short)``, and if that passes 480, long side 480 and short side
    ``int(480 * 479 / long)``. A 512x512 sample becomes 479x479, so the 150 px rule is in that frame."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = short_side, int(short_side * long / short)
    if new_long > max_long_side:
        new_short, new_long = int(max_long_side * new_short / new_long), max_long_side
    return (new_short, new_long) if width <= height else (new_long, new_short)


def as_float32(value: float) -> float:
    """``value`` rounded to float32, as a Python float: what ``tensor.item()`` of a float32 tensor gives."""
    return float(np.float32(value))


def _box32(box: PixelBox) -> PixelBox:
    return (as_float32(box[0]), as_float32(box[1]), as_float32(box[2]), as_float32(box[3]))


def box_iou(box1: PixelBox, box2: PixelBox) -> float:
    """IoU as the spatial scripts compute it (no +1), in Python floats in their order. The official scripts
    divide by a union of 0 (two empty boxes) and fail; here that IoU is 0. Any other union, even a negative
    one from inverted boxes, is divided by, as officially."""
    x_overlap = max(0.0, min(box1[2], box2[2]) - max(box1[0], box2[0]))
    y_overlap = max(0.0, min(box1[3], box2[3]) - max(box1[1], box2[1]))
    intersection = x_overlap * y_overlap
    union = (box1[2] - box1[0]) * (box1[3] - box1[1]) + (box2[2] - box2[0]) * (box2[3] - box2[1]) - intersection
    return intersection / union if union != 0 else 0.0


def _center(box: PixelBox) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def find_relation(prompt: str, vocabulary: Sequence[str] = SPATIAL_2D_RELATIONS) -> str | None:
    """The first phrase of ``vocabulary`` that occurs in the prompt as a substring (so ``near`` also matches
    ``nearby``, and ``next to`` wins over ``on the left of`` when both occur), or None."""
    return next((phrase for phrase in vocabulary if phrase in prompt), None)


def position_score_2d(
    relation: str | None, box1: PixelBox, box2: PixelBox, iou_threshold: float = 0.1, distance_threshold: float = 150.0
) -> float:
    """How well box1 stands in ``relation`` to box2, in [0, 1].

    With centre offsets ``dx = c2x - c1x`` and ``dy = c2y - c1y`` (y grows downward):
    ``on the left of`` needs dx > 0 and |dx| > |dy|, ``on the right of`` dx < 0, ``on the top of`` dy > 0 and
    |dy| > |dx|, ``on the bottom of`` dy < 0; then 1 if IoU < 0.1 else 0.1 / IoU. ``next to``, ``near``,
    ``on side of``: 1 if |dx| < 150 or |dy| < 150 (pixels of the 479 frame), else 150 / max(|dx|, |dy|).
    Quirk kept: ``on top of`` (without "the") and no relation at all match no branch and score 0.
    Corners are rounded to float32 first (:func:`as_float32`), then everything is float64 in the script's order.
    """
    box1, box2 = _box32(box1), _box32(box2)
    dx = _center(box2)[0] - _center(box1)[0]
    dy = _center(box2)[1] - _center(box1)[1]
    if relation in _NEAR_RELATIONS:
        if abs(dx) < distance_threshold or abs(dy) < distance_threshold:
            return 1.0
        return distance_threshold / max(abs(dx), abs(dy))
    axis_sign = {
        "on the left of": ("x", 1),
        "on the right of": ("x", -1),
        "on the top of": ("y", 1),
        "on the bottom of": ("y", -1),
    }.get(relation or "")
    if axis_sign is None:
        return 0.0
    axis, sign = axis_sign
    along, across = (dx, dy) if axis == "x" else (dy, dx)
    if along * sign <= 0 or abs(along) <= abs(across):
        return 0.0
    iou = box_iou(box1, box2)
    return 1.0 if iou < iou_threshold else iou_threshold / iou


def first_with_label(detections: Sequence[Detection], label: str | None) -> Detection | None:
    """The first detection (detector order: highest confidence first) whose label is exactly ``label``."""
    if label is None:
        return None
    return next((d for d in detections if d.label == label), None)


@dataclass
class SpatialResult:
    """One image's spatial score and how it came about (for ``ImageScore.details``)."""

    score: float
    relation: str | None
    objects: tuple[str | None, str | None]
    found: tuple[Detection | None, Detection | None]
    position: float | None  # None when the two objects were not both found
    unfloored: float  # the score before the 0.5 floor (2D) — equal to ``score`` for 3D

    def details(self) -> dict[str, Any]:
        return {
            "relation": self.relation,
            "objects": list(self.objects),
            "found": [None if d is None else d.to_dict() for d in self.found],
            "position": self.position,
            "score_before_floor": self.unfloored,
        }


def _confidence_and_position(det1: Detection | None, det2: Detection | None, position: float | None) -> float:
    """Both spatial scripts' image score, in their order: both found, ``0.25 * conf1 + 0.25 * conf2`` and then
    ``+= position / 2``; one found, ``0.25 * conf``; none, 0. Confidences are rounded to float32 first (the
    scripts read a float32 tensor with ``.item()``)."""
    if det1 is not None and det2 is not None:
        score = 0.25 * as_float32(det1.score) + 0.25 * as_float32(det2.score)
        return score + position / 2 if position is not None else score
    found = det1 if det1 is not None else det2
    return 0.25 * as_float32(found.score) if found is not None else 0.0


def spatial_2d_score(
    relation: str | None, obj1: str | None, obj2: str | None, detections: Sequence[Detection], floor: float = 0.5
) -> SpatialResult:
    """2D_spatial_eval.py's per-image score.

    Both objects found: ``0.25 * conf1 + 0.25 * conf2 + 0.5 * position``; only one: ``0.25 * its conf``;
    neither: 0. Then anything below ``floor`` (0.5) is set to 0, so a lone object never scores, and two found
    objects in the wrong place score 0 unless both confidences are exactly 1 (then exactly 0.5 survives).
    Each object is the first detection with exactly its label (see :func:`first_with_label`): ``a dog next to
    a dog`` compares one box with itself.
    """
    det1, det2 = first_with_label(detections, obj1), first_with_label(detections, obj2)
    position = None
    if det1 is not None and det2 is not None:
        position = position_score_2d(relation, det1.box, det2.box)
    score = _confidence_and_position(det1, det2, position)
    return SpatialResult(0.0 if score < floor else score, relation, (obj1, obj2), (det1, det2), position, score)


def region_mean_depth(depth_map: np.ndarray, box: PixelBox) -> float:
    """Mean of ``depth_map[int(x1):int(x2), int(y1):int(y2)]`` — rows indexed by x, columns by y, exactly as
    3D_spatial_eval.py does (a transposition the official numbers include). NaN for an empty region (the
    official mean of an empty tensor), which then fails every depth comparison."""
    region = depth_map[int(box[0]) : int(box[2]), int(box[1]) : int(box[3])]
    return float(region.mean()) if region.size else math.nan


def position_score_3d(
    relation: str | None, box1: PixelBox, box2: PixelBox, depth_map: np.ndarray, iou_threshold: float = 0.5
) -> float:
    """3D_spatial_eval.py's relation score. ``depth_map`` is the normalised inverse depth (1 = nearest) in the
    detection frame. ``in front of``: IoU > 0.5 and mean depth of box1 > box2 -> 1; 0 < IoU < 0.5 and the same
    depth order -> IoU / 0.5; otherwise (no overlap, IoU exactly 0.5, wrong order) 0. ``behind`` and
    ``hidden`` the same with the depth order reversed. Corners are rounded to float32 first, as in 2D."""
    if relation not in SPATIAL_3D_RELATIONS:
        return 0.0
    box1, box2 = _box32(box1), _box32(box2)
    depth_diff = region_mean_depth(depth_map, box1) - region_mean_depth(depth_map, box2)
    in_order = depth_diff > 0 if relation == "in front of" else depth_diff < 0
    iou = box_iou(box1, box2)
    if iou > iou_threshold:
        return 1.0 if in_order else 0.0
    if 0 < iou < iou_threshold:
        return iou / iou_threshold if in_order else 0.0
    return 0.0


def _find_3d_indices(labels: Sequence[str], obj1: str | None, obj2: str | None) -> tuple[int | None, int | None]:
    """The official 3D matching: ``obj in " ".join(labels)`` decides presence, then one loop over the labels
    sets obj1's index on *every* label containing it and stops as soon as both are set — so obj1 gets the last
    match up to obj2's first match (labels ``[cat, cat, dog]`` give cat -> 1). When only one is present, its
    first match. A substring that spans two labels (possible in the joined string) matches no label; the
    official script then fails, here that object counts as not found."""
    joined = " ".join(labels)
    present1 = obj1 is not None and obj1 in joined
    present2 = obj2 is not None and obj2 in joined
    pos1 = pos2 = None
    if present1 and present2:
        for i, label in enumerate(labels):
            if obj1 in label:
                pos1 = i
            if obj2 in label:
                pos2 = i
            if pos1 is not None and pos2 is not None:
                break
        return pos1, pos2
    if present1:
        pos1 = next((i for i, label in enumerate(labels) if obj1 in label), None)
    elif present2:
        pos2 = next((i for i, label in enumerate(labels) if obj2 in label), None)
    return pos1, pos2


def spatial_3d_score(
    relation: str | None, obj1: str | None, obj2: str | None, detections: Sequence[Detection], depth_map: np.ndarray
) -> SpatialResult:
    """3D_spatial_eval.py's per-image score: ``0.25 * conf1 + 0.25 * conf2 + 0.5 * position`` with both objects
    found, ``0.25 * conf`` with one, else 0 — and, unlike 2D, no 0.5 floor."""
    pos1, pos2 = _find_3d_indices([d.label for d in detections], obj1, obj2)
    det1 = None if pos1 is None else detections[pos1]
    det2 = None if pos2 is None else detections[pos2]
    position = None
    if det1 is not None and det2 is not None:
        position = position_score_3d(relation, det1.box, det2.box, depth_map)
    score = _confidence_and_position(det1, det2, position)
    return SpatialResult(score, relation, (obj1, obj2), (det1, det2), position, score)


# ---------------------------------------------------------------------------------------------------------
# Numeracy

NUMBER_WORDS = ("a", "an", "one", "two", "three", "four", "five", "six", "seven", "eight")
# word2number's value of each number word; "a" and "an" have none (w2n raises and the script skips the count).
_NUMBER_VALUES = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
_SINGLE = ("a", "an", "one")
# numeracy_eval.py's renames from prompt words to UniDet labels ("telivision" is the script's spelling).
NUMERACY_RENAMES = {
    "boy": "person",
    "girl": "person",
    "man": "person",
    "woman": "person",
    "ship": "boat",
    "telivision": "tv",
    "goldfish": "fish",
    "painting": "picture",
}


@dataclass(frozen=True)
class ObjectForms:
    """new_objects.txt: singular and plural forms, line by line (``knife - knives``), lower-cased."""

    singular: tuple[str, ...]
    plural: tuple[str, ...]

    @classmethod
    def load(cls, path: Path | None = None) -> ObjectForms:
        if path is None:
            path = DATA / "t2i_compbench" / "new_objects.txt"
        singular, plural = [], []
        for number, line in enumerate(Path(path).read_text().splitlines(), 1):
            if not line.strip():
                continue
            if " - " not in line:
                raise ValueError(f"{path}:{number}: expected 'singular - plural', got {line!r}")
            one, many = line.split(" - ", 1)
            singular.append(one.strip().lower())
            plural.append(many.strip().lower())
        return cls(tuple(singular), tuple(plural))

    def singular_of(self, plural: str) -> str:
        return self.singular[self.plural.index(plural)]


@dataclass
class NumeracyTargets:
    """The objects a numeracy prompt counts and how many of each. ``counts`` can be shorter than ``names``
    (the official script skips the count when the number word is ``a``/``an`` before a plural); ``problems``
    names the prompt words where the official script would raise."""

    names: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def numeracy_targets(words: Sequence[str], forms: ObjectForms) -> NumeracyTargets:
    """numeracy_eval.py's reading of the prompt's tokens (case-sensitive, so a capitalised ``Two`` is not a
    number). After a number word: a two-word object (``teddy bear``) first, then a one-word one. A plural after
    ``two``..``eight`` counts its singular that many times; a singular after ``a``/``an``/``one`` counts 1; a
    two-word object in any other combination counts 1 under the words as written.

    Where the official script raises, this reads on: a singular-only noun after ``two``..``eight`` (its
    ``object_p.index`` fails) is skipped and named in ``problems``; a number word that ends the prompt (it
    reads the token after it) is skipped."""
    targets = NumeracyTargets()
    n = len(words)
    for i, word in enumerate(words):
        if word not in NUMBER_WORDS:
            continue
        pair = f"{words[i + 1]} {words[i + 2]}" if i < n - 2 else None
        if pair is not None and (pair in forms.singular or pair in forms.plural):
            if pair in forms.plural and word not in _SINGLE:
                targets.names.append(forms.singular_of(pair))
                if word in _NUMBER_VALUES:
                    targets.counts.append(_NUMBER_VALUES[word])
            else:
                targets.counts.append(1)
                targets.names.append(pair)
        elif i + 1 < n and (words[i + 1] in forms.singular or words[i + 1] in forms.plural):
            noun = words[i + 1]
            if noun in forms.singular and word in _SINGLE:
                targets.counts.append(1)
                targets.names.append(noun)
            elif noun not in forms.plural:
                targets.problems.append(f"{word} {noun}: singular after a number above one (official script raises)")
            else:
                targets.names.append(forms.singular_of(noun))
                if word in _NUMBER_VALUES:
                    targets.counts.append(_NUMBER_VALUES[word])
    return targets


def _merge_overlap(box1: PixelBox, box2: PixelBox) -> bool:
    """numeracy_eval.py's duplicate test, with its +1 pixel areas: IoU > 0.9 or either box covered > 0.9.
    Corners rounded to float32 first; a ratio over a zero area (where the script divides by zero) is no
    overlap."""
    box1, box2 = _box32(box1), _box32(box2)
    inter = max(0.0, min(box1[2], box2[2]) - max(box1[0], box2[0]) + 1) * max(
        0.0, min(box1[3], box2[3]) - max(box1[1], box2[1]) + 1
    )
    area1 = (box1[2] - box1[0] + 1) * (box1[3] - box1[1] + 1)
    area2 = (box2[2] - box2[0] + 1) * (box2[3] - box2[1] + 1)
    union = area1 + area2 - inter
    return bool(
        (union != 0 and inter / union > 0.9)
        or (area1 != 0 and inter / area1 > 0.9)
        or (area2 != 0 and inter / area2 > 0.9)
    )


def merge_duplicate_detections(detections: Sequence[Detection]) -> list[Detection]:
    """Drop each detection that duplicates an already kept one with the same label (in detector order)."""
    kept: list[Detection] = []
    for detection in detections:
        if not any(k.label == detection.label and _merge_overlap(detection.box, k.box) for k in kept):
            kept.append(detection)
    return kept


@dataclass
class NumeracyResult:
    score: float
    objects: list[dict[str, Any]]
    kept_labels: list[str]

    def details(self) -> dict[str, Any]:
        return {"objects": self.objects, "detected_after_merge": self.kept_labels}


def numeracy_score(targets: NumeracyTargets, detections: Sequence[Detection]) -> NumeracyResult | None:
    """numeracy_eval.py's per-image score: each of the n counted objects is worth 1/n, half of it when its
    label is among the merged detections, the other half when the number of such detections equals the
    count. Labels containing the object name as a substring are renamed to it first (the script edits its
    label list in place). None when the prompt names no countable object (the official script divides by
    zero there). ``counts`` is indexed like ``names``, as the script indexes its two lists, so a count skipped
    for ``a``/``an`` shifts the later ones; an object found whose index is past the last count (where the
    script's ``num_obj[i]`` fails) gets the presence half only."""
    if not targets.names:
        return None
    labels = [d.label for d in merge_duplicate_detections(detections)]
    weight = 1.0 / len(targets.names)
    score = 0.0
    objects = []
    for i, name in enumerate(targets.names):
        label = NUMERACY_RENAMES.get(name, name)
        if label not in labels:
            labels = [label if label in existing else existing for existing in labels]
        expected = targets.counts[i] if i < len(targets.counts) else None
        found = labels.count(label)
        if label in labels:
            score += 0.5 * weight
            if expected is not None and found == expected:
                score += 0.5 * weight
        objects.append({"name": name, "label": label, "expected": expected, "detected": found})
    return NumeracyResult(score, objects, labels)


# ---------------------------------------------------------------------------------------------------------
# 3-in-1 and BLIP


def prompt_key(line: str) -> str:
    """3_in_1.py's key for a prompt: the text before the first ``.``, lower-cased (line ends dropped)."""
    return line.rstrip("\r\n").split(".")[0].lower()


@dataclass(frozen=True)
class ComplexLists:
    """complex_val_spatial.txt and complex_val_action.txt as 3_in_1.py reads them."""

    spatial: frozenset[str]
    action: frozenset[str]

    @classmethod
    def load(cls, data_dir: Path | None = None) -> ComplexLists:
        if data_dir is None:
            data_dir = DATA / "t2i_compbench"

        def read(name: str) -> frozenset[str]:
            return frozenset(prompt_key(line) for line in (Path(data_dir) / name).read_text().splitlines())

        return cls(read("complex_val_spatial.txt"), read("complex_val_action.txt"))


def three_in_one_parts(prompt: str, lists: ComplexLists) -> tuple[str, ...]:
    """Which sub-scores 3_in_1.py averages for a prompt: spatial-list prompts (spatial, attribute), action-list
    prompts (action, attribute), all others (attribute, spatial, action)."""
    key = prompt_key(prompt)
    if key in lists.spatial:
        return ("spatial", "attribute")
    if key in lists.action:
        return ("action", "attribute")
    return ("attribute", "spatial", "action")


def three_in_one_score(prompt: str, attribute: float, spatial: float, action: float, lists: ComplexLists) -> float:
    """The complex category's per-image score (the mean of the parts :func:`three_in_one_parts` names)."""
    parts = three_in_one_parts(prompt, lists)
    if len(parts) == 2:
        return ((spatial if parts[0] == "spatial" else action) + attribute) * 0.5
    return (attribute + spatial + action) / 3


def blip_answer(probability: float) -> str:
    """How BLIP_vqa.py writes a probability: the float32 value (its tensors are float32) with 4 decimals, as a
    string. A float64 just below a 4-decimal tie can round up to it in float32 and so be written one unit up."""
    return f"{as_float32(probability):.4f}"


def blip_image_score(phrase_probabilities: Sequence[float]) -> float:
    """BLIP_vqa.py's per-image score: each phrase's P(yes) as written (4 decimals) multiplied in float32 (its
    reward tensor), then written with 4 decimals again. No phrase at all gives 1.0 (an empty question counts
    1)."""
    product = np.float32(1.0)
    for probability in phrase_probabilities:
        product = np.float32(product * np.float32(float(blip_answer(probability))))
    return float(blip_answer(float(product)))


def summary_text(metric: str, answers: Sequence[float | str]) -> str:
    """The summary file each official script writes beside its ``vqa_result.json``, from the answers in file
    order (``metric`` as in the scorer's result files: ``blip``, ``spatial_2d``, ``clip``, ``three_in_one``,
    ``numeracy``, ``spatial_3d``).

    BLIP (``blip_vqa_score.txt``), 2D (``avg_score.txt``), CLIP (``score_avg.txt``), numeracy (``score.txt``)
    and 3-in-1 (``vqa_score.txt``) add ``float(answer)`` left to right from 0 and divide by the count
    (3-in-1 with Python's ``sum``, a plain left-to-right sum on the script's Python 3.9; from Python 3.12
    ``sum`` compensates, so it is spelled out here); 3D (``avg_result.txt``) takes ``np.mean`` of the
    answers, whose float64 pairwise summation can differ from the left-to-right one in the last bits. No
    answers at all: the scripts divide by zero; here the mean is ``nan``.
    """
    values = [float(a) for a in answers]
    if metric == "spatial_3d":
        mean = float(np.mean(np.asarray(values, dtype=np.float64))) if values else math.nan
        return f"avg score is {mean}"
    total = 0.0
    for value in values:
        total += value
    mean = total / len(values) if values else math.nan
    if metric == "blip":
        return f"BLIP-VQA score:{mean}"
    if metric == "numeracy":
        return f"total:{total} num:{len(values)} avg:{mean}"
    if metric in ("spatial_2d", "clip", "three_in_one"):
        return f"score avg:{mean}"
    raise ValueError(f"no official summary for {metric!r}")


# ---------------------------------------------------------------------------------------------------------
# Reading a plan with the same rules


def _name_words(name: str) -> set[str]:
    return {word for word in "".join(c.lower() if c.isalnum() else " " for c in name).split()}


def planned_detections(
    objects: Sequence[PlannedObject], frame: tuple[int, int], labels: Mapping[str, Sequence[str]] = {}
) -> list[Detection]:  # noqa: B006 (read only)
    """Planned objects as detections with confidence 1 in the detection frame, in plan order. An object whose
    name contains all the words of one of a label's aliases gets that label (``labels``: label -> aliases, e.g.
    ``{"person": ["girl", "person"], "teddy bear": ["teddy bear", "teddy bears"]}``); others keep their name.
    Objects without a box are left out."""
    out = []
    for obj in objects:
        if obj.box is None:
            continue
        words = _name_words(obj.name)
        label = next(
            (
                lab
                for lab, aliases in labels.items()
                if any(_name_words(alias) <= words for alias in aliases if alias.strip())
            ),
            obj.name,
        )
        box = obj.box.ordered().to_pixels(*frame)
        out.append(Detection(label, 1.0, box))
    return out


def plan_attribute_score(
    phrases: Sequence[str],
    object_names: Sequence[str],
    ignore: frozenset[str] = frozenset(NUMBER_WORDS) | {"the", "this", "that", "these", "those", "its", "their"},
) -> float:
    """1 when every phrase's words (less articles and number words) all appear in one planned object's name,
    else 0 — the plan-side reading of BLIP's product over phrases. No phrase gives 1, as BLIP's product."""
    names = [_name_words(name) for name in object_names]
    for phrase in phrases:
        wanted = _name_words(phrase) - ignore
        if not any(wanted <= name for name in names):
            return 0.0
    return 1.0


# --- plans, read with the same rules ---------------------------------------------------------------------


def plan_spatial(
    prompt: str, objects: Sequence[PlannedObject], frame: tuple[int, int], *, complex_prompt: bool = False
) -> tuple[float, SpatialResult]:
    """The 2D rule on a written plan: (score, the rule's result). The score is the rule's position term
    alone (1 right, 0 wrong or an object not planned): a plan's objects have confidence 1, so the rule's total
    for a wrong layout is exactly 0.5 (0.25 + 0.25 + 0), the pass mark, and would count as a right plan."""
    from ..phrases import complex_spatial_nouns, first_last_nouns, to_detector_label

    nouns = complex_spatial_nouns(prompt) if complex_prompt else first_last_nouns(prompt)
    labels: dict[str, list[str]] = {}
    for noun in nouns:
        if noun is not None:
            labels.setdefault(str(to_detector_label(noun)), []).extend([noun, str(to_detector_label(noun))])
    result = spatial_2d_score(
        find_relation(prompt, SPATIAL_2D_RELATIONS),
        to_detector_label(nouns[0]),
        to_detector_label(nouns[1]),
        planned_detections(objects, frame, labels),
    )
    return (0.0 if result.position is None else float(result.position)), result


def plan_numeracy(
    targets: NumeracyTargets, objects: Sequence[PlannedObject], frame: tuple[int, int], forms: ObjectForms
) -> NumeracyResult | None:
    """The numeracy rule on a written plan: planned objects named by a target's singular, plural or renamed
    form count as detections of it (confidence 1)."""
    aliases: dict[str, list[str]] = {}
    for name in targets.names:
        label = NUMERACY_RENAMES.get(name, name)
        plurals = [p for s, p in zip(forms.singular, forms.plural) if s == name]
        aliases.setdefault(label, []).extend([name, label, *plurals])
    return numeracy_score(targets, planned_detections(objects, frame, aliases))
