"""Tests for drawing layout plans (gotr1.layout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gotr1.chain import Box, PlannedObject
from gotr1.layout import PALETTE, draw_plan, draw_plan_over_image, object_color

WHITE = (255, 255, 255)
GREY = (128, 128, 128)


def pixel(image: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    return image.getpixel((x, y))  # type: ignore[return-value]


def ink_bbox(image: Image.Image, ignore: list[tuple[int, int, int]]) -> tuple[int, int, int, int]:
    """Bounding box (inclusive) of pixels of none of the ``ignore`` colours: the label text."""
    pixels = np.asarray(image)
    ink = np.ones(pixels.shape[:2], dtype=bool)
    for colour in ignore:
        ink &= np.any(pixels != colour, axis=-1)
    ys, xs = np.nonzero(ink)
    assert xs.size, "no label text was drawn"
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


# --- colours -------------------------------------------------------------------


def test_palette_colours_are_distinct_and_visible_on_white() -> None:
    assert len(set(PALETTE)) == len(PALETTE) >= 12
    assert all(sum(colour) < 3 * 230 for colour in PALETTE)


def test_object_color_depends_only_on_the_name() -> None:
    assert object_color("teal vase") == object_color("teal vase") in PALETTE
    assert object_color("Teal  Vase ") == object_color("teal vase")
    assert len({object_color(f"object {i}") for i in range(100)}) > 6


def test_object_color_is_the_same_in_other_processes() -> None:
    names = ["teal vase", "yellow vase", "tablecloth", "floral pattern"]
    script = (
        "import json, sys; from gotr1.layout import object_color; "
        "print(json.dumps([object_color(n) for n in sys.argv[1:]]))"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", script, *names],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert [tuple(c) for c in json.loads(result.stdout)] == [object_color(n) for n in names]


# --- blank canvas ----------------------------------------------------------------

VASE = PlannedObject("yellow vase", Box(100, 200, 500, 800))


def test_canvas_size_and_mode() -> None:
    assert draw_plan([VASE]).size == (384, 384)
    image = draw_plan([VASE], (320, 240))
    assert image.size == (320, 240)
    assert image.mode == "RGB"


def test_box_edges_have_the_object_colour() -> None:
    image = draw_plan([VASE], 400)
    colour = object_color(VASE.name)
    # On a 400 px canvas the box spans pixels 40..199 across and 80..319 down.
    assert pixel(image, 40, 200) == colour  # left edge
    assert pixel(image, 199, 200) == colour  # right edge
    assert pixel(image, 120, 80) == colour  # top edge
    assert pixel(image, 120, 319) == colour  # bottom edge


def test_canvas_stays_white_away_from_boxes() -> None:
    image = draw_plan([VASE], 400)
    assert pixel(image, 120, 200) == WHITE  # inside the box: outlines only
    assert pixel(image, 300, 350) == WHITE
    assert pixel(image, 5, 395) == WHITE
    assert pixel(image, 200, 200) == WHITE  # just right of the box
    assert pixel(image, 120, 320) == WHITE  # just below it


def test_line_width_sets_outline_thickness() -> None:
    thin = draw_plan([VASE], 400, line_width=1)
    thick = draw_plan([VASE], 400, line_width=6)
    assert pixel(thin, 43, 200) == WHITE
    assert pixel(thick, 43, 200) == object_color(VASE.name)


def test_same_name_gets_same_colour_in_different_plans() -> None:
    first = draw_plan([PlannedObject("teal vase", Box(100, 100, 400, 400))], 400)
    second = draw_plan(
        [
            PlannedObject("tablecloth", Box(0, 600, 1000, 1000)),
            PlannedObject("teal vase", Box(500, 300, 900, 700)),
        ],
        400,
    )
    assert pixel(first, 40, 120) == pixel(second, 200, 200) == object_color("teal vase")


def test_objects_without_boxes_are_skipped() -> None:
    image = draw_plan([PlannedObject("sky", None)], 64)
    assert image.getcolors() == [(64 * 64, WHITE)]


@pytest.mark.parametrize(
    "box",
    [Box(500, 500, 500, 500), Box(-100, -100, 2000, 2000), Box(900, 900, 100, 100)],
    ids=["zero-area", "off-grid", "swapped"],
)
def test_odd_boxes_are_drawn_without_error(box: Box) -> None:
    image = draw_plan([PlannedObject("cat", box)], 100)
    assert object_color("cat") in {colour for _, colour in image.getcolors() or []}


# --- labels --------------------------------------------------------------------


def test_label_is_written_above_the_box_when_there_is_room() -> None:
    obj = PlannedObject("teal vase", Box(250, 400, 750, 900))
    image = draw_plan([obj], background=Image.new("RGB", (384, 384), GREY))
    left, _, _, bottom = ink_bbox(image, [GREY, object_color(obj.name)])
    assert bottom < 154  # the box's top edge
    assert left >= 96  # starts at the box's left edge


def test_label_at_top_edge_moves_inside_the_box_and_stays_whole() -> None:
    background = Image.new("RGB", (384, 384), GREY)
    name = "floral pattern"
    colour = object_color(name)
    middle = draw_plan([PlannedObject(name, Box(250, 400, 750, 900))], background=background)
    top = draw_plan([PlannedObject(name, Box(100, 0, 600, 500))], background=background)
    mid_box, top_box = ink_bbox(middle, [GREY, colour]), ink_bbox(top, [GREY, colour])
    # Same text extent: nothing was cut off at the canvas edge.
    assert top_box[2] - top_box[0] == mid_box[2] - mid_box[0]
    assert top_box[3] - top_box[1] == mid_box[3] - mid_box[1]
    assert top_box[1] > 0  # below the top edge, within the box
    assert top_box[0] >= 38 and top_box[2] <= 229  # within the box's columns (38..229)


def test_label_at_right_edge_shifts_left_to_stay_whole() -> None:
    background = Image.new("RGB", (384, 384), GREY)
    name = "vibrant red tulip bouquet"
    colour = object_color(name)
    middle = draw_plan([PlannedObject(name, Box(100, 400, 900, 900))], background=background)
    corner = draw_plan([PlannedObject(name, Box(850, 0, 1000, 300))], background=background)
    mid_box, corner_box = ink_bbox(middle, [GREY, colour]), ink_bbox(corner, [GREY, colour])
    assert corner_box[2] - corner_box[0] == mid_box[2] - mid_box[0]
    assert corner_box[2] < 383


def test_overlong_name_is_shortened_to_fit() -> None:
    image = draw_plan([PlannedObject("very " * 40 + "long", Box(0, 500, 1000, 900))], 128)
    left, _, right, _ = ink_bbox(image, [WHITE, object_color("very " * 40 + "long")])
    assert left > 0 and right < 127


# --- over an image -------------------------------------------------------------


@pytest.fixture
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, size=(300, 500, 3), dtype=np.uint8), "RGB")


def test_overlay_keeps_the_background_size(photo: Image.Image) -> None:
    image = draw_plan([VASE], 64, background=photo)
    assert image.size == photo.size == (500, 300)
    assert image.mode == "RGB"


def test_overlay_leaves_far_pixels_and_the_original_untouched(photo: Image.Image) -> None:
    original = np.asarray(photo).copy()
    obj = PlannedObject("cat", Box(100, 100, 300, 300))  # pixels 50..149 across, 30..89 down
    image = draw_plan_over_image(photo, [obj])
    drawn = np.asarray(image)
    assert pixel(image, 50, 60) == object_color("cat")
    assert np.array_equal(drawn[:, 200:], original[:, 200:])
    assert np.array_equal(drawn[120:], original[120:])
    assert np.array_equal(np.asarray(photo), original)


def test_overlay_accepts_non_rgb_images() -> None:
    image = draw_plan_over_image(Image.new("L", (200, 100), 40), [VASE])
    assert image.mode == "RGB" and image.size == (200, 100)
    assert pixel(image, 199, 99) == (40, 40, 40)
