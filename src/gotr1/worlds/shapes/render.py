"""Scenes of the shapes world: a layout that satisfies a meaning, its pixels, and its true GoT chain.

Shapes are drawn without anti-aliasing in exact palette colours on white, so the oracle grounder can
recover them from pixels; positions and sizes vary so the model must read its plan to place them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

from ...chain import BOX_END, BOX_START, OBJ_END, OBJ_START, Box
from .grammar import RELATION_PHRASES, definite_phrase, noun_phrase
from .vocabulary import BACKGROUND, COLORS, INVERSE, PLURALS, SIZES, Group, Meaning, object_name, relation_holds

DEFAULT_IMAGE_SIZE = 64
# Side of a shape as a fraction of the image side.
SIZE_RANGES = {"small": (0.17, 0.23), "large": (0.30, 0.38)}
GAP = 0.03  # minimum free space between two shapes, as a fraction of the image side


@dataclass(frozen=True)
class PlacedObject:
    color: str
    shape: str
    size: str
    group: int
    box: tuple[int, int, int, int]  # pixels, x2/y2 exclusive

    @property
    def name(self) -> str:
        return object_name(self.color, self.shape, self.size)

    def grid_box(self, image_size: int) -> Box:
        return Box.from_pixels(*self.box, image_size, image_size)


@dataclass
class Scene:
    meaning: Meaning
    objects: list[PlacedObject]
    image_size: int = DEFAULT_IMAGE_SIZE

    def image(self) -> Image.Image:
        return draw_objects(self.objects, self.image_size)

    def chain(self) -> str:
        """The scene's ground-truth reasoning chain in GoT-R1's format (without <begin_of_image>)."""
        return write_chain(self)


class LayoutError(RuntimeError):
    """No layout satisfying the meaning was found within the allowed tries."""


def boxes_overlap(a, b, gap: int) -> bool:
    """Do pixel boxes a and b (x1, y1, x2, y2) come closer than `gap` pixels?"""
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def _constraints(meaning: Meaning, group: int, placed: list[PlacedObject]):
    """(relation seen from `group`, placed object) pairs that constrain where `group` may go."""
    for rel in meaning.relations:
        for other in placed:
            if rel.subject == group and other.group == rel.object:
                yield rel.relation, other
            elif rel.object == group and other.group == rel.subject:
                yield INVERSE[rel.relation], other


def _interval(lo: float, hi: float, rng: random.Random) -> int | None:
    lo, hi = math.ceil(lo), math.floor(hi)
    return rng.randint(lo, hi) if lo <= hi else None


def _place(side: int, limit: int, constraints, rng: random.Random) -> tuple[int, int] | None:
    """Top-left corner for a square of `side` that meets the relations to already placed objects.

    The coordinate along each relation's axis is drawn from the range the relation allows; the
    other coordinate is then kept within the along-offset so the relation's axis dominates.
    """
    half = side / 2
    x_lo, x_hi, y_lo, y_hi = 0.0, float(limit - side), 0.0, float(limit - side)
    for relation, b in constraints:
        bx, by = (b.box[0] + b.box[2]) / 2, (b.box[1] + b.box[3]) / 2
        margin = 0.1 * (side + (b.box[2] - b.box[0])) + 0.5
        if relation == "left of":
            x_hi = min(x_hi, bx - margin - half)
        elif relation == "right of":
            x_lo = max(x_lo, bx + margin - half)
        elif relation == "above":
            y_hi = min(y_hi, by - margin - half)
        else:
            y_lo = max(y_lo, by + margin - half)
    x = _interval(x_lo, x_hi, rng)
    if x is None:
        return None
    for relation, b in constraints:  # horizontal relations: vertical offset within the horizontal one
        if relation in ("left of", "right of"):
            bx, by = (b.box[0] + b.box[2]) / 2, (b.box[1] + b.box[3]) / 2
            reach = abs(bx - (x + half))
            y_lo, y_hi = max(y_lo, by - reach - half), min(y_hi, by + reach - half)
    y = _interval(y_lo, y_hi, rng)
    return None if y is None else (x, y)


def layout_scene(
    meaning: Meaning, rng: random.Random, image_size: int = DEFAULT_IMAGE_SIZE, max_tries: int = 2000
) -> Scene:
    """Random sizes and positions satisfying every relation, with no two shapes touching."""
    gap = max(1, round(GAP * image_size))
    # Relation anchors first, so the groups placed later can be drawn from the ranges they allow.
    anchors = {r.object for r in meaning.relations}
    order = sorted(range(len(meaning.groups)), key=lambda g: (g not in anchors, g))
    for _ in range(max_tries):
        placed: list[PlacedObject] = []
        for gi in order:
            group = meaning.groups[gi]
            for _ in range(group.count):
                size = group.size or rng.choice(SIZES)
                lo, hi = SIZE_RANGES[size]
                side = rng.randint(round(lo * image_size), round(hi * image_size))
                corner = _place(side, image_size, list(_constraints(meaning, gi, placed)), rng)
                if corner is None:
                    break
                box = (corner[0], corner[1], corner[0] + side, corner[1] + side)
                if any(boxes_overlap(box, p.box, gap) for p in placed):
                    break
                placed.append(PlacedObject(group.color, group.shape, size, gi, box))
            else:
                continue
            break
        else:
            if relations_hold(meaning, placed, image_size):
                placed.sort(key=lambda o: (o.group, o.box))
                return Scene(meaning, placed, image_size)
    raise LayoutError(f"no layout found for {meaning}")


def relations_hold(meaning: Meaning, objects: Sequence[PlacedObject], image_size: int) -> bool:
    """Every relation of the meaning holds between every pair of its groups' objects, checked on the 0..1000 grid
    boxes the chain states and the grounder reads back."""
    grid = {id(o): _corners(o.grid_box(image_size)) for o in objects}
    return all(
        relation_holds(r.relation, grid[id(a)], grid[id(b)])
        for r in meaning.relations
        for a in objects
        if a.group == r.subject
        for b in objects
        if b.group == r.object
    )


def _corners(box: Box) -> tuple[int, int, int, int]:
    return (box.x1, box.y1, box.x2, box.y2)


def try_layout_scene(meaning: Meaning, rng: random.Random, image_size: int = DEFAULT_IMAGE_SIZE) -> Scene | None:
    """`layout_scene`, or None for the rare meaning no random layout satisfied (callers skip it)."""
    try:
        return layout_scene(meaning, rng, image_size)
    except LayoutError:
        return None


def _shape_points(shape: str, box: tuple[int, int, int, int]):
    x1, y1, x2, y2 = box[0], box[1], box[2] - 1, box[3] - 1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    if shape == "triangle":
        return [(cx, y1), (x2, y2), (x1, y2)]
    if shape == "diamond":
        return [(cx, y1), (x2, cy), (cx, y2), (x1, cy)]
    raise ValueError(shape)


def draw_objects(objects: list[PlacedObject], image_size: int) -> Image.Image:
    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in objects:
        fill = COLORS[obj.color]
        x1, y1, x2, y2 = obj.box
        if obj.shape == "circle":
            draw.ellipse((x1, y1, x2 - 1, y2 - 1), fill=fill)
        elif obj.shape == "square":
            draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=fill)
        else:
            draw.polygon(_shape_points(obj.shape, obj.box), fill=fill)
    return image


def _mention(obj: PlacedObject, image_size: int) -> str:
    b = obj.grid_box(image_size)
    return f"{OBJ_START}{obj.name}{OBJ_END} {BOX_START}({b.x1},{b.y1}),({b.x2},{b.y2}){BOX_END}"


def _group_text(scene: Scene, gi: int) -> str:
    members = [o for o in scene.objects if o.group == gi]
    mentions = [_mention(o, scene.image_size) for o in members]
    if len(mentions) == 1:
        return mentions[0]
    group = scene.meaning.groups[gi]
    head = f"{len(members)} {group.color} {PLURALS[group.shape]}"
    return f"{head} " + ", ".join(mentions[:-1]) + " and " + mentions[-1]


def write_chain(scene: Scene) -> str:
    """Objects with their boxes, embedded in a short sentence that restates the relations."""
    meaning = scene.meaning
    texts = [_group_text(scene, gi) for gi in range(len(meaning.groups))]
    if not meaning.relations:
        body = texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]
        return f"The image shows {body} on a white background."
    first = meaning.relations[0]
    sentence = f"The image shows {texts[first.subject]} {RELATION_PHRASES[first.relation][0]} {texts[first.object]}"
    for rel in meaning.relations[1:]:
        anchor = definite_phrase(_plain(meaning.groups[rel.object]))
        sentence += f", and {texts[rel.subject]} {RELATION_PHRASES[rel.relation][0]} {anchor}"
    mentioned = {first.subject, first.object} | {r.subject for r in meaning.relations[1:]}
    rest = [texts[gi] for gi in range(len(texts)) if gi not in mentioned]
    if rest:
        sentence += ", with " + " and ".join(rest)
    return sentence + ". The background is white."


def _plain(group: Group) -> Group:
    return Group(group.color, group.shape, group.count, None)


__all__ = [
    "Scene",
    "PlacedObject",
    "LayoutError",
    "layout_scene",
    "try_layout_scene",
    "draw_objects",
    "write_chain",
    "DEFAULT_IMAGE_SIZE",
    "noun_phrase",
]
