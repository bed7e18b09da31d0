"""Tests for the shapes world's oracle grounder (gotr1.worlds.shapes.grounder)."""

from __future__ import annotations

import io
import random
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageFilter

from gotr1.chain import Box, parse_chain
from gotr1.worlds.shapes.grammar import ShapesGrammar
from gotr1.worlds.shapes.grounder import (
    SIZE_THRESHOLD,
    GroundedObject,
    NameWords,
    OracleGrounder,
    ground_objects,
    grounder_accuracy,
    match_boxes,
    read_name,
    size_class,
)
from gotr1.worlds.shapes.render import LayoutError, PlacedObject, Scene, draw_objects, layout_scene
from gotr1.worlds.shapes.vocabulary import BACKGROUND, COLORS, SHAPES

WHITE = BACKGROUND


def placed(color: str, shape: str, box: tuple[int, int, int, int], size: str = "small") -> PlacedObject:
    return PlacedObject(color, shape, size, 0, box)


def rendered_scenes(n: int, seed: int = 0) -> list[Scene]:
    rng = random.Random(seed)
    out = []
    for prompt in ShapesGrammar(seed).prompts("train", n):
        try:
            out.append(layout_scene(prompt.meaning, rng))
        except LayoutError:
            pass
    return out


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("small red circle", NameWords("small", "red", "circle")),
        ("Blue  SQUARE", NameWords(None, "blue", "square")),
        ("two large green triangles", NameWords("large", "green", "triangle")),
        ("magenta-diamond", NameWords(None, "magenta", "diamond")),
        ("red red circle", NameWords(None, "red", "circle")),
        ("red blue circle", NameWords(None, None, "circle")),
        ("small large cyan square", NameWords(None, "cyan", "square")),
        ("a circle or a square", NameWords(None, None, None)),
        ("vibrant red tulip bouquet", NameWords(None, "red", None)),
        ("", NameWords(None, None, None)),
    ],
)
def test_read_name(name: str, words: NameWords) -> None:
    assert read_name(name) == words


def test_size_class_splits_between_the_renderers_ranges() -> None:
    assert size_class(0.23) == "small"
    assert size_class(0.30) == "large"
    assert size_class(SIZE_THRESHOLD - 1e-9) == "small"
    assert size_class(SIZE_THRESHOLD) == "large"


# --- exact images ----------------------------------------------------------------------------------


def test_a_hand_made_scene_is_read_exactly() -> None:
    objects = [
        placed("red", "circle", (4, 26, 16, 38)),
        placed("blue", "square", (30, 8, 50, 28), "large"),
        placed("yellow", "triangle", (34, 40, 48, 54)),
        placed("magenta", "diamond", (2, 2, 24, 24), "large"),
    ]
    image = draw_objects(objects, 64)
    ink = (np.asarray(image) != WHITE).any(axis=-1)

    def expected(obj: PlacedObject) -> GroundedObject:
        x1, y1, x2, y2 = obj.box
        pixels = int(ink[y1:y2, x1:x2].sum())
        return GroundedObject(obj.color, obj.shape, obj.grid_box(64), pixels, obj.size)

    assert ground_objects(image) == [expected(objects[i]) for i in (3, 1, 0, 2)]  # by (y1, x1)
    assert [obj.name for obj in ground_objects(image)] == [
        "large magenta diamond",
        "large blue square",
        "small red circle",
        "small yellow triangle",
    ]


@pytest.mark.parametrize("image_size", [32, 64, 128])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_colour_and_shape_at_both_sizes(shape: str, image_size: int) -> None:
    for color in COLORS:
        for size, fraction in (("small", 0.17), ("small", 0.23), ("large", 0.30), ("large", 0.38)):
            side = round(fraction * image_size)
            box = (3, 5, 3 + side, 5 + side)
            (found,) = ground_objects(draw_objects([placed(color, shape, box, size)], image_size))
            assert (found.color, found.shape, found.size) == (color, shape, size)
            assert found.box == Box.from_pixels(*box, image_size, image_size)


def test_non_square_images_use_pixel_edges_on_the_grid() -> None:
    image = Image.new("RGB", (96, 64), WHITE)
    image.paste(draw_objects([placed("green", "square", (10, 20, 30, 40))], 64), (16, 0))
    (found,) = ground_objects(image)
    assert found.box == Box.from_pixels(26, 20, 46, 40, 96, 64)


def test_arrays_and_other_image_modes_are_accepted() -> None:
    image = draw_objects([placed("cyan", "diamond", (10, 10, 24, 24))], 64)
    expected = ground_objects(image)
    assert len(expected) == 1
    assert ground_objects(np.asarray(image)) == expected
    assert ground_objects(image.convert("RGBA")) == expected
    assert ground_objects(np.asarray(image.convert("RGBA"))) == expected
    assert ground_objects(Image.new("L", (64, 64), 255)) == []
    with pytest.raises(ValueError, match="RGB image"):
        ground_objects(np.zeros((4, 4, 2)))


def test_unrecognisable_regions_have_no_shape() -> None:
    bar = np.asarray(draw_objects([placed("red", "square", (5, 4, 45, 10))], 64))
    upside_down = np.asarray(draw_objects([placed("blue", "triangle", (30, 2, 50, 22))], 64))[::-1]
    found = ground_objects(np.minimum(bar, upside_down))  # inks never overlap; white is the max
    assert [(obj.color, obj.shape) for obj in found] == [("red", None), ("blue", None)]
    assert found[1].name == "large blue shape"


def test_specks_are_dropped() -> None:
    image = draw_objects([placed("red", "square", (10, 10, 13, 13))], 64)  # 9 pixels
    assert ground_objects(image) == []
    assert len(ground_objects(image, min_pixels=4)) == 1


def test_accuracy_on_rendered_scenes() -> None:
    accuracy = grounder_accuracy(n_scenes=200, seed=5)
    assert accuracy["scenes"] >= 190
    for key in ("recall", "box_recall", "label_accuracy", "size_accuracy", "precision"):
        assert accuracy[key] >= 0.98, (key, accuracy)
    assert accuracy["mean_iou"] >= 0.95


def test_the_grounder_finds_what_the_true_chain_plans() -> None:
    for scene in rendered_scenes(60, seed=1):
        found = ground_objects(scene.image())
        for planned in parse_chain(scene.chain()).objects:
            assert planned.box is not None
            words = read_name(planned.name)
            candidates = [g for g in found if NameWords(g.size, g.color, g.shape) == words]
            assert max(planned.box.iou(g.box) for g in candidates) >= 0.9


# --- generated-looking images ----------------------------------------------------------------------


def gaussian_noise(sigma: float) -> Callable[[Image.Image, np.random.Generator], Image.Image]:
    def apply(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        pixels = np.asarray(image, dtype=float) + rng.normal(0, sigma, (*image.size[::-1], 3))
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))

    return apply


def blur(radius: float) -> Callable[[Image.Image, np.random.Generator], Image.Image]:
    return lambda image, rng: image.filter(ImageFilter.GaussianBlur(radius))


def shifted_colours(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Every object's colour moved by up to 25 per channel, as a generator's palette drifts."""
    pixels = np.asarray(image).astype(int)
    ink = (pixels != WHITE).any(axis=-1)
    pixels[ink] += rng.integers(-25, 26, size=3)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def upscaled_jpeg(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A 4x larger JPEG, like a decoded generation saved to disk."""
    buffer = io.BytesIO()
    image.resize((256, 256), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=70)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def recovered(
    scenes: list[Scene], degrade: Callable[[Image.Image, np.random.Generator], Image.Image]
) -> tuple[float, float]:
    """Shares of true objects found (IoU >= 0.5, right colour) and also with the right shape."""
    rng = np.random.default_rng(0)
    total = found = labelled = 0
    for scene in scenes:
        grounded = ground_objects(degrade(scene.image(), rng))
        truth = scene.objects
        total += len(truth)
        boxes = [obj.grid_box(scene.image_size) for obj in truth]
        for i, j, iou in match_boxes(boxes, [obj.box for obj in grounded]):
            if iou >= 0.5 and grounded[j].color == truth[i].color:
                found += 1
                labelled += grounded[j].shape == truth[i].shape
    return found / total, labelled / total


@pytest.mark.parametrize(
    "degrade",
    [gaussian_noise(10), gaussian_noise(20), blur(0.7), shifted_colours, upscaled_jpeg],
    ids=["noise10", "noise20", "blur0.7", "shifted", "jpeg"],
)
def test_moderately_degraded_images_are_read(
    degrade: Callable[[Image.Image, np.random.Generator], Image.Image],
) -> None:
    found, labelled = recovered(rendered_scenes(40, seed=3), degrade)
    assert found >= 0.98 and labelled >= 0.95, (found, labelled)


@pytest.mark.parametrize("degrade", [gaussian_noise(30), blur(1.0)], ids=["noise30", "blur1"])
def test_heavily_degraded_images_still_give_the_objects(
    degrade: Callable[[Image.Image, np.random.Generator], Image.Image],
) -> None:
    """Heavy blur rounds a small diamond's tips off, so shapes may be misread; boxes are not."""
    found, _ = recovered(rendered_scenes(40, seed=3), degrade)
    assert found >= 0.95


def noise_images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    palette = np.array([WHITE, *COLORS.values()])
    images = []
    for _ in range(5):
        images.append(rng.integers(0, 256, (64, 64, 3)))
        images.append(np.clip(rng.normal(128, 90, (64, 64, 3)), 0, 255))
        images.append(palette[rng.integers(0, len(palette), (64, 64))])
    return images


@pytest.mark.parametrize(
    "image",
    [
        np.full((64, 64, 3), 255),
        np.zeros((64, 64, 3)),
        np.full((64, 64, 3), 128),
        *noise_images(),
        np.zeros((0, 0, 3)),
        np.full((1, 1, 3), 255),
    ],
)
def test_blank_and_pure_noise_images_have_no_objects(image: np.ndarray) -> None:
    assert ground_objects(image.astype(np.uint8)) == []
    assert OracleGrounder().locate(image.astype(np.uint8), "red circle") == []


# --- locating ------------------------------------------------------------------------------------


def test_locate_matches_colour_and_shape_but_not_size() -> None:
    image = draw_objects(
        [
            placed("red", "circle", (4, 4, 16, 16)),
            placed("red", "circle", (30, 30, 52, 52), "large"),
            placed("red", "square", (40, 4, 54, 18)),
        ],
        64,
    )
    grounder = OracleGrounder()
    circles = [Box.from_pixels(4, 4, 16, 16, 64, 64), Box.from_pixels(30, 30, 52, 52, 64, 64)]
    assert grounder.locate(image, "red circle") == circles
    assert grounder.locate(image, "large red circle") == circles
    assert grounder.locate(image, "two red circles") == circles
    assert grounder.locate(image, "blue circle") == []
    assert grounder.locate(image, "red thing") == []
    assert grounder.locate(image, "circle") == []
    assert grounder.locate(image, "") == []


def test_match_boxes_is_one_to_one_and_maximises_iou() -> None:
    a, b, c = Box(0, 0, 100, 100), Box(500, 500, 600, 600), Box(0, 0, 100, 90)
    assert match_boxes([a, b], [b, a]) == [(0, 1, 1.0), (1, 0, 1.0)]
    assert match_boxes([c, a], [a]) == [(1, 0, 1.0)]
    assert match_boxes([a], []) == []
    assert match_boxes([], [a]) == []
