"""The GoT reasoning-chain format: free text with planned objects and their boxes.

A chain plans an image in prose, tagging each object it places::

    A <|obj_start|>yellow vase<|obj_end|> <|box_start|>(202,482),(729,964)<|box_end|> ...
    ... still life.<begin_of_image>

Boxes are integer corners ``(x1,y1),(x2,y2)`` on a ``0..GRID`` grid over the
image, top-left origin. Chains are model output, so :func:`parse_chain` reads
anything without raising and reports what is wrong as :class:`ChainProblem`
data; rewards and filters decide what a problem costs.
"""

from __future__ import annotations

import operator
import re
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, TypeAlias, TypeVar

OBJ_START = "<|obj_start|>"
OBJ_END = "<|obj_end|>"
BOX_START = "<|box_start|>"
BOX_END = "<|box_end|>"
BEGIN_OF_IMAGE = "<begin_of_image>"
# The order in which the GoT-R1 release adds these to the tokenizer; token ids depend on it.
LAYOUT_TOKENS = (BOX_START, BOX_END, OBJ_START, OBJ_END)
GRID = 1000

__all__ = [
    "BEGIN_OF_IMAGE",
    "BOX_END",
    "BOX_START",
    "GRID",
    "snap_chain",
    "relation_contradictions",
    "LAYOUT_TOKENS",
    "OBJ_END",
    "OBJ_START",
    "Box",
    "ChainProblem",
    "ParsedChain",
    "PlannedObject",
    "ProblemKind",
    "Segment",
    "format_chain",
    "format_object",
    "parse_chain",
    "validate_chain",
]


@dataclass(frozen=True)
class Box:
    """A box on the ``0..GRID`` grid, corners ``(x1, y1)`` and ``(x2, y2)``.

    A plain value: out-of-grid or inverted corners are representable so that
    parsing and validation, not construction, decide what to do with them. An
    inverted box covers no area.
    """

    x1: int
    y1: int
    x2: int
    y2: int

    def __post_init__(self) -> None:
        for name in ("x1", "y1", "x2", "y2"):
            value = getattr(self, name)
            if isinstance(value, bool):
                raise TypeError(f"Box.{name} must be an int, got bool")
            # operator.index admits int-like values (numpy integers) and rejects floats.
            object.__setattr__(self, name, operator.index(value))

    @property
    def width(self) -> int:
        return max(0, self.x2 - self.x1)

    @property
    def height(self) -> int:
        return max(0, self.y2 - self.y1)

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2

    def iou(self, other: Box) -> float:
        """Intersection over union; 0.0 when both boxes are empty."""
        overlap = Box(
            max(self.x1, other.x1),
            max(self.y1, other.y1),
            min(self.x2, other.x2),
            min(self.y2, other.y2),
        ).area
        union = self.area + other.area - overlap
        return overlap / union if union > 0 else 0.0

    def ordered(self) -> Box:
        """The same region with corners sorted so that x1 <= x2 and y1 <= y2."""
        return Box(
            min(self.x1, self.x2),
            min(self.y1, self.y2),
            max(self.x1, self.x2),
            max(self.y1, self.y2),
        )

    def clamped(self) -> Box:
        """The box with every coordinate moved into ``0..GRID``."""
        return Box(*(min(max(value, 0), GRID) for value in (self.x1, self.y1, self.x2, self.y2)))

    def to_pixels(self, width: float, height: float) -> tuple[float, float, float, float]:
        """Corners in pixels of a ``width`` x ``height`` image."""
        sx, sy = width / GRID, height / GRID
        return self.x1 * sx, self.y1 * sy, self.x2 * sx, self.y2 * sy

    @classmethod
    def from_pixels(cls, x1: float, y1: float, x2: float, y2: float, width: float, height: float) -> Box:
        """Quantise pixel corners onto the grid, clamped into it and ordered."""
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        sx, sy = GRID / width, GRID / height
        return cls(round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy)).clamped().ordered()


@dataclass(frozen=True)
class PlannedObject:
    """An object the chain places; ``box`` is None when the chain gave no usable box."""

    name: str
    box: Box | None


Segment: TypeAlias = str | PlannedObject


class ProblemKind(str, Enum):
    """What can be wrong with a chain. Members compare equal to their string values."""

    UNCLOSED_TAG = "unclosed_tag"
    STRAY_TAG = "stray_tag"
    BOX_WITHOUT_OBJECT = "box_without_object"
    OBJECT_WITHOUT_BOX = "object_without_box"
    EMPTY_OBJECT_NAME = "empty_object_name"
    NON_INTEGER_COORDINATES = "non_integer_coordinates"
    MALFORMED_BOX = "malformed_box"
    OUT_OF_RANGE = "out_of_range"
    SWAPPED_CORNERS = "swapped_corners"
    ZERO_AREA = "zero_area"
    TEXT_AFTER_IMAGE_START = "text_after_image_start"
    MISSING_IMAGE_START = "missing_image_start"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ChainProblem:
    """One defect found in a chain.

    ``kind`` is a :class:`ProblemKind`, which is also a plain str for logs and JSON;
    ``offset`` is a character index into the text given to the parser.
    """

    kind: str
    message: str
    offset: int


@dataclass
class ParsedChain:
    """A chain as free text and objects in order, plus what was wrong with it.

    Free-text segments never contain layout tags or ``<begin_of_image>``, so
    formatting a parsed chain and parsing it again gives the same segments.
    """

    segments: list[Segment]
    problems: list[ChainProblem] = field(default_factory=list)
    ended_with_image_start: bool = False

    @property
    def objects(self) -> list[PlannedObject]:
        return [segment for segment in self.segments if isinstance(segment, PlannedObject)]

    @property
    def boxes(self) -> list[Box]:
        """Boxes of the objects that have one, in chain order."""
        return [obj.box for obj in self.objects if obj.box is not None]

    @property
    def text(self) -> str:
        """The chain as plain prose: object names inline, no tags or boxes."""
        prose = "".join(s if isinstance(s, str) else s.name for s in self.segments)
        prose = re.sub(r"[^\S\n]+", " ", prose)
        prose = re.sub(r" *\n *", "\n", prose)
        return prose.strip()

    @property
    def is_valid(self) -> bool:
        return not self.problems


def format_object(obj: PlannedObject) -> str:
    """The tagged form of one object, as the model writes it."""
    tagged = f"{OBJ_START}{obj.name}{OBJ_END}"
    if obj.box is None:
        return tagged
    b = obj.box
    return f"{tagged} {BOX_START}({b.x1},{b.y1}),({b.x2},{b.y2}){BOX_END}"


def format_chain(chain: ParsedChain | Sequence[Segment], *, end_with_image_start: bool = False) -> str:
    """Write segments back into chain text; free text is copied as given.

    ``<begin_of_image>`` is appended only when asked, also for a parsed chain
    that had one: callers that prompt the model for an image add it themselves.
    """
    segments = chain.segments if isinstance(chain, ParsedChain) else chain
    text = "".join(s if isinstance(s, str) else format_object(s) for s in segments)
    return text + BEGIN_OF_IMAGE if end_with_image_start else text


_BOX_TAG = re.compile(
    re.escape(BOX_START) + r"\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*,\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*" + re.escape(BOX_END)
)


def snap_chain(text: str, image_size: int) -> tuple[str, list[tuple[Box, Box]]]:
    """Boxes moved onto the coordinates a model of `image_size` pixels writes: each corner to the grid value of
    the nearest pixel edge (a shapes model's 64 pixels are 15.625 grid units apart). A person types round
    numbers; the model has only seen its own. Returns the chain with every other character as it was, and the
    (typed, snapped) pairs of the boxes that moved."""
    moved = []

    def snap(value: str) -> int:
        return round(round(int(value) * image_size / GRID) * GRID / image_size)

    def replace(match: re.Match[str]) -> str:
        typed = Box(*(int(v) for v in match.groups()))
        snapped = Box(*(snap(v) for v in match.groups()))
        if snapped == typed:
            return match.group(0)
        moved.append((typed, snapped))
        return f"{BOX_START}({snapped.x1},{snapped.y1}),({snapped.x2},{snapped.y2}){BOX_END}"

    return _BOX_TAG.sub(replace, text), moved


# Words that place one object against the next, and the test their boxes must pass (centres, y down).
_RELATION_WORDS = (
    ("to the left of", lambda a, b: a[0] < b[0]),
    ("left of", lambda a, b: a[0] < b[0]),
    ("to the right of", lambda a, b: a[0] > b[0]),
    ("right of", lambda a, b: a[0] > b[0]),
    ("above", lambda a, b: a[1] < b[1]),
    ("over", lambda a, b: a[1] < b[1]),
    ("on top of", lambda a, b: a[1] < b[1]),
    ("below", lambda a, b: a[1] > b[1]),
    ("under", lambda a, b: a[1] > b[1]),
    ("beneath", lambda a, b: a[1] > b[1]),
)


def relation_contradictions(text: str) -> list[str]:
    """Where a chain's words contradict its boxes: "A to the left of B" with A's box right of B's (an edited box
    moves; its words stay). Only a relation word between two consecutive objects is read; one line each."""
    found = []
    segments = parse_chain(text).segments
    objects = [(i, s) for i, s in enumerate(segments) if isinstance(s, PlannedObject)]
    for (i, a), (j, b) in zip(objects, objects[1:]):
        between = " ".join(s for s in segments[i + 1 : j] if isinstance(s, str)).lower()
        if a.box is None or b.box is None:
            continue
        for words, holds in _RELATION_WORDS:
            if re.search(rf"\b{words}\b", between):
                if not holds(a.box.center, b.box.center):
                    found.append(f"the chain says {a.name!r} is {words} {b.name!r}, but their boxes do not")
                break
    return found


def validate_chain(text: str, *, require_image_start: bool = False) -> list[ChainProblem]:
    """Every problem in ``text``; empty when the chain is well formed."""
    parsed = parse_chain(text)
    problems = list(parsed.problems)
    if require_image_start and not parsed.ended_with_image_start:
        problems.append(
            ChainProblem(
                ProblemKind.MISSING_IMAGE_START,
                f"chain does not end with {BEGIN_OF_IMAGE}",
                len(text),
            )
        )
    return problems


# --- parsing -----------------------------------------------------------------

_ANY_TAG = re.compile("|".join(re.escape(t) for t in (*LAYOUT_TOKENS, BEGIN_OF_IMAGE)))
_CLOSER_OF = {OBJ_START: OBJ_END, BOX_START: BOX_END}

_NUMBER = r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*"
_BOX_TEXT = re.compile(rf"\s*\({_NUMBER},{_NUMBER}\)\s*,\s*\({_NUMBER},{_NUMBER}\)\s*", re.ASCII)
_INTEGER = re.compile(r"[-+]?\d+", re.ASCII)
# Longer digit strings are far off the grid anyway; capping them avoids int()'s digit limit.
_MAX_DIGITS = 9


@dataclass(frozen=True)
class _Tagged:
    """The text between an opening tag and its closer."""

    kind: Literal["object", "box"]
    content: str
    offset: int


_Piece = TypeVar("_Piece")


def parse_chain(text: str) -> ParsedChain:
    """Read a chain into segments and problems; never raises on a str.

    A box belongs to the object right before it (only whitespace between).
    Recoverable defects are repaired and reported: out-of-range boxes are
    clamped, swapped corners ordered, unclosed tags' contents kept as text.
    """
    problems: list[ChainProblem] = []
    body, ended_with_image_start = _split_off_image_start(text, problems)
    pieces = _join_free_text(_scan_tags(body, problems))
    segments = _join_free_text(_pair_objects_with_boxes(pieces, problems))
    problems.sort(key=lambda problem: problem.offset)
    return ParsedChain(segments, problems, ended_with_image_start)


def _split_off_image_start(text: str, problems: list[ChainProblem]) -> tuple[str, bool]:
    start = text.find(BEGIN_OF_IMAGE)
    if start < 0:
        return text, False
    after = start + len(BEGIN_OF_IMAGE)
    trailing = re.search(r"\S", text[after:])
    if trailing is not None:
        problems.append(
            ChainProblem(
                ProblemKind.TEXT_AFTER_IMAGE_START,
                f"text after {BEGIN_OF_IMAGE} is ignored",
                after + trailing.start(),
            )
        )
    return text[:start], True


def _scan_tags(body: str, problems: list[ChainProblem]) -> list[str | _Tagged]:
    """Split ``body`` into free text, object names and box texts; bad tags are dropped."""
    pieces: list[str | _Tagged] = []
    tags = list(_ANY_TAG.finditer(body))
    text_start = 0

    def drop_tag(tag: re.Match[str]) -> None:
        nonlocal text_start
        pieces.append(body[text_start : tag.start()])
        text_start = tag.end()

    i = 0
    while i < len(tags):
        tag = tags[i]
        opener = tag.group()
        closer = _CLOSER_OF.get(opener)
        following = tags[i + 1] if i + 1 < len(tags) else None
        if closer is None:
            problems.append(ChainProblem(ProblemKind.STRAY_TAG, f"{opener} without an opening tag", tag.start()))
            drop_tag(tag)
        elif following is not None and following.group() == closer:
            pieces.append(body[text_start : tag.start()])
            kind: Literal["object", "box"] = "object" if opener == OBJ_START else "box"
            pieces.append(_Tagged(kind, body[tag.end() : following.start()], tag.start()))
            text_start = following.end()
            i += 1
        elif following is not None and following.group() == opener:
            problems.append(
                ChainProblem(
                    ProblemKind.STRAY_TAG,
                    f"nested {opener}; the unclosed one at offset {tag.start()} is read as text",
                    following.start(),
                )
            )
            drop_tag(tag)
        else:
            problems.append(
                ChainProblem(
                    ProblemKind.UNCLOSED_TAG,
                    f"{opener} is never closed by {closer}; its contents are read as text",
                    tag.start(),
                )
            )
            drop_tag(tag)
        i += 1
    pieces.append(body[text_start:])
    return pieces


def _join_free_text(pieces: list[str | _Piece]) -> list[str | _Piece]:
    """Join neighbouring free text, drop empty text and any tags left in it."""
    joined: list[str | _Piece] = []
    for piece in pieces:
        if isinstance(piece, str) and joined and isinstance(joined[-1], str):
            joined[-1] += piece
        else:
            joined.append(piece)
    cleaned = [_without_tags(piece) if isinstance(piece, str) else piece for piece in joined]
    return [piece for piece in cleaned if piece != ""]


def _without_tags(text: str) -> str:
    """``text`` with tags removed, including any that removing others splices together.

    Dropping a bad tag joins the text on either side of it, which can spell a
    new tag; free text must never carry structure, so those go too.
    """
    while _ANY_TAG.search(text):
        text = _ANY_TAG.sub("", text)
    return text


def _pair_objects_with_boxes(pieces: list[str | _Tagged], problems: list[ChainProblem]) -> list[Segment]:
    """Give each object the box right after it; drop boxes with no object and nameless objects."""
    segments: list[Segment] = []
    i = 0
    while i < len(pieces):
        piece = pieces[i]
        i += 1
        if isinstance(piece, str):
            segments.append(piece)
            continue
        if piece.kind == "box":
            problems.append(ChainProblem(ProblemKind.BOX_WITHOUT_OBJECT, "box does not follow an object", piece.offset))
            continue
        after = pieces[i] if i < len(pieces) else None
        box_at = i + 1 if isinstance(after, str) and after.isspace() else i
        candidate = pieces[box_at] if box_at < len(pieces) else None
        box_piece = candidate if isinstance(candidate, _Tagged) and candidate.kind == "box" else None
        if box_piece is not None:
            i = box_at + 1
        name = piece.content.strip()
        if not name:  # its box, if any, is dropped with it
            problems.append(ChainProblem(ProblemKind.EMPTY_OBJECT_NAME, "object has an empty name", piece.offset))
            continue
        if box_piece is None:
            problems.append(ChainProblem(ProblemKind.OBJECT_WITHOUT_BOX, f"object {name!r} has no box", piece.offset))
        box = _read_box(box_piece, problems) if box_piece is not None else None
        segments.append(PlannedObject(name, box))
    return segments


def _read_box(tagged: _Tagged, problems: list[ChainProblem]) -> Box | None:
    """The box written in ``tagged``, repaired where possible; None when unreadable."""
    shown = reprlib.repr(tagged.content)

    def report(kind: ProblemKind, message: str) -> None:
        problems.append(ChainProblem(kind, f"box {shown} {message}", tagged.offset))

    match = _BOX_TEXT.fullmatch(tagged.content)
    if match is None:
        report(ProblemKind.MALFORMED_BOX, "is not two (x,y) pairs")
        return None
    numbers = match.groups()
    if not all(_INTEGER.fullmatch(number) for number in numbers):
        report(ProblemKind.NON_INTEGER_COORDINATES, "has non-integer coordinates")
        return None
    box = Box(*(_to_int(number) for number in numbers))
    if box.clamped() != box:
        report(ProblemKind.OUT_OF_RANGE, f"leaves the 0..{GRID} grid; clamped")
        box = box.clamped()
    if box.ordered() != box:
        report(ProblemKind.SWAPPED_CORNERS, "has swapped corners; reordered")
        box = box.ordered()
    if box.area == 0:
        report(ProblemKind.ZERO_AREA, "has no area")
    return box


def _to_int(number: str) -> int:
    """An integer literal's value, with absurdly long ones capped (they get clamped anyway)."""
    negative = number.startswith("-")
    digits = number.lstrip("+-").lstrip("0") or "0"
    if len(digits) > _MAX_DIGITS:
        digits = "9" * _MAX_DIGITS
    return -int(digits) if negative else int(digits)
