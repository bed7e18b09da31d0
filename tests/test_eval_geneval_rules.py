"""GenEval's rules on hand-made detections; every expected result is worked out by hand in the comments."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gotr1.eval import DATA
from gotr1.eval.rules.geneval import (
    COLORS,
    GENEVAL_CLASSES,
    RELATIONS,
    TAGS,
    Detection,
    GenEvalOptions,
    MetadataError,
    box_iou,
    colour_words,
    detections_json,
    evaluate,
    geneval_class,
    load_metadata,
    relative_position,
    select_detections,
    summarize,
    validate_metadata,
)
from gotr1.rewards.detector import COCO_LABELS


def det(label: str, score: float, box: tuple[float, float, float, float], colour: str | None = None) -> Detection:
    return Detection(label, score, box, None, colour)


def known_colours(dets, name):
    """A stand-in colour classifier: each detection carries its colour."""
    return [d.colour for d in dets]


# ---------------------------------------------------------------------------------------------
# Classes and metadata


def test_classes_are_object_names_txt_in_order():
    names = (DATA / "geneval" / "object_names.txt").read_text().splitlines()
    assert tuple(n.strip() for n in names if n.strip()) == GENEVAL_CLASSES
    assert len(GENEVAL_CLASSES) == 80
    # GenEval's renames of mmdetection's COCO names, at COCO's indices 64..66
    assert GENEVAL_CLASSES[64:67] == ("computer mouse", "tv remote", "computer keyboard")


def test_geneval_class_maps_names_to_the_class_at_the_same_coco_index():
    assert all(geneval_class(name) == name for name in GENEVAL_CLASSES)
    # The project's COCO label list (Darknet spellings) has the same order, so index i <-> index i.
    assert [geneval_class(label) for label in COCO_LABELS] == list(GENEVAL_CLASSES)
    assert geneval_class("mouse") == "computer mouse"
    assert geneval_class("two red apples") == "apple"
    assert geneval_class("a unicorn") is None


def test_colour_words_of_a_planned_name():
    assert colour_words("a red-colored car", "car") == "red"
    assert colour_words("a car", "car") is None
    # "orange" is both: its last mention is the fruit
    assert colour_words("an orange", "orange") is None
    assert colour_words("a yellow orange", "orange") == "yellow"
    assert colour_words("an orange orange", "orange") == "orange"
    assert colour_words("an orange cat", "cat") == "orange"


def test_all_553_metadata_lines_load_with_the_official_tag_counts():
    entries = load_metadata()
    assert len(entries) == 553
    counts = {tag: sum(e["tag"] == tag for e in entries) for tag in TAGS}
    assert counts == {
        "single_object": 80,
        "two_object": 99,
        "counting": 80,
        "colors": 94,
        "position": 100,
        "color_attr": 100,
    }
    # every counting line has its "fewer than N+1" exclude clause
    for e in entries:
        if e["tag"] == "counting":
            assert e["exclude"] == [{"class": e["include"][0]["class"], "count": e["include"][0]["count"] + 1}]


def test_bad_metadata_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "meta.jsonl"
    path.write_text(
        '{"tag": "colors", "prompt": "p", "include": [{"class": "car", "count": 1}]}\n'
        '{"tag": "colors", "prompt": "p", "include": [{"class": "car", "count": 1, "color": "teal"}]}\n'
    )
    with pytest.raises(MetadataError, match=r"meta\.jsonl:2: include\[0\]: color 'teal'"):
        load_metadata(path)
    with pytest.raises(MetadataError, match="position"):
        validate_metadata(
            {"tag": "position", "prompt": "p", "include": [{"class": "dog", "count": 1, "position": ["left of", 0]}]}
        )


# ---------------------------------------------------------------------------------------------
# Which detections count


def test_confidence_threshold_is_strict_and_0_9_for_counting():
    dets = [
        det("clock", 0.95, (0, 0, 10, 10)),
        det("clock", 0.9, (20, 0, 30, 10)),
        det("clock", 0.5, (40, 0, 50, 10)),
        det("clock", 0.3, (60, 0, 70, 10)),
    ]
    # counting: > 0.9 keeps only 0.95 (0.9 itself is not above it)
    assert [d.score for d in select_detections(dets, "counting")["clock"]] == [0.95]
    # any other tag: > 0.3 keeps 0.95, 0.9, 0.5 (0.3 itself is not above it)
    assert [d.score for d in select_detections(dets, "two_object")["clock"]] == [0.95, 0.9, 0.5]


def test_at_most_16_per_class_most_confident_first_and_classes_in_geneval_order():
    dets = [det("cup", 0.31 + i * 0.01, (i, 0, i + 5, 5)) for i in range(20)] + [det("person", 0.8, (0, 0, 1, 1))]
    selected = select_detections(dets, "single_object")
    # 20 cups 0.31..0.50; the 16 best are 0.50 down to 0.35
    assert [round(d.score, 2) for d in selected["cup"]] == [round(0.50 - i * 0.01, 2) for i in range(16)]
    assert list(selected) == ["person", "cup"]  # person is class 0, cup class 41
    # ties: the later detection first (the official reversed argsort)
    a, b = det("cup", 0.7, (0, 0, 1, 1)), det("cup", 0.7, (2, 0, 3, 1))
    assert select_detections([a, b], "colors")["cup"] == [b, a]


def test_overlap_suppression_is_off_by_default_and_uses_inclusive_iou():
    a, b = det("cat", 0.9, (0, 0, 9, 9)), det("cat", 0.8, (0, 0, 9, 8))
    # areas with the +1 convention: 10x10 = 100 and 10x9 = 90, intersection 90 -> IoU 0.9
    assert box_iou(a.box, b.box) == pytest.approx(0.9)
    assert len(select_detections([a, b], "single_object")["cat"]) == 2
    assert select_detections([a, b], "single_object", GenEvalOptions(max_overlap=0.5))["cat"] == [a]


def test_unknown_label_is_an_error():
    with pytest.raises(ValueError, match="not a GenEval class"):
        select_detections([det("unicorn", 0.9, (0, 0, 1, 1))], "single_object")


# ---------------------------------------------------------------------------------------------
# Relative position


def test_offset_shrink_removes_a_relation_that_holds_without_it():
    # A: (0,40)-(100,60), centre (50,50), 100 x 20.   B: (30,65)-(130,85), centre (80,75), 100 x 20.
    # offset A - B = (-30, -25), |offset| = sqrt(1525) = 39.05.
    a, b = (0, 40, 100, 60), (30, 65, 130, 85)
    # Without the shrink: dx = -30/39.05 = -0.77 (< -0.5: left of), dy = -25/39.05 = -0.64 (above).
    assert relative_position(a, b, position_threshold=0.0) == ("left of", "above")
    # With it: x shrinks by 0.1 x (100 + 100) = 20 -> -10, dx = -0.26 (no relation);
    #          y shrinks by 0.1 x (20 + 20) = 4 -> -21, dy = -0.54 (above).
    assert relative_position(a, b) == ("above",)


def test_a_clear_relation_survives_the_shrink():
    # A (0,0)-(100,100), B (200,0)-(300,100): offset (-200, 0), shrunk by 20 -> -180, dx = -180/200 = -0.9
    assert relative_position((0, 0, 100, 100), (200, 0, 300, 100)) == ("left of",)
    assert relative_position((200, 0, 300, 100), (0, 0, 100, 100)) == ("right of",)
    # y grows downward: A's centre 150 below B's -> below
    assert relative_position((0, 200, 100, 300), (0, 0, 100, 100)) == ("below",)


def test_heavily_overlapping_boxes_are_in_no_relation():
    # offset (-10, -10); each axis shrinks by 0.1 x 200 = 20 -> 0 on both: no relation at all
    assert relative_position((0, 0, 100, 100), (10, 10, 110, 110)) == ()


def position_meta(relation: str, count: int = 1, target_count: int = 1) -> dict:
    return {
        "tag": "position",
        "prompt": "p",
        "include": [
            {"class": "dog", "count": target_count},
            {"class": "cat", "count": count, "position": [relation, 0]},
        ],
    }


def test_relation_must_hold_for_every_pair():
    dog = det("dog", 0.9, (400, 0, 500, 100))
    cat_left = det("cat", 0.9, (0, 0, 100, 100))  # dx = (-400 + 20)/400 = -0.95: left of the dog
    cat_right = det("cat", 0.8, (800, 0, 900, 100))  # right of the dog
    both = select_detections([dog, cat_left, cat_right], "position")
    # two cats asked for: the second is right of the dog, so the pair (cat_right, dog) fails
    verdict = evaluate(position_meta("left of", count=2), both)
    assert not verdict.correct
    assert verdict.reason == "expected cat left of target, found right of target"
    # one cat asked for: only the most confident (left) cat is checked
    assert evaluate(position_meta("left of", count=1), both).correct


def test_relation_is_checked_against_the_targets_top_count_only():
    # The target clause asks for one dog: the best dog is right of the cat; a weaker dog left of it is ignored.
    cat = det("cat", 0.9, (0, 0, 100, 100))
    dogs = [det("dog", 0.9, (400, 0, 500, 100)), det("dog", 0.5, (-600, 0, -500, 100))]
    detected = select_detections([cat, *dogs], "position")
    assert evaluate(position_meta("left of"), detected).correct
    # asking for two dogs makes (cat, weak dog) a pair, and the cat is right of that one
    verdict = evaluate(position_meta("left of", target_count=2), detected)
    assert verdict.reason == "expected cat left of target, found right of target"


def test_relation_with_a_failed_target_clause_and_with_no_relation():
    cat = det("cat", 0.9, (0, 0, 100, 100))
    verdict = evaluate(position_meta("left of"), select_detections([cat], "position"))
    # the dog clause fails first, so the cat clause has no target
    assert verdict.reason == "expected dog>=1, found 0\nno target for cat to be left of"
    dog = det("dog", 0.9, (10, 10, 110, 110))  # overlapping: no relation; the empty set prints as nothing
    verdict = evaluate(position_meta("left of"), select_detections([cat, dog], "position"))
    assert verdict.reason == "expected cat left of target, found  target"


# ---------------------------------------------------------------------------------------------
# Counting, include AND, exclude OR


COUNT_TWO_CLOCKS = {
    "tag": "counting",
    "prompt": "a photo of two clocks",
    "include": [{"class": "clock", "count": 2}],
    "exclude": [{"class": "clock", "count": 3}],
}


def clocks(*scores: float) -> list[Detection]:
    return [det("clock", s, (i * 100, 0, i * 100 + 50, 50)) for i, s in enumerate(scores)]


def test_counting_at_least_n_and_fewer_than_n_plus_1():
    # two sure clocks and an unsure one: 0.5 is under the counting threshold -> exactly 2
    assert evaluate(COUNT_TWO_CLOCKS, select_detections(clocks(0.99, 0.95, 0.5), "counting")).correct
    # one sure clock: the include clause reports how many of the 2 it found
    verdict = evaluate(COUNT_TWO_CLOCKS, select_detections(clocks(0.99, 0.5), "counting"))
    assert (verdict.correct, verdict.reason) == (False, "expected clock>=2, found 1")
    # three sure clocks: at least 2 holds, fewer than 3 does not
    verdict = evaluate(COUNT_TWO_CLOCKS, select_detections(clocks(0.99, 0.95, 0.93), "counting"))
    assert (verdict.correct, verdict.reason) == (False, "expected clock<3, found 3")


def test_the_counting_threshold_decides_the_count():
    # same three clocks read with the 0.3 threshold of other tags: 3 count, and the exclude clause fails
    verdict = evaluate(COUNT_TWO_CLOCKS, select_detections(clocks(0.99, 0.95, 0.5), "two_object"))
    assert verdict.reason == "expected clock<3, found 3"


def test_include_clauses_are_anded_and_all_failures_reported():
    meta = {
        "tag": "two_object",
        "prompt": "a photo of a bus and a dog",
        "include": [{"class": "bus", "count": 1}, {"class": "dog", "count": 1}],
    }
    assert evaluate(
        meta, select_detections([det("bus", 0.9, (0, 0, 5, 5)), det("dog", 0.9, (9, 9, 20, 20))], "two_object")
    ).correct
    verdict = evaluate(meta, select_detections([det("bus", 0.9, (0, 0, 5, 5))], "two_object"))
    assert (verdict.correct, verdict.reason) == (False, "expected dog>=1, found 0")
    verdict = evaluate(meta, {})
    assert verdict.reason == "expected bus>=1, found 0\nexpected dog>=1, found 0"


def test_exclude_clauses_are_ored():
    meta = {
        "tag": "two_object",
        "prompt": "p",
        "include": [],
        "exclude": [{"class": "cat", "count": 1}, {"class": "dog", "count": 2}],
    }
    one_dog = select_detections([det("dog", 0.9, (0, 0, 5, 5))], "two_object")
    assert evaluate(meta, one_dog).correct  # no cat, fewer than 2 dogs
    # one violated clause is enough
    verdict = evaluate(meta, select_detections([det("cat", 0.9, (0, 0, 5, 5))], "two_object"))
    assert (verdict.correct, verdict.reason) == (False, "expected cat<1, found 1")


# ---------------------------------------------------------------------------------------------
# Colour


RED_CAR = {"tag": "colors", "prompt": "a photo of a red car", "include": [{"class": "car", "count": 1, "color": "red"}]}


def test_colour_is_read_on_the_top_count_objects_only():
    asked: list[list[Detection]] = []

    def classifier(dets, name):
        asked.append(list(dets))
        assert name == "car"
        return known_colours(dets, name)

    blue_sure, red_unsure = det("car", 0.9, (0, 0, 5, 5), "blue"), det("car", 0.8, (9, 0, 15, 5), "red")
    verdict = evaluate(RED_CAR, select_detections([red_unsure, blue_sure], "colors"), classifier)
    # count 1: only the most confident car (blue) is classified, so the red one does not rescue it
    assert asked == [[blue_sure]]
    assert (verdict.correct, verdict.reason) == (False, "expected red car>=1, found 0 red; and 1 blue")
    assert verdict.colours == {"car": ["blue"]}
    assert evaluate(RED_CAR, select_detections([red_unsure], "colors"), classifier).correct


def test_colour_tally_lists_colours_in_geneval_order():
    meta = {"tag": "colors", "prompt": "p", "include": [{"class": "car", "count": 3, "color": "red"}]}
    cars = [det("car", 0.9 - i / 10, (i * 10, 0, i * 10 + 5, 5), c) for i, c in enumerate(["white", "red", "blue"])]
    verdict = evaluate(meta, select_detections(cars, "colors"), known_colours)
    # counts listed in COLORS order (red, ..., blue, ..., white), only colours that occur
    assert verdict.reason == "expected red car>=3, found 1 red; and 1 red, 1 blue, 1 white"


def test_colour_failure_leaves_the_group_without_a_target_and_skips_the_position_check():
    meta = {
        "tag": "color_attr",
        "prompt": "p",
        "include": [
            {"class": "dog", "count": 1, "color": "red"},
            {"class": "cat", "count": 1, "color": "red", "position": ["left of", 0]},
        ],
    }
    dog, cat = det("dog", 0.9, (0, 0, 5, 5), "blue"), det("cat", 0.9, (100, 0, 105, 5), "green")
    verdict = evaluate(meta, select_detections([dog, cat], "color_attr"), known_colours)
    assert verdict.reason.splitlines() == [
        "expected red dog>=1, found 0 red; and 1 blue",
        "expected red cat>=1, found 0 red; and 1 green",
    ]


def test_a_colour_clause_without_a_classifier_is_an_error():
    with pytest.raises(ValueError, match="colour classifier"):
        evaluate(RED_CAR, select_detections([det("car", 0.9, (0, 0, 1, 1))], "colors"))


def test_details_rows_are_float32_boxes_with_score():
    d = Detection("cup", 0.1, (1.0, 2.0, 3.5, 4.0), np.zeros((2, 2), bool))
    assert detections_json({"cup": [d]}) == {"cup": [[1.0, 2.0, 3.5, 4.0, float(np.float32(0.1))]]}


# ---------------------------------------------------------------------------------------------
# Aggregation


def test_overall_is_the_mean_of_tag_means_not_of_images():
    meta = [json.dumps({"prompt": str(i)}) for i in range(3)]
    rows = [
        {"tag": "colors", "correct": True, "metadata": meta[0]},  # colors: 1/1 = 1.0
        {"tag": "counting", "correct": True, "metadata": meta[1]},  # counting: 1/3
        {"tag": "counting", "correct": False, "metadata": meta[1]},
        {"tag": "counting", "correct": False, "metadata": meta[2]},
    ]
    summary = summarize(rows)
    assert summary.tag_scores == {"colors": 1.0, "counting": pytest.approx(1 / 3)}
    assert summary.overall == pytest.approx((1 + 1 / 3) / 2)  # 0.667, while images are 2/4 = 0.5 correct
    assert summary.image_accuracy == 0.5
    # prompts: meta0 (correct), meta1 (one of two correct), meta2 (not) -> 2/3
    assert (summary.prompts, summary.prompt_accuracy) == (3, pytest.approx(2 / 3))
    assert summary.tag_counts == {"colors": (1, 1), "counting": (1, 3)}


def test_constants_match_the_official_lists():
    assert COLORS == ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
    assert RELATIONS == ("left of", "right of", "above", "below")
    assert GenEvalOptions() == GenEvalOptions(
        threshold=0.3, counting_threshold=0.9, max_objects=16, max_overlap=1.0, position_threshold=0.1
    )


# ---------------------------------------------------------------------------------------------
# Arithmetic to the last bit: each rule against a restatement of the official arithmetic in numpy float32
# (evaluate_images.py at af4902f; mmdetection's per-class results are float32 arrays of [x1, y1, x2, y2, score]).
# Each randomized test also checks that its cases include ones where plain float64 arithmetic answers
# differently, so it would catch a return to float64.

_F32 = np.float32


def _up32(value: float, steps: int = 1) -> float:
    """``value`` moved ``steps`` float32 ulps (down for negative steps), as a Python float."""
    out = _F32(value)
    for _ in range(abs(steps)):
        out = np.nextafter(out, _F32(np.inf if steps > 0 else -np.inf))
    return float(out)


def _official_kept(scores: list[float], threshold: float) -> list[bool]:
    # The official test: a float32 array against the Python float threshold.
    return (np.asarray(scores, dtype=np.float32) > threshold).tolist()


def _threshold_cases(rng: np.random.Generator, threshold: float) -> list[float]:
    at = float(_F32(threshold))
    cases = [at, threshold, _up32(threshold, 1), _up32(threshold, -1), _up32(threshold, 2), _up32(threshold, -2)]
    cases += [float(np.nextafter(threshold, 1.0)), float(np.nextafter(threshold, 0.0))]
    # float64 values between float32 neighbours: they round to one of them
    cases += [float(v) for v in rng.uniform(_up32(threshold, -2), _up32(threshold, 2), 12)]
    cases += [float(_F32(v)) for v in rng.uniform(threshold - 1e-6, threshold + 1e-6, 6)]
    return cases


def test_confidence_threshold_is_a_float32_comparison_like_the_official_array():
    rng = np.random.default_rng(20240613)
    compared = disagree_with_float64 = 0
    thresholds = [(0.3, "colors"), (0.9, "counting"), *((float(t), "two_object") for t in rng.uniform(0.05, 0.95, 8))]
    for threshold, tag in thresholds:
        options = GenEvalOptions(threshold=threshold) if tag != "counting" else GenEvalOptions()
        for score in _threshold_cases(rng, threshold):
            kept = bool(select_detections([det("cup", score, (0, 0, 5, 5))], tag, options))
            assert kept == _official_kept([score], threshold)[0], (threshold, score)
            compared += 1
            disagree_with_float64 += kept != (score > threshold)
    assert compared == 10 * 26
    assert disagree_with_float64 > 0
    # the case of the issue: exactly float32(0.3) does not count, as officially (float64 would count it)
    assert float(_F32(0.3)) > 0.3
    assert select_detections([det("cup", float(_F32(0.3)), (0, 0, 5, 5))], "colors") == {}
    assert select_detections([det("cup", _up32(0.3), (0, 0, 5, 5))], "colors") != {}


def test_ranking_sorts_float32_scores_later_first_on_float32_ties():
    rng = np.random.default_rng(7)
    changed = 0
    for _ in range(200):
        n = int(rng.integers(2, 17))  # at most 16: the pinned numpy's argsort is an insertion sort (stable) there
        base = [float(_F32(v)) for v in rng.uniform(0.31, 1.0, 3)]
        # float64 scores that collapse onto three float32 values, plus some exact float32 ones
        scores = [
            b + float(rng.uniform(-0.4, 0.4)) * (_up32(b) - b) if rng.random() < 0.7 else b for b in rng.choice(base, n)
        ]
        dets = [det("cup", s, (i, 0, i + 5, 5)) for i, s in enumerate(scores)]
        order = np.argsort(np.asarray(scores, dtype=np.float32), kind="stable")[::-1]
        order = [i for i in order if _official_kept([scores[i]], 0.3)[0]][:16]
        assert select_detections(dets, "colors")["cup"] == [dets[i] for i in order]
        float64_order = sorted(range(n), key=lambda i: (scores[i], i), reverse=True)
        changed += float64_order != order
    assert changed > 0


def _official_relative_position(box_a, box_b, position_threshold: float = 0.1) -> tuple[str, ...]:
    """The official relative position restated with float32 numpy arrays (checked to give the same answers
    under numpy 1.23.5 and 2.4.6)."""
    corners = np.array([box_a[:4], box_b[:4]], dtype=np.float32).reshape(2, 2, 2)  # box, corner, axis
    centre = corners.mean(axis=1)
    size = np.abs(corners[:, 1] - corners[:, 0])
    offset = centre[0] - centre[1]
    shrunk = np.maximum(np.abs(offset) - position_threshold * (size[0] + size[1]), 0) * np.sign(offset)
    if np.all(np.abs(shrunk) < 1e-3):
        return ()
    dx, dy = shrunk / np.linalg.norm(offset)
    found = {"left of": dx < -0.5, "right of": dx > 0.5, "above": dy < -0.5, "below": dy > 0.5}
    return tuple(r for r in RELATIONS if found[r])


def _float64_relative_position(box_a, box_b, position_threshold: float = 0.1) -> tuple[str, ...]:
    """The same rule in float64 (the arithmetic before this fix), to show that the cases tell them apart."""
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = box_a[:4], box_b[:4]
    offset = np.array([(ax1 + ax2) / 2 - (bx1 + bx2) / 2, (ay1 + ay2) / 2 - (by1 + by2) / 2])
    size = np.array([abs(ax2 - ax1) + abs(bx2 - bx1), abs(ay2 - ay1) + abs(by2 - by1)])
    shrunk = np.maximum(np.abs(offset) - position_threshold * size, 0) * np.sign(offset)
    if np.all(np.abs(shrunk) < 1e-3):
        return ()
    dx, dy = shrunk / np.hypot(*offset)
    found = {"left of": dx < -0.5, "right of": dx > 0.5, "above": dy < -0.5, "below": dy > 0.5}
    return tuple(r for r in RELATIONS if found[r])


def _boundary_boxes(rng: np.random.Generator, position_threshold: float, axis: int):
    """Two float32 boxes whose shrunk offset on ``axis`` over the offset's length is 0.5, give or take a
    rounding: |o_axis| - t * size_axis = 0.5 * |offset|, solved for the other axis's offset."""
    size_a, size_b = rng.uniform(1, 200, 2), rng.uniform(1, 200, 2)
    total = size_a[axis] + size_b[axis]
    along = rng.uniform(2 * position_threshold * total + 1, 2 * position_threshold * total + 300)
    across = np.sqrt(max(((along - position_threshold * total) / 0.5) ** 2 - along**2, 0.0))
    offset = np.empty(2)
    offset[axis], offset[1 - axis] = along * rng.choice([-1, 1]), across * rng.choice([-1, 1])
    corner_a = rng.uniform(0, 300, 2)
    centre_b = corner_a + size_a / 2 - offset
    box_a = [*corner_a, *(corner_a + size_a)]
    box_b = [*(centre_b - size_b / 2), *(centre_b + size_b / 2)]
    box_a, box_b = [float(_F32(v)) for v in box_a], [float(_F32(v)) for v in box_b]
    nudge = int(rng.integers(-2, 3))
    if nudge:
        box_b[axis] = _up32(box_b[axis], nudge)
    return tuple(box_a), tuple(box_b)


def _no_relation_boundary_boxes(rng: np.random.Generator, position_threshold: float):
    """Boxes whose shrunk offsets sit at the 1e-3 "no relation" test on both axes."""
    size_a, size_b = rng.uniform(1, 100, 2), rng.uniform(1, 100, 2)
    offset = position_threshold * (size_a + size_b) + 1e-3 + rng.uniform(-2e-5, 2e-5, 2)
    corner_a = rng.uniform(0, 200, 2)
    centre_b = corner_a + size_a / 2 - offset
    box_a = [*corner_a, *(corner_a + size_a)]
    box_b = [*(centre_b - size_b / 2), *(centre_b + size_b / 2)]
    return tuple(float(_F32(v)) for v in box_a), tuple(float(_F32(v)) for v in box_b)


def test_relative_position_is_float32_arithmetic_at_the_boundaries():
    rng = np.random.default_rng(11)
    counts = {"0.5 boundary": 0, "1e-3 boundary": 0, "integer boxes": 0}
    disagree_with_float64 = 0
    for position_threshold in (0.1, 0.05, 0.2):
        for _ in range(600):
            a, b = _boundary_boxes(rng, position_threshold, axis=int(rng.integers(0, 2)))
            assert relative_position(a, b, position_threshold) == _official_relative_position(a, b, position_threshold)
            disagree_with_float64 += _float64_relative_position(a, b, position_threshold) != relative_position(
                a, b, position_threshold
            )
            counts["0.5 boundary"] += 1
        for _ in range(100):
            a, b = _no_relation_boundary_boxes(rng, position_threshold)
            assert relative_position(a, b, position_threshold) == _official_relative_position(a, b, position_threshold)
            counts["1e-3 boundary"] += 1
        for _ in range(200):  # mmdetection's boxes come from masks: whole pixels
            xs, ys = np.sort(rng.integers(0, 512, (2, 2)), axis=1), np.sort(rng.integers(0, 512, (2, 2)), axis=1)
            a, b = (xs[0, 0], ys[0, 0], xs[0, 1], ys[0, 1]), (xs[1, 0], ys[1, 0], xs[1, 1], ys[1, 1])
            assert relative_position(a, b, position_threshold) == _official_relative_position(a, b, position_threshold)
            counts["integer boxes"] += 1
    assert counts == {"0.5 boundary": 1800, "1e-3 boundary": 300, "integer boxes": 600}
    assert disagree_with_float64 > 100  # about a third of the 0.5-boundary cases


def _official_iou_pinned_numpy(box_a, box_b) -> float:
    """The official overlap IoU on float32 rows as numpy 1.23 (GenEval's pin) evaluates it: a float32 scalar
    minus a float32 scalar stays float32; adding the Python int 1 promotes to float64 (checked under 1.23.5)."""
    a, b = np.asarray(box_a[:4], dtype=np.float32), np.asarray(box_b[:4], dtype=np.float32)

    def area(x1, y1, x2, y2):
        return max(np.float64(x2 - x1) + 1, 0) * max(np.float64(y2 - y1) + 1, 0)

    inter = area(max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    union = area(*a) + area(*b) - inter
    return float(inter / union) if union else 0.0


def test_overlap_suppression_iou_in_the_pinned_numpys_dtypes():
    rng = np.random.default_rng(5)
    disagree_with_float64 = 0
    for _ in range(500):
        x = np.sort(rng.uniform(0, 100, 2))
        y = np.sort(rng.uniform(0, 100, 2))
        a = (x[0], y[0], x[1], y[1])
        b = tuple(v + rng.uniform(-3, 3) for v in a)
        expected = _official_iou_pinned_numpy(a, b)
        assert box_iou(a, b) == expected
        disagree_with_float64 += expected != _float64_iou(a, b)
        threshold = float(rng.uniform(0.5, 1.0))
        first, second = det("cat", 0.9, a), det("cat", 0.8, b)
        kept = select_detections([first, second], "colors", GenEvalOptions(max_overlap=threshold))["cat"]
        assert kept == ([first, second] if expected < threshold else [first])
    assert disagree_with_float64 > 100


def _float64_iou(a, b) -> float:
    def area(box):
        return max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0)

    inter = area([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    union = area(a) + area(b) - inter
    return inter / union if union else 0.0
