"""Tests for the shapes world's exact rewards (gotr1.worlds.shapes.rewards)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gotr1.chain import (
    BEGIN_OF_IMAGE,
    BOX_END,
    BOX_START,
    OBJ_END,
    OBJ_START,
    Box,
    PlannedObject,
    format_chain,
)
from gotr1.worlds.shapes.grammar import Prompt, ShapesGrammar
from gotr1.worlds.shapes.grounder import ImageLike
from gotr1.worlds.shapes.render import LayoutError, PlacedObject, Scene, draw_objects, layout_scene
from gotr1.worlds.shapes.rewards import (
    RPI,
    RRI,
    ProductReward,
    RSem,
    RSpa,
    all_constraints_hold,
    mean_product_reward,
    product_reward,
    score_all,
)
from gotr1.worlds.shapes.vocabulary import Group, Meaning, Relation, relation_holds

SIZE = 64
# "a small red circle to the left of two blue squares"
MEANING = Meaning(
    (Group("red", "circle", 1, "small"), Group("blue", "square", 2)),
    (Relation(0, "left of", 1),),
)
PROMPT = Prompt("a small red circle to the left of two blue squares", MEANING)
RED = PlacedObject("red", "circle", "small", 0, (4, 26, 16, 38))
BIG_SQUARE = PlacedObject("blue", "square", "large", 1, (30, 8, 50, 28))
SMALL_SQUARE = PlacedObject("blue", "square", "small", 1, (34, 38, 48, 52))
SCENE = Scene(MEANING, [RED, BIG_SQUARE, SMALL_SQUARE], SIZE)
TRUE_CHAIN = SCENE.chain()
IMAGE = SCENE.image()

R_RED, R_BIG, R_SMALL = (obj.grid_box(SIZE) for obj in SCENE.objects)
GREEN_TRIANGLE = PlacedObject("green", "triangle", "small", 2, (50, 50, 62, 62))
THIRD_SQUARE = PlacedObject("blue", "square", "small", 1, (4, 4, 16, 16))  # above the circle
RIGHT_EDGE = Box(850, 400, 1000, 600)  # small, and right of both squares
LARGE_RED = Box(0, 300, 300, 600)  # large, still left of both squares


def chain(*objects: tuple[str, Box | None]) -> str:
    """A chain planning ``objects`` in order, joined by prose."""
    segments: list[str | PlannedObject] = ["The image shows "]
    for index, (name, box) in enumerate(objects):
        if index:
            segments.append(" and ")
        segments.append(PlannedObject(name, box))
    return format_chain([*segments, "."])


def drawn(*objects: PlacedObject) -> Image.Image:
    return draw_objects(list(objects), SIZE)


def test_the_hand_made_scene_is_what_the_prompt_says() -> None:
    for square in (BIG_SQUARE, SMALL_SQUARE):
        assert relation_holds("left of", RED.box, square.box)


def test_names() -> None:
    assert [r.name for r in (RSem(), RSpa(), RRI(), RPI())] == ["r_sem", "r_spa", "r_ri", "r_pi"]
    assert ProductReward().name == "r_product"
    assert ProductReward(mean=True).name == "r_mean_product"


# --- perfect -------------------------------------------------------------------------------------


def test_the_true_chain_and_image_score_full_marks() -> None:
    (row,) = score_all([PROMPT], [TRUE_CHAIN], [IMAGE])
    assert row == {
        "r_sem": 1.0,
        "r_spa": 1.0,
        "r_ri": 1.0,
        "r_pi": 1.0,
        "product": 2.0,
        "mean_product": 1.0,
    }
    assert all_constraints_hold(PROMPT, IMAGE)
    assert ProductReward()([PROMPT], [TRUE_CHAIN + BEGIN_OF_IMAGE], [IMAGE]) == [2.0]


def test_true_chains_and_images_of_grammar_scenes_score_full_marks() -> None:
    rng = random.Random(0)
    prompts, chains, images = [], [], []
    for prompt in ShapesGrammar().prompts("train", 100):
        try:
            scene = layout_scene(prompt.meaning, rng)
        except LayoutError:
            continue
        prompts.append(prompt)
        chains.append(scene.chain())
        images.append(scene.image())
    rows = score_all(prompts, chains, images)
    # A few layouts have a relation's two centre offsets exactly equal in pixels, which rounding
    # onto the grid can tip; everything else must be perfect.
    perfect = [row["product"] == 2.0 for row in rows]
    assert sum(perfect) >= 0.97 * len(rows)
    assert all(row["r_sem"] == row["r_ri"] == 1.0 for row in rows)
    for prompt, image, row in zip(prompts, images, rows):
        assert all_constraints_hold(prompt, image) == (row["r_pi"] == 1.0)


# --- R_sem ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["small red circle", "blue square", "blue square"], 1.0),
        (["blue square", "small red circle", "large blue square"], 1.0),
        (["small red circle", "blue square"], 0.75),  # one square missing
        (["small green circle", "blue square", "blue square"], 0.375),  # wrong colour: half covered, 1 extra
        (["small red circle", *["blue square"] * 3], 0.75),  # one square too many
        (["large red circle", "blue square", "blue square"], 0.5),  # the prompt says small
        (["red circle", "blue square", "blue square"], 0.5),  # the prompt's size is not said
        (["small red circle", "blue square", "blue square", "tree"], 0.75),
        (["yellow diamond"], 0.0),
        (["thing"], 0.0),
    ],
)
def test_r_sem(names: list[str], expected: float) -> None:
    boxed = chain(*((name, Box(0, 0, 100, 100)) for name in names))
    unboxed = chain(*((name, None) for name in names))
    assert RSem().score(PROMPT, boxed, None) == pytest.approx(expected)
    assert RSem().score(PROMPT, unboxed, None) == pytest.approx(expected)


# --- R_spa ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("objects", "expected"),
    [
        ([("small red circle", R_RED), ("blue square", R_BIG), ("blue square", R_SMALL)], 1.0),
        ([("small red circle", R_RED), ("blue square", R_BIG)], 0.5),  # a count and a pair fail
        ([("small red circle", RIGHT_EDGE), ("blue square", R_BIG), ("blue square", R_SMALL)], 0.5),
        ([("small red circle", LARGE_RED), ("blue square", R_BIG), ("blue square", R_SMALL)], 0.75),
        ([("small red circle", R_RED), ("blue square", R_BIG), ("blue square", R_BIG)], 0.8),  # stacked
        (
            [
                ("small red circle", R_RED),
                ("blue square", R_BIG),
                ("blue square", R_SMALL),
                ("green triangle", Box(700, 800, 900, 1000)),
            ],
            1.0,  # an extra object is R_sem's business
        ),
        ([("yellow diamond", R_RED)], 0.0),
        ([("small red circle", None), ("blue square", None), ("blue square", None)], 0.0),
    ],
)
def test_r_spa(objects: list[tuple[str, Box | None]], expected: float) -> None:
    assert RSpa().score(PROMPT, chain(*objects), None) == pytest.approx(expected)


def test_r_spa_scales_surplus_pairs_down_to_the_prompts_number() -> None:
    objects = [("small red circle", R_RED), ("blue square", R_BIG), ("blue square", R_SMALL)]
    # A third square left of the circle: the count fails, 2 of 3 pairs hold, worth 2 * 2/3.
    third = ("blue square", Box(0, 0, 30, 30))
    assert RSpa().score(PROMPT, chain(*objects, third), None) == pytest.approx((1 + 0 + 4 / 3) / 4)


# --- R_RI ----------------------------------------------------------------------------------------


def test_r_ri_is_the_mean_iou_of_planned_and_drawn_boxes() -> None:
    shifted = Box(R_RED.x1 + 40, R_RED.y1, R_RED.x2 + 40, R_RED.y2)
    planned = chain(("small red circle", shifted), ("blue square", R_BIG), ("blue square", R_SMALL))
    assert RRI().score(PROMPT, planned, IMAGE) == pytest.approx((shifted.iou(R_RED) + 2) / 3)


def test_r_ri_matches_repeated_names_one_to_one() -> None:
    image = drawn(RED)
    elsewhere = Box(600, 600, 800, 800)
    for planned in (
        chain(("red circle", R_RED), ("red circle", elsewhere)),
        chain(("small red circle", elsewhere), ("large red circle", R_RED)),
    ):
        assert RRI().score(PROMPT, planned, image) == pytest.approx(0.5)


def test_r_ri_gives_nothing_for_objects_not_drawn() -> None:
    wrong_colour = chain(("small green circle", R_RED), ("blue square", R_BIG), ("blue square", R_SMALL))
    assert RRI().score(PROMPT, wrong_colour, IMAGE) == pytest.approx(2 / 3)
    assert RRI().score(PROMPT, TRUE_CHAIN, drawn()) == 0.0
    unboxed = chain(("small red circle", None), ("blue square", R_BIG))
    assert RRI().score(PROMPT, unboxed, IMAGE) == 1.0  # an object without a box plans no position


def test_r_ri_asks_the_locator_once_per_colour_and_shape() -> None:
    class Locator:
        def __init__(self) -> None:
            self.asked: list[str] = []

        def locate(self, image: ImageLike, name: str) -> list[Box]:
            self.asked.append(name)
            return [R_BIG] if name == "blue square" else []

    locator = Locator()
    assert RRI(locator).score(PROMPT, TRUE_CHAIN, IMAGE) == pytest.approx(1 / 3)
    assert sorted(locator.asked) == ["blue square", "red circle"]


# --- R_PI ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("objects", "expected"),
    [
        ([RED, BIG_SQUARE, SMALL_SQUARE], 1.0),
        ([RED, BIG_SQUARE], 0.5),  # a count and a pair fail
        ([RED, BIG_SQUARE, SMALL_SQUARE, GREEN_TRIANGLE], 0.8),
        # The third square: the count fails, 2 of 3 pairs hold (worth 2 * 2/3), one extra object.
        ([RED, BIG_SQUARE, SMALL_SQUARE, THIRD_SQUARE], (1 + 4 / 3) / 5),
        ([PlacedObject("red", "circle", "small", 0, (50, 26, 62, 38)), BIG_SQUARE, SMALL_SQUARE], 0.5),
        ([PlacedObject("red", "circle", "large", 0, (2, 22, 22, 42)), BIG_SQUARE, SMALL_SQUARE], 0.75),
        ([PlacedObject("red", "square", "small", 0, (4, 56, 40, 62)), RED, BIG_SQUARE, SMALL_SQUARE], 0.8),
        ([], 0.0),
    ],
    ids=["perfect", "missing", "extra", "one-too-many", "wrong-relation", "wrong-size", "blob", "blank"],
)
def test_r_pi(objects: list[PlacedObject], expected: float) -> None:
    image = drawn(*objects)
    assert RPI().score(PROMPT, "", image) == pytest.approx(expected)
    assert all_constraints_hold(PROMPT, image) == (expected == 1.0)


# --- missing images, malformed chains ------------------------------------------------------------


def test_a_missing_image_cannot_be_scored() -> None:
    (row,) = score_all([PROMPT], [TRUE_CHAIN], [None])
    assert row == {
        "r_sem": 1.0,
        "r_spa": 1.0,
        "r_ri": None,
        "r_pi": None,
        "product": None,
        "mean_product": None,
    }
    assert RRI()([PROMPT], [""], [None]) == [None]
    assert not all_constraints_hold(PROMPT, None)
    assert ProductReward(mean=True)([PROMPT, PROMPT], [TRUE_CHAIN] * 2, [IMAGE, None]) == [1.0, None]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage !!! (1,2),(3,4)",
        f"{OBJ_START}small red circle {BOX_START}(62,406),(250,594){BOX_END}",  # unclosed object
        f"{BOX_START}(62,406),(250,594){BOX_END} and nothing else",
        f"{OBJ_START}{OBJ_END} {BOX_START}(62,406),(250,594){BOX_END}",  # empty name
        f"{OBJ_END}{BOX_END}{OBJ_START}{BOX_START}{BEGIN_OF_IMAGE}",
    ],
)
def test_chains_without_planned_boxes_score_zero(text: str) -> None:
    (row,) = score_all([PROMPT], [text], [IMAGE])
    assert row == {"r_sem": 0.0, "r_spa": 0.0, "r_ri": 0.0, "r_pi": 1.0, "product": 0.0, "mean_product": 0.0}


@pytest.mark.parametrize(
    "box_text",
    [
        "(1,2),(3",
        "(a,b),(c,d)",
        "(1.5,2),(3,4)",
        "(0,0),(0,0)",
        "(-50,-50),(5000,5000)",
        "(900,900),(10,10)",
        "(99999999999999999999,1),(2,3)",
    ],
)
def test_malformed_boxes_are_scored_as_what_the_parser_recovers(box_text: str) -> None:
    text = f"{OBJ_START}small red circle{OBJ_END} {BOX_START}{box_text}{BOX_END} more text{BEGIN_OF_IMAGE} x"
    for value in score_all([PROMPT], [text], [IMAGE])[0].values():
        assert value is not None and 0.0 <= value <= 2.0 and not math.isnan(value)


FRAGMENTS = st.sampled_from(
    [
        OBJ_START,
        OBJ_END,
        BOX_START,
        BOX_END,
        BEGIN_OF_IMAGE,
        "small red circle",
        "blue square",
        "(10,20),(300,400)",
        "(0,0),(1000,1000)",
        "(5,5),(5,5)",
        " ",
        ",",
        "red",
        "(",
        ")",
    ]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(FRAGMENTS | st.text(max_size=8), max_size=20).map("".join))
def test_any_text_gets_a_defined_reward(text: str) -> None:
    (row,) = score_all([PROMPT], [text], [IMAGE])
    for name in ("r_sem", "r_spa", "r_ri", "r_pi", "mean_product"):
        value = row[name]
        assert value is not None and 0.0 <= value <= 1.0 and not math.isnan(value), (name, row)


def test_batches_must_line_up() -> None:
    with pytest.raises(ValueError, match="batch sizes differ"):
        RSem()([PROMPT, PROMPT], [TRUE_CHAIN], [IMAGE])


# --- combining -----------------------------------------------------------------------------------


def test_product_rewards() -> None:
    assert product_reward(1.0, 1.0, 1.0, 1.0) == 2.0
    assert product_reward(0.5, 0.25, 0.8, 0.5) == pytest.approx(0.3)
    assert mean_product_reward(0.5, 0.25, 0.8, 0.5) == pytest.approx(0.15)
    assert product_reward(1.0, 1.0, 0.0, 1.0) == 0.0
    values = [0.5, 0.5, 0.5, 0.5]
    for position in range(4):
        with_none: list[float | None] = list(values)
        with_none[position] = None
        assert product_reward(*with_none) is None
        assert mean_product_reward(*with_none) is None


def test_score_all_and_product_reward_agree() -> None:
    prompts = [PROMPT] * 3
    chains = [TRUE_CHAIN, chain(("small red circle", R_RED), ("blue square", R_BIG)), "garbage"]
    images = [IMAGE, drawn(RED, BIG_SQUARE), IMAGE]
    rows = score_all(prompts, chains, images)
    assert [row["product"] for row in rows] == ProductReward()(prompts, chains, images)
    assert [row["mean_product"] for row in rows] == ProductReward(mean=True)(prompts, chains, images)
    # Missing square everywhere: R_sem 0.75, R_spa 0.5, R_RI 1, R_PI 0.5.
    assert rows[1]["product"] == pytest.approx(0.5 * (0.75 + 0.5) * 1.0)
