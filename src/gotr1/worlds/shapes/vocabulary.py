"""What the shapes world is made of: colours, shapes, sizes, counts, relations, and a scene's meaning.

A prompt's *meaning* is structured data (groups of identical objects and relations between groups);
prompts are one of several surface forms of it, scenes are renderings that satisfy it, and every reward
and accuracy in the world is computed against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Six hues 60 degrees apart, saturated, so colours stay apart after VQ reconstruction and an exact
# colour segmentation recovers objects from pixels.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "yellow": (230, 200, 20),
    "green": (30, 170, 50),
    "cyan": (0, 180, 200),
    "blue": (40, 70, 225),
    "magenta": (210, 40, 200),
}
BACKGROUND = (255, 255, 255)
SHAPES = ("circle", "square", "triangle", "diamond")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "diamond": "diamonds"}
SIZES = ("small", "large")
COUNT_WORDS = {1: "a", 2: "two", 3: "three", 4: "four"}
RELATIONS = ("left of", "right of", "above", "below")
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
MAX_OBJECTS = 4


@dataclass(frozen=True)
class Group:
    """`count` identical objects; `size` None means the prompt does not say."""

    color: str
    shape: str
    count: int = 1
    size: str | None = None

    def __post_init__(self):
        if self.color not in COLORS:
            raise ValueError(f"unknown colour {self.color!r}")
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}")
        if self.size is not None and self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}")
        if not 1 <= self.count <= MAX_OBJECTS:
            raise ValueError(f"count must be 1..{MAX_OBJECTS}")

    @property
    def pair(self) -> tuple[str, str]:
        return (self.color, self.shape)


@dataclass(frozen=True)
class Relation:
    """Every object of group `subject` stands in `relation` to every object of group `object`."""

    subject: int
    relation: str
    object: int

    def __post_init__(self):
        if self.relation not in RELATIONS:
            raise ValueError(f"unknown relation {self.relation!r}")


@dataclass(frozen=True)
class Meaning:
    groups: tuple[Group, ...]
    relations: tuple[Relation, ...] = field(default=())

    @property
    def num_objects(self) -> int:
        return sum(g.count for g in self.groups)

    def to_dict(self) -> dict:
        return {
            "groups": [{"color": g.color, "shape": g.shape, "count": g.count, "size": g.size} for g in self.groups],
            "relations": [{"subject": r.subject, "relation": r.relation, "object": r.object} for r in self.relations],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Meaning:
        return cls(tuple(Group(**g) for g in data["groups"]), tuple(Relation(**r) for r in data.get("relations", [])))


def object_name(color: str, shape: str, size: str | None = None) -> str:
    """The name an object gets in a reasoning chain, e.g. 'small red circle'."""
    return " ".join(w for w in (size, color, shape) if w)


def relation_holds(relation: str, a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    """Does box a (x1, y1, x2, y2) stand in `relation` to box b?

    Centre offsets along the relation's axis must exceed a margin of 0.1 x the two boxes' summed extent
    on that axis (GenEval's rule) and dominate the offset on the other axis (T2I-CompBench's rule).
    """
    acx, acy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    bcx, bcy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    dx, dy = bcx - acx, bcy - acy  # b's centre relative to a's
    if relation in ("left of", "right of"):
        along, across = (dx if relation == "left of" else -dx), dy
        margin = 0.1 * ((a[2] - a[0]) + (b[2] - b[0]))
    else:
        along, across = (dy if relation == "above" else -dy), dx
        margin = 0.1 * ((a[3] - a[1]) + (b[3] - b[1]))
    return along > margin and abs(along) >= abs(across)
