"""Editing a reasoning chain's plan as a table, the way the demo shows it.

A chain is free text with tagged objects in between. The demo shows its objects as rows (name and the
box's corners on the 0..1000 grid) and lets people change them; `apply_rows` writes the rows back into
the chain in place, keeping every word of free text. Cells are written into the chain as typed, so a bad
edit (a word for a number, a box outside the grid) becomes a chain the validator reports on, exactly as
if the model had written it: the problems are shown, nothing raises.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..chain import BOX_END, BOX_START, OBJ_END, OBJ_START, PlannedObject, parse_chain

PLAN_COLUMNS = ("name", "x1", "y1", "x2", "y2")


def plan_rows(chain: str) -> list[list[str]]:
    """The chain's objects as table rows; a missing box gives empty corner cells."""
    rows = []
    for obj in parse_chain(chain).objects:
        corners = (
            ["", "", "", ""] if obj.box is None else [str(v) for v in (obj.box.x1, obj.box.y1, obj.box.x2, obj.box.y2)]
        )
        rows.append([obj.name, *corners])
    return rows


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
