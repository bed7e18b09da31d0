"""Planned boxes against found boxes: one-to-one matching and the judge's coordinate frames."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..chain import GRID, Box

__all__ = ["judge_box_to_grid", "match_boxes"]


def match_boxes(first: Sequence[Box], second: Sequence[Box]) -> list[tuple[int, int, float]]:
    """A one-to-one matching of maximum total IoU, as (index in first, index in second, IoU).

    Two planned "dog"s cannot both claim the one dog the judge found; the Hungarian algorithm
    (scipy) picks the pairing with the largest total overlap.
    """
    if not first or not second:
        return []
    ious = np.array([[a.iou(b) for b in second] for a in first])
    rows, cols = linear_sum_assignment(ious, maximize=True)
    return [(int(i), int(j), float(ious[i, j])) for i, j in zip(rows, cols)]


def judge_box_to_grid(box: Sequence[float], box_format: str, image_size: tuple[int, int]) -> Box | None:
    """A judge's box as a Box on the chain's 0..1000 grid, or None if it covers no area.

    ``pixels``: absolute pixels of the ``image_size`` image the judge saw (Qwen2.5-VL);
    ``relative_1000``: already on a 0..1000 grid; ``relative_1``: fractions of the sides.
    Corners are ordered and clamped to the image.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if box_format == "pixels":
        width, height = image_size
        sx, sy = GRID / width, GRID / height
    elif box_format == "relative_1000":
        sx = sy = 1.0
    elif box_format == "relative_1":
        sx = sy = float(GRID)
    else:
        raise ValueError(f"unknown box format {box_format!r}")
    xs = sorted(min(max(round(v * sx), 0), GRID) for v in (x1, x2))
    ys = sorted(min(max(round(v * sy), 0), GRID) for v in (y1, y2))
    if xs[0] == xs[1] or ys[0] == ys[1]:
        return None
    return Box(xs[0], ys[0], xs[1], ys[1])
