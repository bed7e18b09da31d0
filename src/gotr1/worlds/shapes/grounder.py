"""The shapes world's exact grounder: objects, their colours, shapes, sizes and boxes, from pixels alone.

It stands in for the judge MLLM's grounding: given an image and an object name it returns candidate
boxes, so rewards and evaluation can be exact here and swap in a judge later. Scenes are drawn in
exact palette colours on white, so colour segmentation plus connected components recovers them.
Generated images are not exact, so each pixel is read as a palette colour mixed with the white
background (blur and soft edges stay on that line), and whatever fits no colour, is too small, or
has no recognisable shape is left out or marked unclassified instead of being guessed at.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage

from ...chain import Box
from ...rewards.matching import match_boxes
from .grammar import ShapesGrammar
from .render import DEFAULT_IMAGE_SIZE, SIZE_RANGES, try_layout_scene
from .vocabulary import BACKGROUND, COLORS, PLURALS, SHAPES, SIZES, object_name

__all__ = [
    "GroundedObject",
    "ImageLike",
    "NameWords",
    "OracleGrounder",
    "SIZE_THRESHOLD",
    "grounder_accuracy",
    "ground_objects",
    "match_boxes",
    "read_name",
    "size_class",
]

ImageLike = Image.Image | NDArray[np.generic]

# Side (fraction of the image side) between the renderer's small and large ranges.
SIZE_THRESHOLD = (SIZE_RANGES["small"][1] + SIZE_RANGES["large"][0]) / 2
# The smallest object the renderer draws (a small triangle) covers about 1.4% of the image.
MIN_OBJECT_FRACTION = 0.004
# Largest RGB distance from a pixel to the segment from white to a palette colour for the pixel to
# count as that colour; the nearest two palette colours (cyan, blue) are about 120 apart, and
# a uniform mid-grey must stay background.
MAX_COLOR_DISTANCE = 60.0
# A pixel belongs to an object when at least half of it is the object's colour (and not background).
MIN_COVERAGE = 0.5
# The renderer draws every shape in a square box; a much longer box is not one of its shapes.
MAX_ELONGATION = 1.5
# Largest distance of a mask's row-width profile to a shape's ideal profile; ideal profiles are 0.5+ apart.
MAX_PROFILE_DISTANCE = 0.3


def size_class(side_fraction: float) -> str:
    """'small' or 'large' for an object whose longer side is ``side_fraction`` of the image side."""
    return "small" if side_fraction < SIZE_THRESHOLD else "large"


@dataclass(frozen=True)
class GroundedObject:
    """An object found in an image; ``shape`` is None when its mask resembles no shape."""

    color: str
    shape: str | None
    box: Box
    pixels: int
    size: str

    @property
    def name(self) -> str:
        return object_name(self.color, self.shape or "shape", self.size)


# --- names -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameWords:
    """The world's words in an object name; a word kind that is absent or contradicted is None."""

    size: str | None
    color: str | None
    shape: str | None

    @property
    def pair(self) -> tuple[str | None, str | None]:
        return (self.color, self.shape)


_SHAPE_WORDS = {**{shape: shape for shape in SHAPES}, **{p: s for s, p in PLURALS.items()}}


def read_name(name: str) -> NameWords:
    """Size, colour and shape words of a name such as 'small red circle', by exact word match.

    A name that says two different colours (or shapes, or sizes) says none: 'red blue circle' has no
    colour, so it matches no object of either colour.
    """
    words = re.findall(r"[a-z]+", name.lower())

    def only(found: list[str]) -> str | None:
        return found[0] if len(set(found)) == 1 else None

    return NameWords(
        size=only([w for w in words if w in SIZES]),
        color=only([w for w in words if w in COLORS]),
        shape=only([_SHAPE_WORDS[w] for w in words if w in _SHAPE_WORDS]),
    )


# --- pixels to objects -----------------------------------------------------------------------------

_WHITE = np.array(BACKGROUND, dtype=np.float32)
_PALETTE = np.array(list(COLORS.values()), dtype=np.float32)
_COLOR_NAMES = tuple(COLORS)
_NEIGHBOURS = np.ones((3, 3), dtype=bool)  # 8-connectivity


def _as_rgb(image: ImageLike) -> NDArray[np.float32]:
    """An (H, W, 3) float array of RGB values in 0..255; arrays may be (H, W), (H, W, 3) or (H, W, 4)."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"expected an RGB image, got an array of shape {array.shape}")
    return array[..., :3].astype(np.float32)


def _segment_colors(rgb: NDArray[np.float32]) -> NDArray[np.intp]:
    """Per pixel the index of its palette colour, or -1 for background.

    Each pixel is projected onto the segment from white to each palette colour: the projection's
    position is how much of the pixel the colour covers, its distance how far the pixel is off
    that colour. A blurred red edge is a red-white mix and stays red, where plain nearest-colour
    matching would call it orange.
    """
    direction = _PALETTE - _WHITE  # (K, 3)
    offset = rgb[..., None, :] - _WHITE  # (H, W, 1, 3)
    coverage = np.clip((offset * direction).sum(-1) / (direction**2).sum(-1), 0.0, 1.0)  # (H, W, K)
    distance = np.linalg.norm(offset - coverage[..., None] * direction, axis=-1)  # (H, W, K)
    nearest = distance.argmin(axis=-1)
    best_distance = np.take_along_axis(distance, nearest[..., None], axis=-1)[..., 0]
    best_coverage = np.take_along_axis(coverage, nearest[..., None], axis=-1)[..., 0]
    is_object = (best_distance <= MAX_COLOR_DISTANCE) & (best_coverage >= MIN_COVERAGE)
    return np.where(is_object, nearest, -1)


def _band_profile(width_of_row: Callable[[NDArray[np.float64]], NDArray[np.float64]]) -> NDArray[np.float64]:
    rows = (np.arange(3000) + 0.5) / 3000
    return np.array([band.mean() for band in np.array_split(width_of_row(rows), 3)])


# Mean row width, as a fraction of the box width, in the top, middle and bottom third of the box of
# an ideal shape. Their mean is the fill ratio: square 1, circle pi/4, triangle and diamond 1/2; the
# bands tell a triangle (widest at the bottom) from a diamond (widest in the middle).
_PROFILES: dict[str, NDArray[np.float64]] = {
    "square": _band_profile(np.ones_like),
    "circle": _band_profile(lambda y: 2 * np.sqrt(y * (1 - y))),
    "triangle": _band_profile(lambda y: y),
    "diamond": _band_profile(lambda y: 1 - np.abs(2 * y - 1)),
}


def _classify_shape(mask: NDArray[np.bool_]) -> str | None:
    """The shape whose ideal row-width profile is nearest the mask's; None when none is near."""
    height, width = mask.shape
    if height < 3 or max(height, width) > MAX_ELONGATION * min(height, width):
        return None  # too few rows for three bands, or not drawn in a square
    row_widths = mask.sum(axis=1) / width
    profile = np.array([band.mean() for band in np.array_split(row_widths, 3)])
    distances = {shape: float(np.linalg.norm(profile - ideal)) for shape, ideal in _PROFILES.items()}
    shape = min(distances, key=distances.__getitem__)
    return shape if distances[shape] <= MAX_PROFILE_DISTANCE else None


def ground_objects(image: ImageLike, *, min_pixels: int | None = None) -> list[GroundedObject]:
    """Every palette-coloured object in ``image``, sorted top to bottom, then left to right.

    Objects are 8-connected regions of one colour, holes filled (noise punches holes). A region
    whose body, what survives a 3x3 opening, has fewer than ``min_pixels`` pixels (default 0.4% of
    the image) is a speck or a noise cluster and is dropped. Boxes are the regions' pixel edges on
    the grid, as ``PlacedObject.grid_box`` writes a drawn shape's box.
    """
    rgb = _as_rgb(image)
    height, width = rgb.shape[:2]
    if height == 0 or width == 0:
        return []
    if min_pixels is None:
        min_pixels = max(1, round(MIN_OBJECT_FRACTION * height * width))
    labels = _segment_colors(rgb)
    found: list[tuple[tuple[int, int], GroundedObject]] = []
    for index, color in enumerate(_COLOR_NAMES):
        components, _ = ndimage.label(labels == index, structure=_NEIGHBOURS)
        for label, region in enumerate(ndimage.find_objects(components), start=1):
            if region is None:
                continue
            mask = ndimage.binary_fill_holes(components[region] == label)
            # Noise strings stray pixels together; an object has a body that survives an opening.
            if ndimage.binary_opening(mask, structure=_NEIGHBOURS).sum() < min_pixels:
                continue
            rows, cols = region
            x1, y1, x2, y2 = cols.start, rows.start, cols.stop, rows.stop
            side = max((x2 - x1) / width, (y2 - y1) / height)
            obj = GroundedObject(
                color=color,
                shape=_classify_shape(mask),
                box=Box.from_pixels(x1, y1, x2, y2, width, height),
                pixels=int(mask.sum()),
                size=size_class(side),
            )
            found.append(((y1, x1), obj))
    found.sort(key=lambda item: item[0])
    return [obj for _, obj in found]


class OracleGrounder:
    """Grounding by exact pixel reading, with the interface a judge-based grounder will have."""

    def __init__(self, *, min_pixels: int | None = None) -> None:
        self.min_pixels = min_pixels

    def ground(self, image: ImageLike) -> list[GroundedObject]:
        """Every object in the image."""
        return ground_objects(image, min_pixels=self.min_pixels)

    def locate(self, image: ImageLike, name: str) -> list[Box]:
        """Boxes of the objects whose colour and shape are the ones ``name`` says.

        A size word is not required to match: R_RI asks whether the planned object is where the
        plan put it, and the size is judged by R_PI. A name without both a colour and a shape
        (or with contradicting ones) cannot be checked and locates nothing.
        """
        words = read_name(name)
        if words.color is None or words.shape is None:
            return []
        return [obj.box for obj in self.ground(image) if (obj.color, obj.shape) == words.pair]


# --- matching and accuracy -------------------------------------------------------------------------


def grounder_accuracy(n_scenes: int = 500, seed: int = 0, *, image_size: int = DEFAULT_IMAGE_SIZE) -> dict[str, float]:
    """How well :func:`ground_objects` recovers rendered training scenes.

    True and grounded objects are matched one to one by IoU; a true object is recalled when its
    match has IoU >= 0.5 and the right colour and shape. ``box_recall`` ignores labels,
    ``label_accuracy`` is the share of box matches with the right colour and shape, ``precision``
    the share of grounded objects that are correct matches, ``exact_boxes`` the share of true
    objects whose box is found exactly.
    """
    rng = random.Random(seed)
    counts = dict.fromkeys(("boxes", "labels", "sizes", "exact", "objects", "grounded"), 0)
    iou_total = 0.0
    scenes = skipped = 0
    for prompt in ShapesGrammar(seed).prompts("train", n_scenes):
        scene = try_layout_scene(prompt.meaning, rng, image_size)
        if scene is None:
            skipped += 1
            continue
        scenes += 1
        grounded = ground_objects(scene.image())
        truth = scene.objects
        counts["objects"] += len(truth)
        counts["grounded"] += len(grounded)
        true_boxes = [obj.grid_box(image_size) for obj in truth]
        for i, j, iou in match_boxes(true_boxes, [obj.box for obj in grounded]):
            iou_total += iou
            if iou < 0.5:
                continue
            counts["boxes"] += 1
            counts["exact"] += grounded[j].box == true_boxes[i]
            if (grounded[j].color, grounded[j].shape) == (truth[i].color, truth[i].shape):
                counts["labels"] += 1
                counts["sizes"] += grounded[j].size == truth[i].size

    def share(part: float, whole: int) -> float:
        return part / whole if whole else 0.0

    return {
        "scenes": scenes,
        "skipped_layouts": skipped,
        "objects": counts["objects"],
        "grounded": counts["grounded"],
        "recall": share(counts["labels"], counts["objects"]),
        "box_recall": share(counts["boxes"], counts["objects"]),
        "label_accuracy": share(counts["labels"], counts["boxes"]),
        "size_accuracy": share(counts["sizes"], counts["labels"]),
        "precision": share(counts["labels"], counts["grounded"]),
        "mean_iou": share(iou_total, counts["objects"]),
        "exact_boxes": share(counts["exact"], counts["objects"]),
    }


if __name__ == "__main__":
    for key, value in grounder_accuracy().items():
        print(f"{key:>16}: {value:.4f}" if isinstance(value, float) else f"{key:>16}: {value}")
