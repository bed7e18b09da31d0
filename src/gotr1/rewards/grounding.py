"""R_RI, reasoning -> image: is each planned object drawn where the chain put it?

For every distinct object name in the plan the judge is asked for the boxes of all such objects
in the image; planned and found boxes of that name are matched one to one (scipy's Hungarian
algorithm, so two planned dogs cannot both claim one drawn dog) and the reward is the mean IoU over
the planned boxes, 0 for an unmatched one. Judges answer in their own coordinate frame
(``box_format``); boxes are converted to the chain's 0..1000 grid before any IoU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from PIL import Image

from ..chain import Box, ParsedChain, parse_chain
from .base import Reward, RewardResult
from .judge import Judge, JudgeAnswer, judge_view
from .judged import JudgedReward, Questions
from .matching import judge_box_to_grid, match_boxes
from .parsing import read_boxes
from .prompts import BOX_FORMATS, BOXES_SCHEMA

__all__ = [
    "BoxLocator",
    "GroundingReward",
    "LocatorGroundingReward",
    "boxes_by_name",
    "located_iou",
    "lookup_name",
    "mean_matched_iou",
]


class BoxLocator(Protocol):
    """Anything that finds boxes of a named object in an image (a detector, the shapes oracle)."""

    def locate(self, image: Image.Image, name: str) -> list[Box]: ...


def lookup_name(name: str) -> str:
    """The name objects are grouped and asked by: lower case, single spaces."""
    return " ".join(name.lower().split())


def mean_matched_iou(planned: dict[str, list[Box]], found: dict[str, Sequence[Box]]) -> tuple[float, list[float]]:
    """Mean over planned boxes of the IoU of each one's match among found boxes of its name."""
    ious: list[float] = []
    for name, boxes in planned.items():
        best = [0.0] * len(boxes)
        for i, _, iou in match_boxes(boxes, list(found.get(name, ()))):
            best[i] = iou
        ious.extend(best)
    return (sum(ious) / len(ious) if ious else 0.0), ious


def boxes_by_name(planned: Sequence[tuple[str, Box]], name_key=lookup_name) -> dict[str, list[Box]]:
    """Planned boxes grouped by the name they are located by (``name_key`` of the planned name)."""
    by_name: dict[str, list[Box]] = {}
    for name, box in planned:
        by_name.setdefault(name_key(name), []).append(box)
    return by_name


def _planned_by_name(chain: ParsedChain) -> dict[str, list[Box]]:
    return boxes_by_name([(o.name, o.box) for o in chain.objects if o.box is not None and o.name.strip()])


def located_iou(
    by_name: dict[str, list[Box]], image: Image.Image, locator: BoxLocator
) -> tuple[float, list[float], dict[str, list[Box]]]:
    """R_RI with a locator: each name located once, planned and found boxes of a name matched one to one;
    (mean IoU, per-box IoUs, found boxes by name)."""
    found = {name: locator.locate(image, name) for name in by_name}
    value, ious = mean_matched_iou(by_name, found)
    return value, ious, found


def _grid_lists(found: dict[str, Sequence[Box]]) -> dict[str, list[list[int]]]:
    return {name: [[b.x1, b.y1, b.x2, b.y2] for b in boxes] for name, boxes in found.items()}


class GroundingReward(JudgedReward):
    """R_RI with the judge as grounder. No planned box: 0.0; no image: missing (None); any of the
    sample's grounding questions unanswered or unreadable: missing."""

    name = "r_ri"

    def __init__(self, judge: Judge, *, box_format: str = "pixels", **kwargs) -> None:
        super().__init__(judge, **kwargs)
        if box_format not in BOX_FORMATS:
            raise ValueError(f"box_format must be one of {', '.join(BOX_FORMATS)}, got {box_format!r}")
        self.box_format = box_format

    def questions(self, prompt: str, chain: ParsedChain, image: Image.Image | None) -> RewardResult | Questions:
        if image is None:
            return RewardResult(None, reason="missing image")
        planned = _planned_by_name(chain)
        if not planned:
            return RewardResult(0.0, reason="no boxes in chain")
        view = judge_view(image, self.image_pixels)
        names = list(planned)
        requests = [
            self.request(self.prompts.grounding_question(name, self.box_format, view.size), [view], schema=BOXES_SCHEMA)
            for name in names
        ]

        def conclude(answers: list[JudgeAnswer]) -> RewardResult:
            found: dict[str, list[Box]] = {}
            for name, answer in zip(names, answers):
                failed = self.failed(answer)
                if failed is not None:
                    failed.raw = [a.text or "" for a in answers]
                    return failed
                reading = read_boxes(answer.text)
                if reading.error is not None:
                    result = self.unreadable(answer, f"{name!r}: {reading.error}")
                    result.raw = [a.text or "" for a in answers]
                    return result
                grid = (judge_box_to_grid(b, self.box_format, view.size) for b in reading.boxes)
                found[name] = [b for b in grid if b is not None]
            value, ious = mean_matched_iou(planned, found)
            return RewardResult(
                value,
                reason="judged",
                raw=[a.text or "" for a in answers],
                details={"grounded": _grid_lists(found), "ious": ious},
            )

        return Questions(requests, conclude)


class LocatorGroundingReward(Reward):
    """R_RI with any :class:`BoxLocator` (an offline detector, the shapes oracle) as grounder."""

    name = "r_ri"

    def __init__(self, locator: BoxLocator) -> None:
        self.locator = locator

    def __repr__(self) -> str:
        return f"LocatorGroundingReward({self.locator!r})"

    def evaluate_batch(self, prompts, chains, images) -> list[RewardResult]:
        results = []
        for chain, image in zip(chains, images):
            if image is None:
                results.append(RewardResult(None, reason="missing image"))
                continue
            planned = _planned_by_name(parse_chain(chain))
            if not planned:
                results.append(RewardResult(0.0, reason="no boxes in chain"))
                continue
            value, ious, found = located_iou(planned, image, self.locator)
            results.append(
                RewardResult(value, reason="located", details={"grounded": _grid_lists(found), "ious": ious})
            )
        return results
