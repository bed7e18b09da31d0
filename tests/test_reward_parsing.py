"""Reading judge answers: scores and boxes out of JSON, fenced JSON, prose, and broken JSON."""

import pytest

from gotr1.chain import Box
from gotr1.rewards.matching import judge_box_to_grid, match_boxes
from gotr1.rewards.parsing import extract_json, read_boxes, read_score


@pytest.mark.parametrize(
    "text, value",
    [
        ('{"score": 7, "reason": "ok"}', 0.7),
        ('```json\n{"score": 8}\n```', 0.8),
        ("Here you go:\n{'score': 9, 'reason': \"the judge's view\"}\nThanks!", 0.9),
        ('{"score": "6"}', 0.6),
        ('{"score": "7/10"}', 0.7),
        ('{"score": "3/5"}', 0.6),
        ('{"score": 5, "reason": "fine",}', 0.5),
        ('{"result": {"rating": 4}}', 0.4),
        ("Score: 6", 0.6),
        ("The score is 2/5 because...", 0.4),
        ('{"score": 0}', 0.0),
        ('{"score": 10.0}', 1.0),
    ],
)
def test_read_score_accepts_the_ways_judges_answer(text, value):
    reading = read_score(text)
    assert reading.error is None and not reading.clamped
    assert reading.value == pytest.approx(value)


@pytest.mark.parametrize("text, value", [('{"score": 14}', 1.0), ('{"score": -3}', 0.0), ('{"score": "11"}', 1.0)])
def test_out_of_range_scores_are_clamped_and_flagged(text, value):
    reading = read_score(text)
    assert reading.value == value and reading.clamped


@pytest.mark.parametrize(
    "text",
    [
        '{"reason": "no number here"}',
        "I cannot rate this image.",
        "",
        None,
        '{"score": "high"}',
        '{"score": true}',
        '{"score": null}',
    ],
)
def test_missing_score_is_a_failure_not_a_zero(text):
    reading = read_score(text)
    assert reading.value is None and reading.error


def test_extract_json_prefers_fenced_and_handles_nesting_and_apostrophes():
    assert extract_json('pre ```\n{"a": [1, {"b": 2}]}\n``` post') == {"a": [1, {"b": 2}]}
    assert extract_json("It's here: {'a': 'it\\'s'} ok") == {"a": "it's"}
    assert extract_json('[1, 2] and {"x": 1}') == [1, 2]
    assert extract_json("no json at all") is None
    assert extract_json('{"a": true, "b": null}') == {"a": True, "b": None}


@pytest.mark.parametrize(
    "text, boxes",
    [
        ('[{"bbox_2d": [10, 20, 30, 40], "label": "dog"}]', [(10, 20, 30, 40)]),
        ('{"bbox_2d": [1, 2, 3, 4]}', [(1, 2, 3, 4)]),
        ('{"bbox": ["5", "6", "7", "8"]}', [(5, 6, 7, 8)]),
        ("The dog is at [10, 20, 30, 40].", [(10, 20, 30, 40)]),
        ("[[1, 2, 3, 4], [5, 6, 7, 8]]", [(1, 2, 3, 4), (5, 6, 7, 8)]),
        ('{"objects": [{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [5, 6, 7, 8]}]}', [(1, 2, 3, 4), (5, 6, 7, 8)]),
        ('{"x1": 1, "y1": 2, "x2": 3, "y2": 4}', [(1, 2, 3, 4)]),
        ("[]", []),
        ('{"found": false}', []),
        ('{"bbox_2d": null}', []),
    ],
)
def test_read_boxes(text, boxes):
    reading = read_boxes(text)
    assert reading.error is None
    assert [tuple(b) for b in reading.boxes] == boxes


@pytest.mark.parametrize("text", ["there is a dog", '{"label": "dog"}', '{"bbox_2d": [1, 2, 3]}', None])
def test_unreadable_boxes_are_errors(text):
    assert read_boxes(text).error


def test_judge_boxes_convert_to_the_chain_grid():
    # Qwen2.5-VL: absolute pixels of the image it saw (here 448 x 224).
    assert judge_box_to_grid((112, 56, 224, 224), "pixels", (448, 224)) == Box(250, 250, 500, 1000)
    assert judge_box_to_grid((250, 250, 500, 1000), "relative_1000", (64, 64)) == Box(250, 250, 500, 1000)
    assert judge_box_to_grid((0.25, 0.25, 0.5, 1.0), "relative_1", (64, 64)) == Box(250, 250, 500, 1000)
    # corners swapped and past the image: ordered and clamped
    assert judge_box_to_grid((500, 300, -20, 100), "pixels", (448, 448)) == Box(0, 223, 1000, 670)
    assert judge_box_to_grid((10, 10, 10, 50), "pixels", (448, 448)) is None  # no area
    with pytest.raises(ValueError, match="unknown box format"):
        judge_box_to_grid((0, 0, 1, 1), "percent", (10, 10))


def test_matching_is_one_to_one_for_repeated_names():
    a, b = Box(0, 0, 100, 100), Box(500, 500, 600, 600)
    assert match_boxes([a, b], [b, a]) == [(0, 1, 1.0), (1, 0, 1.0)]
    # two planned boxes, one found: only one can claim it
    assert match_boxes([a, a], [a]) in ([(0, 0, 1.0)], [(1, 0, 1.0)])
    assert match_boxes([], [a]) == []
