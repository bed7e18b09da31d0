"""Reading scores and boxes out of a judge's free text.

Judges are asked for JSON but answer like people: inside code fences, with a sentence before it,
with single quotes, trailing commas, the score as a string ("7", "7/10") or off the scale. Every
reader here returns a value or says why there is none; "no score found" is a judge failure of the
reward (the sample's reward is missing), never a zero.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["BoxReading", "ScoreReading", "extract_json", "read_boxes", "read_score"]

_FENCE = re.compile(r"```(?:json|JSON|python)?\s*(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_SCORE_WORDS = ("score", "rating", "value")
_SCORE_IN_PROSE = re.compile(
    r"""["']?(?:score|rating)["']?\s*(?:is|of|[:=])\s*["']?(-?\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?""", re.I
)
_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*(\d+(?:\.\d+)?))?\s*$")
_BOX_KEYS = ("bbox_2d", "bbox", "box", "bounding_box", "coordinates")


def _loads(text: str) -> Any:
    """JSON, then JSON without trailing commas, then a Python literal (single quotes, True/None)."""
    for attempt in (text, _TRAILING_COMMA.sub(r"\1", text)):
        try:
            return json.loads(attempt)
        except (ValueError, RecursionError):
            pass
    try:
        return ast.literal_eval(
            _TRAILING_COMMA.sub(r"\1", text).replace("true", "True").replace("false", "False").replace("null", "None")
        )
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None


def _balanced_spans(text: str):
    """Substrings that open with { or [ and close at the matching bracket, outermost first."""
    for start, char in enumerate(text):
        if char not in "{[":
            continue
        depth, quote, escaped = 0, None, False
        for end in range(start, len(text)):
            c = text[end]
            if quote:
                if escaped:
                    escaped = False
                elif c == "\\":
                    escaped = True
                elif c == quote:
                    quote = None
            elif c in "\"'":
                # An apostrophe inside a word ("judge's") is not a quote.
                if c == "'" and 0 < end < len(text) - 1 and text[end - 1].isalnum() and text[end + 1].isalnum():
                    continue
                quote = c
            elif c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth == 0:
                    yield text[start : end + 1]
                    break


def extract_json(text: str) -> Any:
    """The first JSON value (object or list) found in ``text``, or None.

    Looks inside code fences first, then at the whole text, then at every balanced bracket span.
    """
    if not text:
        return None
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        value = _loads(candidate.strip())
        if isinstance(value, (dict, list)):
            return value
        for span in _balanced_spans(candidate):
            value = _loads(span)
            if isinstance(value, (dict, list)):
                return value
    return None


@dataclass(frozen=True)
class ScoreReading:
    """A score normalised to [0, 1], or the reason none could be read."""

    value: float | None
    clamped: bool = False
    error: str | None = None


def _number(value: Any) -> tuple[float, float | None] | None:
    """(number, denominator if written as 'a/b') from an int, float or numeric string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value), None
    if isinstance(value, str):
        match = _NUMBER.match(value)
        if match:
            return float(match.group(1)), float(match.group(2)) if match.group(2) else None
    return None


def _find_score(value: Any) -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and key.strip().lower() in _SCORE_WORDS:
                return item
        for item in value.values():
            found = _find_score(item)
            if found is not None:
                return found
    if isinstance(value, list):
        for item in value:
            found = _find_score(item)
            if found is not None:
                return found
    return None


def read_score(text: str | None, scale: float = 10.0) -> ScoreReading:
    """The judge's 0..scale score as a fraction; outside the scale it is clamped (and flagged)."""
    if text is None:
        return ScoreReading(None, error="no answer")
    raw = _find_score(extract_json(text))
    parsed = _number(raw) if raw is not None else None
    if parsed is None:
        match = _SCORE_IN_PROSE.search(text)
        if match is None:
            return ScoreReading(None, error="no score in answer")
        parsed = float(match.group(1)), float(match.group(2)) if match.group(2) else None
    number, denominator = parsed
    if denominator:
        number = number * scale / denominator
    if number != number:  # NaN
        return ScoreReading(None, error="score is not a number")
    clamped = not 0.0 <= number <= scale
    return ScoreReading(min(max(number, 0.0), scale) / scale, clamped=clamped)


@dataclass(frozen=True)
class BoxReading:
    """Boxes ``(x1, y1, x2, y2)`` in the judge's own coordinates ([] = "not in the image"), or why
    none could be read."""

    boxes: tuple[tuple[float, float, float, float], ...] = ()
    error: str | None = None


def _as_box(value: Any) -> tuple[float, float, float, float] | None:
    if isinstance(value, dict):
        for key in _BOX_KEYS:
            if key in value:
                return _as_box(value[key])
        keys = ("x1", "y1", "x2", "y2")
        if all(k in value for k in keys):
            return _as_box([value[k] for k in keys])
        return None
    if isinstance(value, (list, tuple)) and len(value) == 4:
        numbers = [_number(v) for v in value]
        if all(n is not None for n in numbers):
            return tuple(n[0] for n in numbers)  # type: ignore[return-value]
    return None


def _says_absent(value: Any) -> bool:
    if isinstance(value, dict):
        for key in ("found", "present", "exists", "visible"):
            if value.get(key) is False:
                return True
        return any(value.get(k, "missing") in (None, [], "") for k in _BOX_KEYS)
    return False


def read_boxes(text: str | None) -> BoxReading:
    """Every box in the answer: one box, a list of boxes, or objects carrying ``bbox_2d`` / ``bbox``.

    An empty list, ``{"found": false}`` or a null box means the object is absent: a valid answer
    with no boxes. Anything else without a box is unreadable.
    """
    if text is None:
        return BoxReading(error="no answer")
    value = extract_json(text)
    if value is None:
        return BoxReading(error="no JSON in answer")
    single = _as_box(value)
    if single is not None:
        return BoxReading((single,))
    items = value if isinstance(value, list) else [value]
    boxes, absent = [], not items
    for item in items:
        box = _as_box(item)
        if box is not None:
            boxes.append(box)
        elif _says_absent(item):
            absent = True
        elif isinstance(item, dict):
            nested = [v for v in item.values() if isinstance(v, list)]
            for inner in nested:
                boxes.extend(b for b in (_as_box(x) for x in inner) if b is not None)
    if boxes or absent:
        return BoxReading(tuple(boxes))
    return BoxReading(error="no box in answer")
