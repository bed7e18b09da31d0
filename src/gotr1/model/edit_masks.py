"""Where an edit may change the image: token masks from an edited plan, from a new plan chosen for a new prompt,
or from a mask image.

Image tokens are a `side x side` grid over the picture, generated row by row; a box on the chain's 0..1000 grid
covers the cells it overlaps. A plan edit names what it changes (the objects that moved, were resized, renamed or
appeared or vanished), so its mask is the cells under those objects' old and new boxes, dilated by a margin: the
model sees the tokens before a masked cell but not the forced ones after it, and a margin of free cells lets the
sampled region blend into what follows it. Every other cell keeps the source's token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..chain import GRID, Box, PlannedObject, parse_chain

DEFAULT_EDIT_MARGIN = 2  # cells re-sampled around a changed box (docs/editing.md: the shapes-edit sweep)


def box_cells(box: Box, side: int) -> torch.Tensor:
    """[side, side] bool: the token cells a box overlaps (a box touching a cell's edge does not take it)."""
    box = box.ordered().clamped()
    cell = GRID / side
    mask = torch.zeros(side, side, dtype=torch.bool)
    c1, c2 = int(box.x1 // cell), int(-(-box.x2 // cell))  # first cell, one past the last (ceil)
    r1, r2 = int(box.y1 // cell), int(-(-box.y2 // cell))
    mask[r1 : max(r2, r1 + 1), c1 : max(c2, c1 + 1)] = True
    return mask


def dilate(mask: torch.Tensor, margin: int) -> torch.Tensor:
    """[side, side] bool grown by `margin` cells in every direction (a square neighbourhood)."""
    if margin <= 0 or not bool(mask.any()):
        return mask.clone()
    grown = torch.nn.functional.max_pool2d(mask[None, None].float(), 2 * margin + 1, stride=1, padding=margin)
    return grown[0, 0].bool()


def box_list(box: Box | None) -> list[int] | None:
    """A box as JSON: [x1, y1, x2, y2] on the 0..1000 grid (None stays None)."""
    return None if box is None else [box.x1, box.y1, box.x2, box.y2]


def snapped_record(pairs) -> list[dict]:
    """(typed, drawn) box pairs as JSON, as every edit's record lists them."""
    return [{"typed": box_list(typed), "drawn": box_list(drawn)} for typed, drawn in pairs]


@dataclass(frozen=True)
class ObjectChange:
    """One object an edit touches: how, and its boxes before and after (None where it has none)."""

    name: str
    change: str  # moved | resized | renamed | added | removed
    before: Box | None
    after: Box | None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "change": self.change,
            "before": box_list(self.before),
            "after": box_list(self.after),
        }


def match_objects(old: Sequence[PlannedObject], new: Sequence[PlannedObject]) -> list[tuple[int | None, int | None]]:
    """Pairs (old index, new index) of the same object: by name first (in order of best box IoU when a name is
    there more than once), then what is left by box IoU; unmatched objects pair with None."""
    pairs, old_left, new_left = [], set(range(len(old))), set(range(len(new)))

    def iou(i, j):
        a, b = old[i].box, new[j].box
        return a.iou(b) if a is not None and b is not None else 0.0

    for same_name in (True, False):
        candidates = sorted(
            ((iou(i, j), i, j) for i in old_left for j in new_left if (old[i].name == new[j].name) == same_name),
            key=lambda t: (-t[0], t[1], t[2]),
        )
        for score, i, j in candidates:
            if i in old_left and j in new_left and (same_name or score > 0):
                pairs.append((i, j))
                old_left.discard(i)
                new_left.discard(j)
    pairs += [(i, None) for i in sorted(old_left)] + [(None, j) for j in sorted(new_left)]
    return sorted(pairs, key=lambda p: (p[0] if p[0] is not None else len(old), p[1] if p[1] is not None else -1))


def _paired(old_chain: str, new_chain: str) -> list[tuple[PlannedObject | None, PlannedObject | None]]:
    """The two plans' objects, matched (`match_objects`): (before, after), None where one side has none."""
    old, new = parse_chain(old_chain).objects, parse_chain(new_chain).objects
    return [(old[i] if i is not None else None, new[j] if j is not None else None) for i, j in match_objects(old, new)]


def _change(before: PlannedObject | None, after: PlannedObject | None) -> ObjectChange | None:
    """How a matched object changed; None when it stayed as it was (same name, same box)."""
    if before is None:
        return ObjectChange(after.name, "added", None, after.box)
    if after is None:
        return ObjectChange(before.name, "removed", before.box, None)
    if before.name != after.name:
        return ObjectChange(after.name, "renamed", before.box, after.box)
    if before.box == after.box:
        return None
    a, b = before.box, after.box
    same_size = a is not None and b is not None and (a.width, a.height) == (b.width, b.height)
    return ObjectChange(after.name, "moved" if same_size else "resized", a, b)


def plan_changes(old_chain: str, new_chain: str) -> list[ObjectChange]:
    """What an edited plan changes, object by object (objects left as they were are not listed)."""
    changes = [_change(before, after) for before, after in _paired(old_chain, new_chain)]
    return [change for change in changes if change is not None]


def plan_edit_mask(old_chain: str, new_chain: str, side: int, margin: int = DEFAULT_EDIT_MARGIN) -> torch.Tensor:
    """[side * side] bool, row-major like the image tokens: the cells under the old and new boxes of every object
    the edit changes, grown by `margin` cells, except into the cells of objects the edit leaves as they were (the
    margin blends the new region into its surroundings; it must not redraw what the edit did not name). Empty
    when the plans place the same objects in the same boxes."""
    changed = torch.zeros(side, side, dtype=torch.bool)
    kept = torch.zeros(side, side, dtype=torch.bool)
    for before, after in _paired(old_chain, new_chain):
        change = _change(before, after)
        boxes = (before.box,) if change is None else (change.before, change.after)
        for box in (b for b in boxes if b is not None):
            if change is None:
                kept |= box_cells(box, side)
            else:
                changed |= box_cells(box, side)
    return (changed | (dilate(changed, margin) & ~kept)).reshape(-1)


def mask_from_image(mask_image: Image.Image, side: int, size: tuple[int, int]) -> torch.Tensor:
    """[side * side] bool from a mask picture in OpenAI's convention (fully transparent pixels may change): a
    cell is free when any of its pixels is. The mask must be the source image's size."""
    if mask_image.size != size:
        raise ValueError(f"the mask is {mask_image.size[0]}x{mask_image.size[1]}, the image {size[0]}x{size[1]}")
    if mask_image.mode not in ("RGBA", "LA", "PA") and "transparency" not in mask_image.info:
        raise ValueError("the mask has no alpha channel: its fully transparent pixels mark what may change")
    alpha = np.asarray(mask_image.convert("RGBA"))[..., 3] == 0
    h, w = alpha.shape
    rows = np.minimum(np.arange(h) * side // h, side - 1)
    cols = np.minimum(np.arange(w) * side // w, side - 1)
    free = np.zeros((side, side), dtype=bool)
    np.logical_or.at(free, (rows[:, None].repeat(w, 1), cols[None, :].repeat(h, 0)), alpha)
    return torch.from_numpy(free).reshape(-1)


def keep_score(old_chain: str, candidate_chain: str) -> float:
    """How much of the old plan a new chain keeps in place: the summed box IoU of the objects it matches by name
    (a prompt edit keeps the candidate that moves the fewest unchanged objects)."""
    old, new = parse_chain(old_chain).objects, parse_chain(candidate_chain).objects
    total = 0.0
    for i, j in match_objects(old, new):
        if i is not None and j is not None and old[i].name == new[j].name and old[i].box and new[j].box:
            total += old[i].box.iou(new[j].box)
    return total
