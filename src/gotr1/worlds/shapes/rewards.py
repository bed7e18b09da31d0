"""Exact rewards of the shapes world, with the interfaces the judge rewards will have.

GoT-R1 scores a (prompt, reasoning chain, image) triple in two stages: the chain against the prompt
(R_sem for what it plans, R_spa for where) and the image against the chain (R_RI) and the prompt
(R_PI). Here every stage is computed from the prompt's meaning, the chain's tagged objects and a
grounder, so training signal and evaluation carry no judge error; a judge-based grounder can be
injected where one fits.

Each reward is a batch callable ``reward(prompts, chains, images) -> list[float | None]`` with a
``name``. Scores lie in [0, 1]; None means "cannot be scored" and is given only for a missing image.
Chains are model output: a malformed chain is scored from whatever :func:`parse_chain` recovers
(text inside unclosed tags is text, an object without a usable box plans no position), never
raises, and its format problems cost nothing here beyond the objects and boxes they lose.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from statistics import fmean
from typing import Protocol, TypeVar

from ...chain import GRID, Box, parse_chain
from ...rewards.base import Reward, RewardResult
from ...rewards.combine import combine, mean_product_reward, product_reward
from ...rewards.grounding import BoxLocator, boxes_by_name, located_iou
from ...rewards.scoring import RewardPipeline
from .grounder import GroundedObject, ImageLike, OracleGrounder, read_name, size_class
from .vocabulary import Group, Meaning, relation_holds

__all__ = [
    "BoxLocator",
    "ObjectDetector",
    "ProductReward",
    "RPI",
    "RRI",
    "RSem",
    "RSpa",
    "ExactReward",
    "ShapesPromptLike",
    "all_constraints_hold",
    "mean_product_reward",
    "product_reward",
    "score_all",
]

# Planned boxes overlapping more than this are drawn on top of each other.
MAX_PLANNED_IOU = 0.5


class ShapesPromptLike(Protocol):
    """A prompt with its meaning, such as :class:`gotr1.worlds.shapes.grammar.Prompt`."""

    @property
    def meaning(self) -> Meaning: ...


class ObjectDetector(Protocol):
    """Every object in an image, with colour, shape, size and box."""

    def ground(self, image: ImageLike) -> list[GroundedObject]: ...


class ExactReward(Reward):
    """A batch reward function; subclasses score one (prompt, chain, image) triple."""

    name: str

    def evaluate_batch(
        self,
        prompts: Sequence[ShapesPromptLike],
        chains: Sequence[str],
        images: Sequence[ImageLike | None],
    ) -> list[RewardResult]:
        results = []
        for p, c, i in zip(prompts, chains, images):
            value = self.score(p, c, i)
            results.append(RewardResult(value, reason="missing image" if value is None else "exact"))
        return results

    @abstractmethod
    def score(self, prompt: ShapesPromptLike, chain: str, image: ImageLike | None) -> float | None:
        """The reward of one triple."""


# --- objects and constraints -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Thing:
    """A planned or grounded object as the constraints see it; unknown words are None."""

    color: str | None
    shape: str | None
    size: str | None
    box: Box | None = None


_T = TypeVar("_T", bound=_Thing)


def _named(name: str, box: Box | None = None) -> _Thing:
    """A planned object; with a box, its size is the box's, which is what the image will follow."""
    words = read_name(name)
    size = words.size if box is None else size_class(max(box.width, box.height) / GRID)
    return _Thing(words.color, words.shape, size, box)


def _grounded(obj: GroundedObject) -> _Thing:
    return _Thing(obj.color, obj.shape, obj.size, obj.box)


def _assign(meaning: Meaning, things: Sequence[_T]) -> tuple[list[list[_T]], list[_T]]:
    """Things per group by colour and shape (the grammar never repeats a pair), and the rest."""
    group_of: dict[tuple[str | None, str | None], int] = {}
    for index, group in enumerate(meaning.groups):
        group_of.setdefault(group.pair, index)
    members: list[list[_T]] = [[] for _ in meaning.groups]
    rest: list[_T] = []
    for thing in things:
        found = group_of.get((thing.color, thing.shape))
        (rest if found is None else members[found]).append(thing)
    return members, rest


def _sized_as(group: Group, thing: _Thing) -> bool:
    return group.size is None or thing.size == group.size


def _surplus(meaning: Meaning, members: list[list[_T]], rest: list[_T]) -> int:
    """Things the prompt does not ask for: other colours or shapes, or more than a group's count."""
    return len(rest) + sum(max(0, len(m) - g.count) for g, m in zip(meaning.groups, members))


@dataclass
class _Tally:
    """Satisfied constraints out of all; violations add failed constraints without any to satisfy."""

    satisfied: float = 0.0
    constraints: int = 0
    violations: int = 0
    all_hold: bool = True

    def add(self, satisfied: float, constraints: int, *, all_hold: bool) -> None:
        self.satisfied += satisfied
        self.constraints += constraints
        self.all_hold &= all_hold

    def violate(self, count: int = 1) -> None:
        self.violations += count
        self.all_hold &= count == 0

    @property
    def score(self) -> float:
        total = self.constraints + self.violations
        return self.satisfied / total if total else 1.0


def _check_layout(meaning: Meaning, members: list[list[_Thing]]) -> _Tally:
    """Counts and relations of a layout, planned or grounded, against the prompt.

    A group holds when exactly ``count`` objects have its colour and shape, all of the prompt's size
    if it gives one. A relation is a constraint per (subject, object) pair the prompt implies; when
    the layout has more pairs than that, the pairs that hold are scaled down to the prompt's number,
    and a missing group's pairs all fail.
    """
    tally = _Tally()
    for group, things in zip(meaning.groups, members):
        holds = len(things) == group.count and all(_sized_as(group, thing) for thing in things)
        tally.add(float(holds), 1, all_hold=holds)
    for relation in meaning.relations:
        subjects, objects = members[relation.subject], members[relation.object]
        expected = meaning.groups[relation.subject].count * meaning.groups[relation.object].count
        pairs = [(a.box, b.box) for a in subjects for b in objects if a.box is not None and b.box is not None]
        holding = sum(_holds(relation.relation, a, b) for a, b in pairs)
        satisfied = holding * min(len(pairs), expected) / len(pairs) if pairs else 0.0
        tally.add(satisfied, expected, all_hold=holding == len(pairs) == expected)
    return tally


def _holds(relation: str, a: Box, b: Box) -> bool:
    return relation_holds(relation, (a.x1, a.y1, a.x2, a.y2), (b.x1, b.y1, b.x2, b.y2))


def _boxed_objects(chain: str) -> list[tuple[str, Box]]:
    """Names and boxes of the chain's objects that have a box."""
    return [(obj.name, obj.box) for obj in parse_chain(chain).objects if obj.box is not None]


# --- the four rewards ------------------------------------------------------------------------------


class RSem(ExactReward):
    """Prompt -> chain: does the chain plan the objects the prompt asks for, and nothing else?

    Object names are read by word (size, colour, shape). Each group scores the share of its count
    covered by planned objects of its colour and shape (and size, if the prompt gives one), capped
    at its count; the mean over groups is multiplied by ``required / (required + extras)``, where
    extras are planned objects of a colour and shape the prompt does not ask for (unreadable names
    included) and objects beyond a group's count. Boxes play no part. No objects: 0.0.
    """

    name = "r_sem"

    def score(self, prompt: ShapesPromptLike, chain: str, image: ImageLike | None) -> float:
        meaning = prompt.meaning
        objects = parse_chain(chain).objects
        if not objects:
            return 0.0
        members, rest = _assign(meaning, [_named(obj.name) for obj in objects])
        covered = [
            min(sum(_sized_as(group, thing) for thing in things), group.count) / group.count
            for group, things in zip(meaning.groups, members)
        ]
        coverage = fmean(covered) if covered else 1.0
        required = meaning.num_objects
        return coverage * required / (required + _surplus(meaning, members, rest))


class RSpa(ExactReward):
    """Prompt -> planned layout: do the planned boxes satisfy the prompt's counts and relations?

    Only objects with a box count; they join groups by colour and shape, and an object's size is
    that of its box (see ``grounder.size_class``). The score is the share of satisfied constraints
    (see ``_check_layout``); every pair of planned boxes with IoU above 0.5 adds one failed
    constraint, so stacking objects can only cost. No boxes: 0.0.
    """

    name = "r_spa"

    def score(self, prompt: ShapesPromptLike, chain: str, image: ImageLike | None) -> float:
        planned = [_named(name, box) for name, box in _boxed_objects(chain)]
        if not planned:
            return 0.0
        members, _ = _assign(prompt.meaning, planned)
        tally = _check_layout(prompt.meaning, members)
        boxes = [thing.box for thing in planned if thing.box is not None]
        tally.violate(sum(a.iou(b) > MAX_PLANNED_IOU for a, b in combinations(boxes, 2)))
        return tally.score


class RRI(ExactReward):
    """Chain -> image: is each planned object drawn where the chain put it?

    Each planned object with a box is looked up by name with ``locator.locate`` (one call per
    colour and shape; size words are not asked for). Planned objects and found boxes of the same
    colour and shape are matched one to one for the largest total IoU, so two planned red circles
    cannot both claim one drawn red circle. The score is the mean IoU over planned objects, 0 for
    an unmatched one. No planned boxes: 0.0. No image: None.
    """

    name = "r_ri"

    def __init__(self, locator: BoxLocator | None = None) -> None:
        self.locator = locator if locator is not None else OracleGrounder()

    def score(self, prompt: ShapesPromptLike, chain: str, image: ImageLike | None) -> float | None:
        if image is None:
            return None
        planned = _boxed_objects(chain)  # named or not: an unreadable name is a planned object that is not found
        if not planned:
            return 0.0
        return located_iou(boxes_by_name(planned, _lookup_name), image, self.locator)[0]

    def __repr__(self) -> str:
        return f"RRI(locator={self.locator!r})"


def _lookup_name(name: str) -> str:
    """'red circle' for any name whose colour and shape are read; otherwise the name, tidied."""
    words = read_name(name)
    if words.color is not None and words.shape is not None:
        return f"{words.color} {words.shape}"
    return " ".join(name.lower().split())


class RPI(ExactReward):
    """Prompt -> image: does the image show what the prompt asks for?

    The image's objects are grounded and scored like a layout (see ``_check_layout``): each group
    exactly its count, sized as the prompt says, and every relation pair holding on the grounded
    boxes. Every object the prompt does not ask for (another colour or shape, an unrecognisable
    shape, or one beyond a group's count) adds a failed constraint. No image: None.
    """

    name = "r_pi"

    def __init__(self, detector: ObjectDetector | None = None) -> None:
        self.detector = detector if detector is not None else OracleGrounder()

    def score(self, prompt: ShapesPromptLike, chain: str, image: ImageLike | None) -> float | None:
        if image is None:
            return None
        return _check_image(prompt.meaning, image, self.detector).score

    def __repr__(self) -> str:
        return f"RPI(detector={self.detector!r})"


def _check_image(meaning: Meaning, image: ImageLike, detector: ObjectDetector) -> _Tally:
    members, rest = _assign(meaning, [_grounded(obj) for obj in detector.ground(image)])
    tally = _check_layout(meaning, members)
    tally.violate(_surplus(meaning, members, rest))
    return tally


def all_constraints_hold(
    prompt: ShapesPromptLike, image: ImageLike | None, detector: ObjectDetector | None = None
) -> bool:
    """The binary accuracy of an image: every group exactly its count and size, every relation
    pair holding, nothing else drawn. A missing image fails."""
    if image is None:
        return False
    return _check_image(prompt.meaning, image, detector or OracleGrounder()).all_hold


# --- combining -------------------------------------------------------------------------------------


class ProductReward(ExactReward):
    """The combined reward as one reward function; ``mean=True`` gives :func:`mean_product_reward`."""

    def __init__(
        self, *, mean: bool = False, locator: BoxLocator | None = None, detector: ObjectDetector | None = None
    ) -> None:
        self.mean = mean
        self.name = "r_mean_product" if mean else "r_product"
        self.parts = (RSem(), RSpa(), RRI(locator), RPI(detector))

    def score(self, prompt: ShapesPromptLike, chain: str, image: ImageLike | None) -> float | None:
        r_sem, r_spa, r_ri, r_pi = (part.score(prompt, chain, image) for part in self.parts)
        combine = mean_product_reward if self.mean else product_reward
        return combine(r_sem, r_spa, r_ri, r_pi)

    def __repr__(self) -> str:
        return f"ProductReward(mean={self.mean})"


def score_all(
    prompts: Sequence[ShapesPromptLike],
    chains: Sequence[str],
    images: Sequence[ImageLike | None],
    *,
    locator: BoxLocator | None = None,
    detector: ObjectDetector | None = None,
) -> list[dict[str, float | None]]:
    """Every component and both combinations, per sample, keyed by reward name: the reward pipeline of the
    four exact components under the paper's product, plus its halved form."""
    pipeline = RewardPipeline({part.name: part for part in (RSem(), RSpa(), RRI(locator), RPI(detector))}, "product")
    rows = []
    for sample in pipeline.evaluate(prompts, chains, images):
        row = dict(sample.components)
        row["product"] = sample.total
        row["mean_product"] = combine("mean_product", row)
        rows.append(row)
    return rows
