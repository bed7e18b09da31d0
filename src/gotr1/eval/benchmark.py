"""What a benchmark is to `gotr1 eval`: which images it asks for, where they go, how they are read back
and how their scores add up. T2I-CompBench, GenEval and the worlds' benchmarks subclass :class:`Benchmark`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from .records import EvalImage, ImageJob, ImageScore, Scorer


class BenchmarkError(ValueError):
    """Bad benchmark input (unknown category, foreign file in a samples folder...): one line naming it."""


class IncompleteRun(BenchmarkError):
    """A run scored with images missing or damaged: the scores and results are written (each category's mean
    over the images there, marked incomplete with their names), and this says which, in one line.
    ``results`` is what :func:`gotr1.eval.scoring.score_run` would have returned."""

    def __init__(self, message: str, results: dict[str, Any]) -> None:
        super().__init__(message)
        self.results = results


UNMADE = "unscored_image"  # ImageScore.details key: why an expected image was not scored ("missing", "damaged")


@dataclass(frozen=True)
class Reference:
    """A published result shown beside ours, labelled as such."""

    label: str
    scores: Mapping[str, float]
    source: str


@dataclass
class ScorerOptions:
    """What any scorer may be built from (each takes what it needs)."""

    device: str | None = None
    batch_size: int = 16
    judge_config: str | None = None  # YAML of the judge settings (scorer "judge")
    models: dict[str, str] = field(default_factory=dict)  # role -> hub id or path, overriding a scorer's default


@dataclass
class EditRequest:
    """How a job's image is made when the benchmark edits a source image (an edit benchmark): the chain to draw,
    the source's image tokens, the cells to re-sample (True), whether to redraw every token instead (keeping the
    source's pixels outside the mask; `TwoPhaseSampler.generate`) and what to keep beside the image."""

    chain: str
    source_ids: Any  # [N] VQ codes
    mask: Any  # [N] bool
    files: dict[str, bytes] = field(default_factory=dict)  # written into the run, path relative to it
    redraw: bool = False
    record: dict[str, Any] = field(default_factory=dict)  # added to the job's record


class Benchmark(ABC):
    """One benchmark: categories, the images each asks for, the file layout, scorers and aggregation."""

    name: str
    categories: tuple[str, ...]
    default_categories: tuple[str, ...]
    default_images_per_prompt: int
    default_scorer: str
    references: tuple[Reference, ...] = ()
    pass_mark: float = 0.5  # an image "passes" at this score (for the failure split and best/worst lists)

    @abstractmethod
    def jobs(
        self, categories: Sequence[str], images_per_prompt: int, limit: int | None = None, **options: Any
    ) -> list[ImageJob]:
        """Every image of a run, in the official order."""

    @abstractmethod
    def read_back(self, run_dir: Path, categories: Sequence[str]) -> dict[str, list[EvalImage]]:
        """The run's images per category as the official scripts would read them, in their order;
        BenchmarkError naming any file the official scripts would trip on."""

    @abstractmethod
    def scorers(self) -> Mapping[str, Callable[[ScorerOptions], Scorer]]:
        """Scorer name -> factory."""

    def extra_files(self, jobs: Sequence[ImageJob]) -> dict[str, bytes]:
        """Files besides the images that the official layout needs (path relative to the run -> bytes)."""
        return {}

    def edit_requests(self, sampler, jobs: Sequence[ImageJob], sampling) -> list[EditRequest] | None:
        """For an edit benchmark, each job's `EditRequest` (its sources sampled with `sampler` as needed);
        None (the default) for a benchmark whose images are drawn from their prompts."""
        return None

    def output_dir(self, run_dir: Path, category: str) -> Path:
        """Where a scorer writes a category's official result files."""
        return run_dir / category

    def write_official_results(self, run_dir: Path, scorer: str, scores: Sequence[ImageScore]) -> None:  # noqa: B027
        """Result files the official aggregation reads, written once every category is scored (for
        benchmarks whose official output spans categories; per-category files are the scorer's)."""

    def check_categories(self, categories: Sequence[str]) -> list[str]:
        unknown = [c for c in categories if c not in self.categories]
        if unknown:
            raise BenchmarkError(
                f"unknown {self.name} categor{'ies' if len(unknown) > 1 else 'y'} "
                f"{', '.join(map(repr, unknown))}; choose from {', '.join(self.categories)}"
            )
        if not categories:
            raise BenchmarkError(f"no categories given; choose from {', '.join(self.categories)}")
        return list(dict.fromkeys(categories))

    def summarize(self, scores: Sequence[ImageScore]) -> dict[str, Any]:
        """Per category: mean score, counts and the failure split; plus the overall figure."""
        by_category: dict[str, list[ImageScore]] = {}
        for s in scores:
            by_category.setdefault(s.category, []).append(s)
        categories = {name: summarize_category(items, self.pass_mark) for name, items in by_category.items()}
        means = [c["score"] for c in categories.values() if c["score"] is not None]
        return {
            "categories": categories,
            "overall": fmean(means) if means else None,
            "incomplete": [name for name, c in categories.items() if c["incomplete"]],
        }


def summarize_category(scores: Sequence[ImageScore], pass_mark: float) -> dict[str, Any]:
    """Mean score over scored images and, for the images that fail, whether their plan was already wrong.

    A failing image (score < pass_mark) whose plan fails the same check (plan_score < pass_mark) counts as
    "plan wrong": fix the reasoning. One whose plan passes counts as "image off a right plan": fix the
    drawing. Without a plan score it is "plan not judged".

    An image the run asked for that is missing or damaged (``details["unscored_image"]``) is not scored: the mean is
    over the images there, and the category is marked ``incomplete`` with their names.
    """
    scored = [s for s in scores if s.score is not None]
    unmade = {
        kind: [s.path for s in scores if s.score is None and s.details.get(UNMADE) == kind]
        for kind in ("missing", "damaged")
    }
    failed = [s for s in scored if s.score < pass_mark]
    plans = [s.plan_score for s in scored if s.plan_score is not None]
    return {
        "score": fmean(s.score for s in scored) if scored else None,
        "images": len(scores),
        "scored": len(scored),
        "missing": len(scores) - len(scored),
        "plan_score": fmean(plans) if plans else None,
        "failures": {
            "total": len(failed),
            "plan_wrong": sum(1 for s in failed if s.plan_score is not None and s.plan_score < pass_mark),
            "image_off_plan": sum(1 for s in failed if s.plan_score is not None and s.plan_score >= pass_mark),
            "plan_not_judged": sum(1 for s in failed if s.plan_score is None),
        },
        "incomplete": bool(unmade["missing"] or unmade["damaged"]),
        "missing_images": unmade["missing"],
        "damaged_images": unmade["damaged"],
    }


def read_record(root: Path, relative: str) -> dict[str, Any] | None:
    """A sample record written beside an official file; None when absent or unreadable."""
    path = root / relative
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
