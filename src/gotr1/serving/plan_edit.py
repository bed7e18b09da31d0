"""Editing a reasoning chain's plan as a table, the way the demo shows it.

A chain is free text with tagged objects in between. The demo shows its objects as rows (name and the
box's corners on the 0..1000 grid) and lets people change them; `apply_rows` writes the rows back into
the chain in place, keeping every word of free text. Cells are written into the chain as typed, so a bad
edit (a word for a number, a box outside the grid) becomes a chain the validator reports on, exactly as
if the model had written it: the problems are shown, nothing raises.

The table shows a box as it is written, not as the parser repairs it: a corner typed as "abc" or 1500 stays
"abc" or 1500 in its cell (not a blank row, not 1000), and `cell_problems` says which cells are wrong and why,
so the page can mark those cells.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..chain import BEGIN_OF_IMAGE, BOX_END, BOX_START, GRID, OBJ_END, OBJ_START, PlannedObject, parse_chain

PLAN_COLUMNS = ("name", "x1", "y1", "x2", "y2")

_TAGS = (OBJ_START, OBJ_END, BOX_START, BOX_END, BEGIN_OF_IMAGE)
_NO_TAG = "(?:(?!" + "|".join(re.escape(t) for t in _TAGS) + ").)*?"
# An object and the box right after it, as the parser pairs them (contents hold no tag).
_OBJECT_WITH_BOX = re.compile(
    f"{re.escape(OBJ_START)}({_NO_TAG}){re.escape(OBJ_END)}(?:\\s*{re.escape(BOX_START)}({_NO_TAG}){re.escape(BOX_END)})?",
    re.DOTALL,
)
# A box's text as typed: two (x,y) pairs of anything without commas or parentheses.
_CORNERS = re.compile(r"\s*\(([^,()]*),([^,()]*)\)\s*,\s*\(([^,()]*),([^,()]*)\)\s*")
_WHOLE_NUMBER = re.compile(r"[-+]?\d+", re.ASCII)


def _written_boxes(chain: str, objects: Sequence[PlannedObject]) -> list[list[str] | None]:
    """Each parsed object's four corners as written in `chain` (None: no box, or one that is not four values).

    The parser clamps, reorders or drops a bad box; the table shows what was typed. Object i of the scan is
    object i of the parse when their names agree (the parser drops nameless objects, as the scan does);
    otherwise (unclosed or stray tags confuse the pairing) the parsed boxes are used.
    """
    body = chain.split(BEGIN_OF_IMAGE, 1)[0]
    found = [(m.group(1).strip(), m.group(2)) for m in _OBJECT_WITH_BOX.finditer(body) if m.group(1).strip()]
    if [name for name, _ in found] != [obj.name for obj in objects]:
        return [_corners(obj) for obj in objects]
    written = []
    for (_, box), obj in zip(found, objects):
        corners = _CORNERS.fullmatch(box) if box is not None else None
        written.append([c.strip() for c in corners.groups()] if corners else _corners(obj))
    return written


def _corners(obj: PlannedObject) -> list[str] | None:
    box = obj.box
    return None if box is None else [str(v) for v in (box.x1, box.y1, box.x2, box.y2)]


def plan_rows(chain: str) -> list[list[str]]:
    """The chain's objects as table rows, boxes as written; a missing box gives empty corner cells."""
    objects = parse_chain(chain).objects
    return [[obj.name, *(corners or ["", "", "", ""])] for obj, corners in zip(objects, _written_boxes(chain, objects))]


def cell_problems(rows: Sequence[Sequence]) -> list[list[str]]:
    """For each cell of `rows` (name, x1, y1, x2, y2), what is wrong with it ("" when nothing is).

    A name must not be empty; a corner must be a whole number on the 0..GRID grid, and x2 right of x1, y2
    below y1 (both corners of a pair are marked). A row with no corners at all is an object without a box,
    which is allowed (the validator mentions it); a blank row is skipped by `apply_rows` and marked nowhere.
    """
    marks = []
    for row in rows:
        cells = [_cell(c) for c in ([*row, "", "", "", "", ""])[:5]]
        if not any(cells):
            marks.append([""] * len(row))
            continue
        name, corners = cells[0], cells[1:]
        out = ["" if name else "empty name", "", "", "", ""]
        values: list[int | None] = [None] * 4
        if any(corners):
            for i, text in enumerate(corners):
                column = PLAN_COLUMNS[i + 1]
                if not text:
                    out[i + 1] = f"{column} is empty"
                elif not _WHOLE_NUMBER.fullmatch(text):
                    out[i + 1] = f"{column} {text!r} is not a whole number"
                elif not 0 <= int(text) <= GRID:
                    out[i + 1] = f"{column} {text} is off the 0..{GRID} grid"
                else:
                    values[i] = int(text)
            for low, high, axis in ((0, 2, "x"), (1, 3, "y")):
                if values[low] is not None and values[high] is not None and values[high] <= values[low]:
                    why = f"{axis}2 must be greater than {axis}1"
                    out[low + 1] = out[low + 1] or why
                    out[high + 1] = out[high + 1] or why
        marks.append([*out, *[""] * (len(row) - 5)][: len(row)])
    return marks


def _cell(value) -> str:
    """A table cell as text: whole floats lose their '.0' (tables often hand numbers back as floats)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _tagged(row: Sequence) -> str:
    name, *corners = ([*row, "", "", "", ""])[:5]
    cells = [_cell(c) for c in corners]
    text = f"{OBJ_START}{_cell(name)}{OBJ_END}"
    if not any(cells):
        return text
    return f"{text} {BOX_START}({cells[0]},{cells[1]}),({cells[2]},{cells[3]}){BOX_END}"


def _is_blank(row: Sequence) -> bool:
    return all(_cell(c) == "" for c in row)


def apply_rows(chain: str, rows: Sequence[Sequence]) -> str:
    """`chain` with its i-th object replaced by row i.

    Objects beyond the rows are removed; rows beyond the objects are appended after the last object (or
    after the text), joined with ", ". Blank rows are skipped. Free text is kept as it was.
    """
    rows = [row for row in rows if not _is_blank(row)]
    parsed = parse_chain(chain)
    out: list[str] = []
    index = 0
    last_object_end = None
    for segment in parsed.segments:
        if isinstance(segment, PlannedObject):
            if index < len(rows):
                out.append(_tagged(rows[index]))
                last_object_end = len(out)
            index += 1
        else:
            out.append(segment)
    extra = [_tagged(row) for row in rows[index:]]
    if extra:
        insert_at = last_object_end if last_object_end is not None else len(out)
        joined = ", ".join(extra)
        before = "".join(out[:insert_at])
        prefix = ", " if before.strip() else ""
        out.insert(insert_at, prefix + joined)
    return "".join(out)
