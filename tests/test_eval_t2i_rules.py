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
