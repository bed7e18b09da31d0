"""T2I-CompBench's official rules on hand-made detections, depth maps and probabilities.

Every expected number is worked out by hand in the comment beside it, from the official scripts' formulas
(UniDet_eval/2D_spatial_eval.py, 3D_spatial_eval.py, numeracy_eval.py, 3_in_1_eval/3_in_1.py, BLIP_vqa.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gotr1.chain import Box, PlannedObject
from gotr1.eval import DATA, phrases
from gotr1.eval.rules import t2i_compbench as rules
from gotr1.eval.rules.t2i_compbench import Detection

# ---------------------------------------------------------------------------------------------------------
# frame and relation lookup


def test_detection_frame_follows_torchvision_resize_479_max_480():
    assert rules.detection_frame(512, 512) == (479, 479)
    assert rules.detection_frame(1024, 1024) == (479, 479)
    # 768x512: long side int(479 * 768 / 512) = 718 > 480 -> long 480, short int(480 * 479 / 718) = 320
    assert rules.detection_frame(768, 512) == (480, 320)
    assert rules.detection_frame(512, 768) == (320, 480)


def test_relation_is_first_listed_substring():
    assert rules.find_relation("a giraffe next to a lamp") == "next to"
    assert rules.find_relation("a girl on the top of a frog") == "on the top of"
    # "near" is listed before "on the left of": the prompt's order does not matter
    assert rules.find_relation("a cat on the left of a dog near a tree") == "near"
    # substring: "nearby" contains "near"
    assert rules.find_relation("a cat and a dog nearby") == "near"
    assert rules.find_relation("The red hat was on top of the brown coat rack.") == "on top of"
    assert rules.find_relation("a cat and a dog") is None
    assert rules.find_relation("a table hidden by a dog", rules.SPATIAL_3D_RELATIONS) == "hidden"


# ---------------------------------------------------------------------------------------------------------
# 2D position rule


A = (0.0, 0.0, 100.0, 100.0)  # centre (50, 50)


def test_left_right_top_bottom_without_overlap_score_one():
    right_of_a = (200.0, 0.0, 300.0, 100.0)  # centre (250, 50): dx = 200, dy = 0, IoU 0
    below_a = (0.0, 200.0, 100.0, 300.0)  # centre (50, 250): dy = 200
    assert rules.position_score_2d("on the left of", A, right_of_a) == 1.0
    assert rules.position_score_2d("on the right of", right_of_a, A) == 1.0  # dx = -200
    assert rules.position_score_2d("on the top of", A, below_a) == 1.0  # dy = +200 (y grows downward)
    assert rules.position_score_2d("on the bottom of", below_a, A) == 1.0  # dy = -200


def test_wrong_side_or_wrong_axis_scores_zero():
    right_of_a = (200.0, 0.0, 300.0, 100.0)
    assert rules.position_score_2d("on the left of", right_of_a, A) == 0.0  # dx = -200 < 0
    assert rules.position_score_2d("on the top of", (0.0, 200.0, 100.0, 300.0), A) == 0.0  # dy < 0
    # dx = 50 > 0 but |dy| = 300 > |dx|: the horizontal relation fails
    assert rules.position_score_2d("on the left of", A, (50.0, 300.0, 150.0, 400.0)) == 0.0


def test_overlap_above_iou_threshold_scores_threshold_over_iou():
    # box2 shifted right by 50: intersection 50*100 = 5000, union 10000 + 10000 - 5000 = 15000, IoU = 1/3
    shifted = (50.0, 0.0, 150.0, 100.0)
    assert rules.box_iou(A, shifted) == pytest.approx(1 / 3)
    # 0.1 / (1/3) = 0.3
    assert rules.position_score_2d("on the left of", A, shifted) == pytest.approx(0.3)


def test_near_rule_150_pixels():
    # centre (350, 150): dx = 300, dy = 100 < 150 -> 1
    assert rules.position_score_2d("near", A, (300.0, 100.0, 400.0, 200.0)) == 1.0
    # centre (450, 350): dx = 400, dy = 300, both >= 150 -> 150 / max(400, 300) = 0.375
    assert rules.position_score_2d("next to", A, (400.0, 300.0, 500.0, 400.0)) == pytest.approx(0.375)
    assert rules.position_score_2d("on side of", A, (400.0, 300.0, 500.0, 400.0)) == pytest.approx(0.375)


def test_on_top_of_quirk_and_no_relation_score_zero():
    below_a = (0.0, 200.0, 100.0, 300.0)
    assert rules.position_score_2d("on the top of", A, below_a) == 1.0
    assert rules.position_score_2d("on top of", A, below_a) == 0.0  # matches no branch in the official code
    assert rules.position_score_2d(None, A, below_a) == 0.0


# ---------------------------------------------------------------------------------------------------------
# 2D image score


def test_both_objects_found_combination():
    found = [Detection("cat", 0.9, A), Detection("dog", 0.8, (200.0, 0.0, 300.0, 100.0))]
    result = rules.spatial_2d_score("on the left of", "cat", "dog", found)
    # 0.25 * 0.9 + 0.25 * 0.8 + 0.5 * 1 = 0.225 + 0.2 + 0.5 = 0.925
    assert result.score == pytest.approx(0.925)
    assert result.position == 1.0


def test_half_floor_zeroes_low_scores():
    found = [Detection("cat", 0.6, A), Detection("dog", 0.6, (50.0, 0.0, 150.0, 100.0))]
    result = rules.spatial_2d_score("on the left of", "cat", "dog", found)
    # 0.15 + 0.15 + 0.5 * 0.3 = 0.45 < 0.5 -> 0
    assert result.unfloored == pytest.approx(0.45)
    assert result.score == 0.0


def test_single_object_found_always_floors_to_zero():
    result = rules.spatial_2d_score("on the left of", "cat", "dog", [Detection("cat", 0.99, A)])
    # 0.25 * 0.99 = 0.2475 < 0.5 -> 0
    assert result.unfloored == pytest.approx(0.2475)
    assert result.score == 0.0
    assert result.found[1] is None and result.position is None
    assert rules.spatial_2d_score("near", "cat", "dog", []).score == 0.0


def test_on_top_of_with_full_confidence_keeps_exactly_half():
    found = [Detection("hat", 1.0, A), Detection("rack", 1.0, (0.0, 200.0, 100.0, 300.0))]
    # 0.25 + 0.25 + 0.5 * 0 = 0.5, not below 0.5: kept (the plan side hits this with confidence 1)
    assert rules.spatial_2d_score("on top of", "hat", "rack", found).score == 0.5


def test_first_detection_with_exact_label_is_used():
    found = [
        Detection("dogs", 0.99, (400.0, 0.0, 479.0, 100.0)),  # not exactly "dog"
        Detection("dog", 0.7, A),
        Detection("cat", 0.8, (200.0, 0.0, 300.0, 100.0)),
        Detection("dog", 0.95, (300.0, 0.0, 400.0, 100.0)),
    ]  # higher score but later: ignored
    result = rules.spatial_2d_score("on the left of", "dog", "cat", found)
    assert result.found[0] == found[1]
    # 0.25 * 0.7 + 0.25 * 0.8 + 0.5 * 1 = 0.875
    assert result.score == pytest.approx(0.875)


def test_same_label_twice_compares_a_box_with_itself():
    found = [Detection("dog", 0.9, A), Detection("dog", 0.8, (300.0, 0.0, 400.0, 100.0))]
    # both objects are the first "dog": dx = dy = 0 -> near = 1; 0.225 + 0.225 + 0.5 = 0.95
    assert rules.spatial_2d_score("next to", "dog", "dog", found).score == pytest.approx(0.95)
    # left of itself: dx = 0 -> 0; 0.45 < 0.5 -> 0
    assert rules.spatial_2d_score("on the left of", "dog", "dog", found).score == 0.0


# ---------------------------------------------------------------------------------------------------------
# 3D


def test_depth_region_is_indexed_x_then_y():
    depth = np.zeros((100, 100), dtype=np.float32)
    depth[:50, :] = 1.0  # the top half of the image, rows 0..49
    # a box in the bottom-left corner: x 0..40, y 60..100. The official slice depth[x1:x2, y1:y2] reads rows
    # 0..40 (all 1.0) although the box covers rows 60..100 (all 0.0).
    assert rules.region_mean_depth(depth, (0.0, 60.0, 40.0, 100.0)) == 1.0
    assert math.isnan(rules.region_mean_depth(depth, (150.0, 0.0, 160.0, 10.0)))  # empty slice


def test_in_front_of_and_behind_with_large_overlap():
    depth = np.zeros((100, 100), dtype=np.float32)
    depth[0:40, 0:40] = 1.0
    box1, box2 = (0.0, 0.0, 40.0, 40.0), (0.0, 0.0, 40.0, 50.0)
    # IoU = 1600 / 2000 = 0.8 > 0.5; mean depth box1 = 1, box2 = 1600 / 2000 = 0.8: diff 0.2 > 0
    assert rules.position_score_3d("in front of", box1, box2, depth) == 1.0
    assert rules.position_score_3d("behind", box1, box2, depth) == 0.0
    assert rules.position_score_3d("hidden", box2, box1, depth) == 1.0  # diff -0.2 < 0


def test_partial_overlap_scores_iou_over_half():
    depth = np.zeros((100, 100), dtype=np.float32)
    depth[0:20, :] = 1.0
    box1, box2 = (0.0, 0.0, 40.0, 40.0), (20.0, 0.0, 60.0, 40.0)
    # IoU = 800 / 2400 = 1/3; depth box1 = rows 0..40 -> 0.5, box2 = rows 20..60 -> 0: in front, (1/3) / 0.5
    assert rules.position_score_3d("in front of", box1, box2, depth) == pytest.approx(2 / 3)
    assert rules.position_score_3d("behind", box1, box2, depth) == 0.0
    # no overlap at all: 0 whatever the depth
    assert rules.position_score_3d("in front of", box1, (60.0, 60.0, 90.0, 90.0), depth) == 0.0


def test_3d_score_has_no_floor_and_quirky_matching():
    depth = np.zeros((100, 100), dtype=np.float32)
    # one object found: 0.25 * 0.8 = 0.2, kept (no 0.5 floor in 3D)
    assert rules.spatial_3d_score("behind", "cat", "dog", [Detection("cat", 0.8, A)], depth).score == pytest.approx(0.2)
    # labels [cat, cat, dog]: the loop reassigns cat's index until dog is found -> cat = the 2nd detection
    found = [Detection("cat", 0.9, A), Detection("cat", 0.5, A), Detection("dog", 0.7, (200.0, 0, 300.0, 100.0))]
    result = rules.spatial_3d_score("in front of", "cat", "dog", found, depth)
    assert result.found == (found[1], found[2])
    # no overlap -> position 0; 0.25 * 0.5 + 0.25 * 0.7 = 0.3
    assert result.score == pytest.approx(0.3)
    # substring matching: a "hot dog" label counts as "dog"
    assert rules.spatial_3d_score("behind", "cat", "dog", [Detection("hot dog", 0.4, A)], depth).score == pytest.approx(
        0.1
    )


# ---------------------------------------------------------------------------------------------------------
# numeracy

FORMS = rules.ObjectForms(
    ("teddy bear", "dog", "cat", "sheep", "woman", "fish"), ("teddy bears", "dogs", "cats", "sheep", "women", "fish")
)


def test_numeracy_targets_from_number_words():
    targets = rules.numeracy_targets("three dogs and a cat".split(), FORMS)
    assert (targets.names, targets.counts) == (["dog", "cat"], [3, 1])
    targets = rules.numeracy_targets("two teddy bears and two sheep".split(), FORMS)
    assert (targets.names, targets.counts) == (["teddy bear", "sheep"], [2, 2])
    # "a" before a plural: the count is skipped (word2number fails on "a"), the name kept
    targets = rules.numeracy_targets("a dogs and two cats".split(), FORMS)
    assert (targets.names, targets.counts) == (["dog", "cat"], [2])
    # a singular after "two" has no plural entry: the official script raises; recorded here
    assert rules.numeracy_targets(["two", "dog"], FORMS).problems
    # case-sensitive: "Two" is not a number word -> nothing to count -> no score (official: division by zero)
    assert rules.numeracy_targets(["Two", "dogs"], FORMS).names == []
    assert rules.numeracy_score(rules.NumeracyTargets(), []) is None


def test_duplicate_boxes_merge_with_plus_one_convention():
    a = Detection("dog", 0.9, (0.0, 0.0, 100.0, 100.0))
    inner = Detection("dog", 0.8, (2.0, 2.0, 100.0, 100.0))  # intersection 99*99 = its whole (+1) area -> merged
    apart = Detection("dog", 0.7, (200.0, 0.0, 300.0, 100.0))
    other_label = Detection("cat", 0.6, (0.0, 0.0, 100.0, 100.0))  # same box, other label: kept
    assert rules.merge_duplicate_detections([a, inner, apart, other_label]) == [a, apart, other_label]


def test_numeracy_half_credit_for_presence_half_for_count():
    found = [
        Detection("dog", 0.9, (0.0, 0.0, 100.0, 100.0)),
        Detection("dog", 0.8, (2.0, 2.0, 100.0, 100.0)),
        Detection("dog", 0.7, (200.0, 0.0, 300.0, 100.0)),
        Detection("cat", 0.6, (0.0, 200.0, 90.0, 300.0)),
    ]
    result = rules.numeracy_score(rules.numeracy_targets("three dogs and a cat".split(), FORMS), found)
    # n = 2, weight 1/2. dogs after merging: 2 (want 3) -> 0.5 * 0.5 = 0.25; cat: present and 1 == 1 -> 0.5
    assert result.score == pytest.approx(0.75)
    assert [o["detected"] for o in result.objects] == [2, 1]


def test_numeracy_renames_and_substring_labels():
    targets = rules.numeracy_targets("two women and a cat".split(), FORMS)
    found = [
        Detection("person", 0.9, (0.0, 0.0, 50.0, 50.0)),
        Detection("person", 0.9, (100.0, 0.0, 150.0, 50.0)),
        Detection("wildcat", 0.9, (300.0, 0.0, 350.0, 50.0)),
    ]
    # woman -> person (2 == 2): 0.5; "cat" is not a label but "wildcat" contains it -> renamed, 1 == 1: 0.5
    assert rules.numeracy_score(targets, found).score == pytest.approx(1.0)


def test_numeracy_misaligned_counts_as_official():
    targets = rules.numeracy_targets("a dogs and two cats".split(), FORMS)  # names [dog, cat], counts [2]
    found = [
        Detection("dog", 0.9, (0.0, 0.0, 50.0, 50.0)),
        Detection("dog", 0.9, (100.0, 0.0, 150.0, 50.0)),
        Detection("cat", 0.9, (200.0, 0.0, 250.0, 50.0)),
        Detection("cat", 0.9, (300.0, 0.0, 350.0, 50.0)),
    ]
    # dog is checked against counts[0] = 2 (the cats' count) -> 0.25 + 0.25; cat has no count -> 0.25 only
    assert rules.numeracy_score(targets, found).score == pytest.approx(0.75)


def test_numeracy_val_prompts_all_parse():
    forms = rules.ObjectForms.load()
    lines = (DATA / "t2i_compbench" / "numeracy_val.txt").read_text().splitlines()
    for line in lines:
        targets = rules.numeracy_targets(phrases.words(line), forms)
        assert targets.names and len(targets.names) == len(targets.counts) and not targets.problems, line
    targets = rules.numeracy_targets(
        phrases.words("three couches, two keys, two women, four rabbits and one bowl"), forms
    )
    assert targets.names == ["couch", "key", "woman", "rabbit", "bowl"]
    assert targets.counts == [3, 2, 2, 4, 1]


# ---------------------------------------------------------------------------------------------------------
# 3-in-1 and BLIP


def test_three_in_one_subset_choice_from_the_val_lists():
    lists = rules.ComplexLists.load()
    spatial = "The red hat was on top of the brown coat rack."  # in complex_val_spatial.txt
    action = "The black phone was resting on the brown charger."  # in complex_val_action.txt
    other = next(
        line
        for line in (DATA / "t2i_compbench" / "complex_val.txt").read_text().splitlines()
        if rules.prompt_key(line) not in lists.spatial | lists.action
    )
    assert rules.three_in_one_parts(spatial, lists) == ("spatial", "attribute")
    assert rules.three_in_one_parts(action, lists) == ("action", "attribute")
    assert rules.three_in_one_parts(other, lists) == ("attribute", "spatial", "action")
    # (spatial 0.6 + attribute 0.4) / 2 = 0.5; (action 0.3 + attribute 0.5) / 2 = 0.4; (0.3 + 0.6 + 0.9) / 3 = 0.6
    assert rules.three_in_one_score(spatial, attribute=0.4, spatial=0.6, action=0.9, lists=lists) == pytest.approx(0.5)
    assert rules.three_in_one_score(action, attribute=0.5, spatial=0.9, action=0.3, lists=lists) == pytest.approx(0.4)
    assert rules.three_in_one_score(other, attribute=0.3, spatial=0.6, action=0.9, lists=lists) == pytest.approx(0.6)
    # the key: text before the first ".", lower-cased
    assert rules.prompt_key("The Red hat. Extra\r\n") == "the red hat"


def test_blip_product_rounds_each_phrase_first():
    # each 0.99996 is written "1.0000", so the product is 1.0 (unrounded it would be 0.99992 -> "0.9999")
    assert rules.blip_image_score([0.99996, 0.99996]) == 1.0
    # "0.6900" * "0.5000" = 0.345 -> "0.3450"
    assert rules.blip_image_score([0.69004, 0.5]) == 0.345
    assert rules.blip_image_score([]) == 1.0  # no phrase: every question empty, each counts 1
    assert rules.blip_answer(0.69) == "0.6900"


# ---------------------------------------------------------------------------------------------------------
# reading a plan


def test_planned_detections_scale_to_frame_and_match_words():
    objects = [
        PlannedObject("little girl", Box(0, 0, 500, 500)),
        PlannedObject("green frog", Box(500, 500, 1000, 1000)),
        PlannedObject("tree", None),
    ]
    found = rules.planned_detections(objects, (479, 479), {"person": ["girl", "person"], "frog": ["frog"]})
    assert [(d.label, d.score) for d in found] == [("person", 1.0), ("frog", 1.0)]
    assert found[1].box == pytest.approx((239.5, 239.5, 479.0, 479.0))
    # girl above the frog: dy = 239.5 > |dx|... dx = dy = 239.5, so neither axis dominates -> 0; 0.5 kept
    assert rules.spatial_2d_score("on the top of", "person", "frog", found).score == 0.5


def test_plan_attribute_score_needs_all_words_in_one_object():
    names = ["green bench", "red car"]
    assert rules.plan_attribute_score(["a green bench", "a red car"], names) == 1.0
    assert rules.plan_attribute_score(["a green bench", "a blue car"], names) == 0.0  # no "blue car"
    assert rules.plan_attribute_score(["a green car"], names) == 0.0  # words split over two objects
    assert rules.plan_attribute_score([], names) == 1.0


# ---------------------------------------------------------------------------------------------------------
# prompt parsing (the fallback chunker when spaCy is absent)

needs_fallback = pytest.mark.skipif(phrases.parser_method() != "fallback", reason="spaCy is installed")


@needs_fallback
def test_fallback_is_reported():
    assert "fallback chunker" in phrases.parser_note()
    assert "en_core_web_sm not installed" in phrases.parser_note()


@needs_fallback
@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a green bench and a blue bowl", ["a green bench", "a blue bowl"]),
        ("a red orange and a brown sheep", ["a red orange", "a brown sheep"]),
        (
            "a pentagonal stop sign and a spherical traffic light",
            ["a pentagonal stop sign", "a spherical traffic light"],
        ),
        ("rubber sole shoes and fluffy clouds", ["rubber sole shoes", "fluffy clouds"]),
        ("an oval sink and a rectangular mirror.", ["an oval sink", "a rectangular mirror"]),
        ("a cubic Rubik's cube and a pentagonal game box", ["a cubic Rubik's cube", "a pentagonal game box"]),
        ("A black and white cat sits in a white sink.", ["A black and white cat", "a white sink"]),
        (
            "The metallic whisk and wooden bowl mix the fluffy batter for the cake on the plastic counter.",
            ["The metallic whisk", "wooden bowl", "the fluffy batter", "the cake", "the plastic counter"],
        ),
        ("The fluffy cat is on the left of the soft pillow.", ["The fluffy cat", "the soft pillow"]),
    ],
)
def test_fallback_phrases_on_val_prompts(prompt, expected):
    assert phrases.blip_phrases(prompt) == expected


@needs_fallback
def test_relation_leftovers_dropped_and_at_most_eight():
    prompt = "The fluffy cat is on the left of the soft pillow."
    assert "the left" in phrases.noun_chunks(prompt)
    assert "the left" not in phrases.blip_phrases(prompt)
    many = "a cat, a dog, a cow, a pig, a hen, a fox, a bee, an owl and a rat"
    assert len(phrases.noun_chunks(many)) == 9
    assert phrases.blip_phrases(many) == phrases.noun_chunks(many)[:8]


def test_question_cleaning():
    assert phrases.blip_question("a green bench") == "a green bench?"
    assert phrases.pre_question('A "Big" (Red) Car!?') == "a big red car?"
    assert phrases.blip_question("The Rubik's cube: #1.") == "the rubik's cube 1?"


@needs_fallback
def test_spatial_nouns_on_val_prompts():
    for name in ("spatial_val.txt", "3d_spatial_val.txt"):
        for line in (DATA / "t2i_compbench" / name).read_text().splitlines():
            tokens = line.split()  # every 2D/3D val prompt is "a|an X ... a|an Y"
            assert phrases.first_last_nouns(line) == (tokens[1], tokens[-1]), line
    assert phrases.first_last_nouns("a girl on the top of a frog") == ("girl", "frog")
    assert [phrases.to_detector_label(w) for w in ("girl", "boy", "man", "woman", "frog")] == [
        "person",
        "person",
        "person",
        "person",
        "frog",
    ]


@needs_fallback
def test_complex_spatial_nouns_and_clip_text():
    assert phrases.complex_spatial_nouns("The red hat was on top of the brown coat rack.") == ("hat", "coat")
    assert phrases.complex_spatial_nouns("The fluffy cat is on the left of the soft pillow.") == ("cat", "pillow")
    assert phrases.complex_spatial_nouns("The black phone was resting on the brown charger.") == (None, None)
    assert (
        phrases.without_adjectives("The fluffy cat is on the left of the soft pillow.")
        == "The cat is on the left of the pillow ."
    )
    assert phrases.words("two cats, a dog.") == ["two", "cats", ",", "a", "dog", "."]


# ---------------------------------------------------------------------------------------------------------
# Arithmetic to the last bit: each rule against a restatement of the official script's arithmetic (commit
# 1b70949). The scripts read UniDet's float32 box and score tensors with ``.item()`` (exact float32 values as
# Python floats) and compute in Python floats; BLIP's tensors are float32. The cases put float64 inputs a
# fraction of a float32 ulp off float32 values at each threshold, so the same arithmetic on the unrounded
# inputs (``read=float``: the rules before the fix) answers differently; each test checks that such cases occur.

_F32 = np.float32


def _item(value: float) -> float:
    """``tensor.item()`` of a float32 tensor holding ``value``."""
    return float(_F32(value))


def _off32(rng: np.random.Generator, value: float) -> float:
    """A float64 within 0.45 float32 ulp of ``value`` (a float32): it rounds back to ``value`` in float32."""
    return value + float(rng.uniform(-0.45, 0.45)) * float(np.spacing(_F32(value if value else 1e-30)))


def _official_position_2d(locality, b1, b2, read=_item):
    """2D_spatial_eval.py's determine_position (iou_threshold 0.1, distance_threshold 150), restated."""
    x1a, y1a, x2a, y2a = (read(v) for v in b1)
    x1b, y1b, x2b, y2b = (read(v) for v in b2)
    x_distance = (x1b + x2b) / 2 - (x1a + x2a) / 2
    y_distance = (y1b + y2b) / 2 - (y1a + y2a) / 2
    intersection = max(0, min(x2a, x2b) - max(x1a, x1b)) * max(0, min(y2a, y2b) - max(y1a, y1b))
    iou = intersection / ((x2a - x1a) * (y2a - y1a) + (x2b - x1b) * (y2b - y1b) - intersection)
    if locality in ("next to", "on side of", "near"):
        if abs(x_distance) < 150 or abs(y_distance) < 150:
            return 1
        return 150 / max(abs(x_distance), abs(y_distance))
    sides = {
        "on the right of": (x_distance < 0, x_distance, y_distance),
        "on the left of": (x_distance > 0, x_distance, y_distance),
        "on the bottom of": (y_distance < 0, y_distance, x_distance),
        "on the top of": (y_distance > 0, y_distance, x_distance),
    }
    if locality not in sides:
        return 0
    right_side, along, across = sides[locality]
    if right_side and abs(along) > abs(across):
        return 1 if iou < 0.1 else 0.1 / iou
    return 0


def _official_image_score_2d(locality, found1, found2, read=_item):
    """2D_spatial_eval.py's image score from (confidence, box) or None per object, with its 0.5 floor."""
    if found1 is not None and found2 is not None:
        score = 0.25 * read(found1[0]) + 0.25 * read(found2[0])
        score += _official_position_2d(locality, found1[1], found2[1], read) / 2
    elif found1 is not None or found2 is not None:
        score = 0.25 * read((found1 or found2)[0])
    else:
        score = 0
    return 0 if score < 0.5 else score


def _spatial_case(rng: np.random.Generator):
    """A relation and two (confidence, box) pairs on or near one of the rule's thresholds."""
    relation = rng.choice([*rules.SPATIAL_2D_RELATIONS, "none"])
    w1, h1, w2, h2 = (float(v) for v in rng.integers(10, 200, 4) / 2)
    x1, y1 = (float(v) for v in rng.integers(0, 300, 2) / 2)
    kind = int(rng.integers(0, 4))
    if kind == 0:  # the 150 px rule: an offset of exactly 150 on one axis, 150 or more on the other
        dx, dy = 150.0 * rng.choice([-1, 1]), float(rng.choice([150.0, 200.0, 300.5])) * rng.choice([-1, 1])
    elif kind == 1:  # |dx| == |dy|: neither axis wins
        dx = dy = float(rng.integers(1, 300) / 2) * rng.choice([-1, 1])
    elif kind == 2:  # overlapping boxes: 0.1 / IoU
        dx, dy = float(rng.integers(-40, 40) / 2), float(rng.integers(-40, 40) / 2)
    else:
        dx, dy = (float(v) for v in rng.integers(-600, 600, 2) / 2)
    cx, cy = x1 + w1 / 2 + dx, y1 + h1 / 2 + dy
    box1 = tuple(_off32(rng, v) for v in (x1, y1, x1 + w1, y1 + h1))
    box2 = tuple(_off32(rng, v) for v in (cx - w2 / 2, cy - h2 / 2, cx + w2 / 2, cy + h2 / 2))
    c1, c2 = (_off32(rng, float(c)) for c in rng.choice([1.0, 0.5, 0.75, float(_F32(rng.uniform(0.5, 1)))], 2))
    return (None if relation == "none" else str(relation)), (c1, box1), (c2, box2)


def test_2d_rule_and_image_score_read_float32_like_the_script():
    rng = np.random.default_rng(2024)
    disagree_with_float64 = 0
    for _ in range(1500):
        locality, (c1, b1), (c2, b2) = _spatial_case(rng)
        position = rules.position_score_2d(locality, b1, b2)
        assert position == _official_position_2d(locality, b1, b2), (locality, b1, b2)
        found = [Detection("cat", c1, b1), Detection("dog", c2, b2)]
        score = rules.spatial_2d_score(locality, "cat", "dog", found).score
        assert score == _official_image_score_2d(locality, (c1, b1), (c2, b2))
        alone = rules.spatial_2d_score(locality, "cat", "cow", found)  # one found: 0.25 x conf, then floored
        assert (alone.unfloored, alone.score) == (0.25 * _item(c1), 0.0)
        disagree_with_float64 += score != _official_image_score_2d(locality, (c1, b1), (c2, b2), read=float)
        disagree_with_float64 += position != _official_position_2d(locality, b1, b2, read=float)
    assert disagree_with_float64 > 300
    # the floor: confidences 1 and just under 1 in float64 (1.0 in float32), position 0 -> exactly 0.5, kept
    found = [Detection("hat", 1.0, A), Detection("rack", 1 - 2.0**-30, (0.0, 200.0, 100.0, 300.0))]
    assert rules.spatial_2d_score("on top of", "hat", "rack", found).score == 0.5


def _official_position_3d(locality, b1, b2, depth_map, read=_item):
    """3D_spatial_eval.py's in front of / behind / hidden branches, restated (the region mean is numpy's here:
    the script's is a float32 torch mean on the GPU, a summation order no CPU test reproduces)."""
    x1a, y1a, x2a, y2a = (read(v) for v in b1)
    x1b, y1b, x2b, y2b = (read(v) for v in b2)
    intersection = max(0, min(x2a, x2b) - max(x1a, x1b)) * max(0, min(y2a, y2b) - max(y1a, y1b))
    iou = intersection / ((x2a - x1a) * (y2a - y1a) + (x2b - x1b) * (y2b - y1b) - intersection)
    depth_a = depth_map[int(x1a) : int(x2a), int(y1a) : int(y2a)].mean()
    depth_b = depth_map[int(x1b) : int(x2b), int(y1b) : int(y2b)].mean()
    nearer = depth_a - depth_b > 0 if locality == "in front of" else depth_a - depth_b < 0
    if iou > 0.5:
        return 1 if nearer else 0
    if 0 < iou < 0.5:
        return iou / 0.5 if nearer else 0
    return 0


def test_3d_rule_reads_float32_boxes_at_iou_half_zero_and_pixel_edges():
    rng = np.random.default_rng(33)
    depth_map = np.add.outer(np.arange(479.0), np.zeros(479)) / 479  # varies along x, the first index
    disagree_with_float64 = 0
    for _ in range(900):
        locality = str(rng.choice(rules.SPATIAL_3D_RELATIONS))
        x, y, w, h = (float(v) for v in (*rng.integers(0, 200, 2), *rng.integers(20, 200, 2)))
        kind = int(rng.integers(0, 3))
        box1 = (x, y, x + w, y + h)
        if kind == 0:  # IoU exactly 0.5: box2 is the top half of box1
            box2 = (x, y, x + w, y + h / 2)
        elif kind == 1:  # IoU exactly 0: box2 touches box1's right edge
            box2 = (x + w, y, x + 2 * w, y + h)
        else:  # a partial overlap, corners near whole pixels (int() indexing)
            box2 = (x + w / 3, y + h / 4, x + w + 7, y + h + 3)
        if rng.random() < 0.5:
            box1, box2 = box2, box1
        box1, box2 = tuple(_off32(rng, v) for v in box1), tuple(_off32(rng, v) for v in box2)
        score = rules.position_score_3d(locality, box1, box2, depth_map)
        assert score == _official_position_3d(locality, box1, box2, depth_map), (locality, box1, box2)
        disagree_with_float64 += score != _official_position_3d(locality, box1, box2, depth_map, read=float)
    assert disagree_with_float64 > 50


def _official_duplicate(b1, b2, read=_item) -> bool:
    """numeracy_eval.py's calculate_iou test (+1 pixel areas), restated on ``.item()`` values."""
    x1a, y1a, x2a, y2a = (read(v) for v in b1)
    x1b, y1b, x2b, y2b = (read(v) for v in b2)
    inter = max(0, min(x2a, x2b) - max(x1a, x1b) + 1) * max(0, min(y2a, y2b) - max(y1a, y1b) + 1)
    area1, area2 = (x2a - x1a + 1) * (y2a - y1a + 1), (x2b - x1b + 1) * (y2b - y1b + 1)
    return inter / float(area1 + area2 - inter) > 0.9 or inter / float(area1) > 0.9 or inter / float(area2) > 0.9


def test_numeracy_duplicate_test_reads_float32_boxes_at_the_0_9_boundary():
    rng = np.random.default_rng(9)
    disagree_with_float64 = 0
    for _ in range(800):
        # Equal boxes of (+1) width W shifted by W / 10: each covers the other by exactly 0.9 (not > 0.9).
        width = float(rng.integers(1, 40) * 10)
        height = float(rng.integers(5, 300))
        x, y = (float(v) for v in rng.integers(0, 200, 2))
        shift = width / 10 + float(rng.choice([0.0, 0.0, 0.5, -0.5]))
        box1 = (x, y, x + width - 1, y + height - 1)
        box2 = (x + shift, y + float(rng.choice([0, 0, 1])), x + shift + width - 1, y + height - 1)
        box1, box2 = tuple(_off32(rng, v) for v in box1), tuple(_off32(rng, v) for v in box2)
        merged = rules.merge_duplicate_detections([Detection("cat", 0.9, box1), Detection("cat", 0.8, box2)])
        assert (len(merged) == 1) == _official_duplicate(box1, box2), (box1, box2)
        disagree_with_float64 += (len(merged) == 1) != _official_duplicate(box1, box2, read=float)
    assert disagree_with_float64 > 50


def _official_blip(probabilities, fmt=_item) -> tuple[list[str], str]:
    """BLIP_vqa.py: each phrase's float32 P(yes) written with 4 decimals, read back into a float32 reward
    matrix (8 phrases, 1 for a missing one), the columns multiplied in place, the product written again."""
    answers = [f"{fmt(p):.4f}" for p in probabilities]
    reward = np.ones((1, 8), dtype=np.float32)
    for i, answer in enumerate(answers):
        reward[0, i] = float(answer)
    product = reward[:, 0].copy()
    for i in range(1, 8):
        product *= reward[:, i]
    return answers, f"{product[0].item():.4f}"


def test_blip_answers_and_product_are_float32_at_4_decimal_ties():
    rng = np.random.default_rng(4)
    disagree_with_float64 = cases = 0
    for _ in range(400):
        ties = (rng.integers(0, 10000, 8) + 0.5) / 10000  # x.xxxx5: halfway between two 4-decimal answers
        probabilities = [float(t) + float(rng.integers(-40, 40)) * 1e-12 for t in ties[: rng.integers(0, 9)]]
        answers, product = _official_blip(probabilities)
        assert [rules.blip_answer(p) for p in probabilities] == answers
        assert rules.blip_image_score(probabilities) == float(product)
        assert rules.blip_answer(rules.blip_image_score(probabilities)) == product
        cases += len(probabilities)
        disagree_with_float64 += sum(a != b for a, b in zip(answers, _official_blip(probabilities, float)[0]))
    assert cases > 1000 and disagree_with_float64 > 100


def _official_summaries(answers) -> dict[str, str]:
    """Each script's summary text from its answers in file order."""
    out = {}
    total = 0
    for a in answers:
        total += float(a)
    out["blip"] = "BLIP-VQA score:" + str(total / len(answers))
    out["spatial_2d"] = out["clip"] = "score avg:" + str(total / len(answers))
    fold = 0  # 3_in_1.py's sum(total_score): a left fold on its Python 3.9
    for a in answers:
        fold = fold + float(a)
    out["three_in_one"] = "score avg:" + str(fold / len(answers))
    out["numeracy"] = f"total:{total} num:{len(answers)} avg:{str(total / len(answers))}"
    out["spatial_3d"] = f"avg score is {np.mean([float(a) for a in answers])}"
    return out


def test_summary_text_adds_up_as_each_script_does():
    rng = np.random.default_rng(12)
    pairwise_differs = compensated_differs = 0
    for _ in range(300):
        n = int(rng.integers(1, 400))
        values = [float(v) for v in rng.choice([rng.random(n), np.round(rng.random(n), 4), rng.random(n) / 3])]
        expected = _official_summaries(values)
        for metric, text in expected.items():
            assert rules.summary_text(metric, values) == text, metric
        left_to_right = float(expected["clip"].removeprefix("score avg:"))
        pairwise_differs += f"avg score is {left_to_right}" != expected["spatial_3d"]
        compensated_differs += math.fsum(values) / n != left_to_right
    # the 3D mean is numpy's pairwise one, not the left-to-right one; Python 3.12's compensated sum() differs too
    assert pairwise_differs > 50 and compensated_differs > 50
    blip_answers = ["0.6900", "0.1234", "1.0000"]
    assert rules.summary_text("blip", blip_answers) == _official_summaries(blip_answers)["blip"]
    with pytest.raises(ValueError):
        rules.summary_text("nonsense", [1.0])


class _CannedDetector:
    """Stands in for the scorer's detector: per image, detections named by the labels asked for."""

    model_id, threshold, query_template = "canned", 0.5, "a photo of a {}"

    def __init__(self, make):
        self.make = make  # (image index, labels asked for) -> detections

    def detect(self, images, labels):
        return [self.make(i, wanted) for i, wanted in enumerate(labels)]


class _FlatDepth:
    model_id = "flat"

    def depth_maps(self, images):
        return [np.add.outer(np.arange(479.0), np.zeros(479)) / 479 for _ in images]


def _eval_images(root, category, prompts):
    import PIL.Image

    from gotr1.eval.records import EvalImage, ImageJob

    (root / "samples").mkdir(parents=True, exist_ok=True)
    images = []
    for index, prompt in enumerate(prompts):
        path = f"samples/{prompt}_{index:06d}.png"
        PIL.Image.new("RGB", (32, 32), (index, 0, 0)).save(root / path)
        images.append(EvalImage(ImageJob(category, prompt, index, 0, 42, path, f"records/{index:06d}.json"), root))
    return images


def test_numeracy_without_countable_object_scores_zero_everywhere(tmp_path):
    import json

    from gotr1.eval.scorers.t2i_official import RESULT_FILES, T2IOfficialScorer

    def make(i, wanted):
        return [Detection(label, 0.9, (100.0 * k, 0.0, 100.0 * k + 50, 50.0)) for k, label in enumerate(wanted * 2)]

    scorer = T2IOfficialScorer(detector=_CannedDetector(make))
    # "photo" and "sky" are in no line of new_objects.txt: the official script divides by zero on this prompt
    prompts = ["two cats", "a photo of the sky", "three dogs"]
    scores = scorer.score("numeracy", _eval_images(tmp_path, "numeracy", prompts), tmp_path)
    assert [s.score for s in scores] == [1.0, 0.0, 0.5]  # three dogs: present, but two boxes, not three
    assert "official script fails" in scores[1].reason
    rows = json.loads((tmp_path / RESULT_FILES["numeracy"]).read_text())
    assert [r["answer"] for r in rows] == [s.score for s in scores]
    summary = (tmp_path / RESULT_FILES["numeracy"]).parent.joinpath("score.txt").read_text()
    assert summary == _official_summaries([1.0, 0.0, 0.5])["numeracy"] == "total:1.5 num:3 avg:0.5"
    assert float(summary.rsplit("avg:", 1)[1]) == sum(s.score for s in scores) / len(scores)
    assert any("numeracy, a prompt with no countable object" in note for note in scorer.notes)


def test_3d_summary_file_is_numpys_mean_of_the_answers(tmp_path):
    import json

    from gotr1.eval.scorers.t2i_official import RESULT_FILES, T2IOfficialScorer

    # float32 confidences and corners: the answers do not depend on the float32 rounding, only the mean does
    rng = np.random.default_rng(1)
    confidences, shifts = rng.random((24, 2)).astype(np.float32), rng.uniform(30, 90, 24)

    def make(i, wanted):  # the first object in front of (larger x: nearer) the second, IoU below 0.5
        s = float(shifts[i])
        boxes = [(220.0, 10.0, 320.0, 110.0), (_item(220.0 - s), 20.0, _item(320.0 - s), 120.0)]
        return [Detection(label, float(c), box) for label, c, box in zip(wanted, confidences[i], boxes)]

    scorer = T2IOfficialScorer(detector=_CannedDetector(make), depth=_FlatDepth())
    images = _eval_images(tmp_path, "3d_spatial", ["a cat in front of a dog"] * 24)
    scores = scorer.score("3d_spatial", images, tmp_path)
    rows = json.loads((tmp_path / RESULT_FILES["spatial_3d"]).read_text())
    answers = [r["answer"] for r in rows]
    assert answers == [s.score for s in scores] and len(set(answers)) == 24
    text = (tmp_path / RESULT_FILES["spatial_3d"]).parent.joinpath("avg_result.txt").read_text()
    assert text == f"avg score is {np.mean(answers)}"
    left_to_right = 0.0
    for a in answers:
        left_to_right += a
    assert text != f"avg score is {left_to_right / len(answers)}"  # these answers tell the two sums apart
