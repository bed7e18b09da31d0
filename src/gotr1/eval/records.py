"""What an evaluation is made of: the images a benchmark asks for, and the score each one gets.

A benchmark turns its prompt files into :class:`ImageJob` s (where each official file goes, from which
prompt and seed). Sampling writes the official file and, beside it (never among the official files), our
own record of the sample: its reasoning chain and planned objects. Scoring reads both back as
:class:`EvalImage` and returns one :class:`ImageScore` per image; a scorer is any object with
``name``, ``notes`` and ``score(category, images, out_dir)`` (see :class:`Scorer`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from ..chain import Box, PlannedObject
from ..outputs import write_json_atomic

log = logging.getLogger(__name__)

JOBS_FILE = "jobs.json"  # in a run folder: every image the run has been asked for, per category

__all__ = [
    "EvalImage",
    "ImageJob",
    "ImageScore",
    "Scorer",
    "ScorerError",
    "check_image",
    "read_job_list",
    "write_job_list",
]


class ScorerError(RuntimeError):
    """A scorer cannot run (its model cannot be loaded, a category it cannot score): one line naming it."""


@dataclass(frozen=True)
class ImageJob:
    """One image a benchmark asks for."""

    category: str  # T2I-CompBench category, GenEval tag, or a world's category
    prompt: str
    prompt_index: int  # position of the prompt in the benchmark's (category's) prompt list
    image_index: int  # k: the k-th image of this prompt
    seed: int
    path: str  # the official image file, relative to the run folder
    record: str  # our sample record (chain, objects), relative to the run folder, outside the official files
    metadata: dict[str, Any] | None = None  # e.g. GenEval's metadata line, a world's prompt meaning

    @property
    def key(self) -> str:
        """Identity of the job within a run (the image path is unique)."""
        return self.path


@dataclass
class EvalImage:
    """A sampled image read back for scoring, with the plan the model wrote before drawing it."""

    job: ImageJob
    root: Path
    record: dict[str, Any] | None = None  # the sample record written beside the official file, if any

    @property
    def path(self) -> Path:
        return self.root / self.job.path

    @property
    def category(self) -> str:
        return self.job.category

    @property
    def prompt(self) -> str:
        return self.job.prompt

    def image(self) -> Image.Image:
        with Image.open(self.path) as im:
            return im.convert("RGB")

    @property
    def chain(self) -> str | None:
        return None if self.record is None else self.record.get("chain")

    @property
    def objects(self) -> list[PlannedObject]:
        """The planned objects (name and box on the 0..1000 grid); empty when there is no record."""
        if not self.record:
            return []
        out = []
        for obj in self.record.get("objects", []):
            box = obj.get("box")
            out.append(PlannedObject(obj["name"], None if box is None else Box(*box)))
        return out


@dataclass
class ImageScore:
    """One image's score and, where the scorer can read a plan, the same check applied to the plan.

    ``score`` is in [0, 1] (GenEval: 1 correct, 0 not); None means the scorer could not score the image
    (``reason`` says why), never a silent 0. ``plan_score`` answers "was the plan already wrong?" with
    the same rule where one applies (None where the scorer cannot judge a plan).
    """

    path: str
    category: str
    prompt: str
    score: float | None
    plan_score: float | None = None
    reason: str | None = None
    record: str | None = None  # the sample record (chain, objects) relative to the run folder, if any
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageScore:
        return cls(
            **{k: data.get(k) for k in ("path", "category", "prompt", "score", "plan_score", "reason", "record")},
            details=data.get("details") or {},
        )


class Scorer(Protocol):
    """Scores one category's images. ``notes`` name every model substitution or approximation (they are
    shown wherever the scorer's numbers appear)."""

    name: str
    notes: list[str]

    def score(self, category: str, images: Sequence[EvalImage], out_dir: Path) -> list[ImageScore]:
        """One score per image, in order. ``out_dir`` is the category's folder (official result files go
        there, under the names the official scripts use)."""
        ...


def check_image(path: Path, record: dict[str, Any] | None, size: int | None = None) -> str | None:
    """Why the official image at ``path`` cannot be trusted, or None when it can.

    With the fingerprint its record holds (`gotr1.samples.image_fingerprint`): the file's size, then its sha256.
    A record without one (runs made before records held it): a full decode, and the side ``size`` in
    pixels when given. Never raises for a damaged file: the reason names what is wrong.
    """
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    expected_hash = record.get("image_sha256") if isinstance(record, dict) else None
    if isinstance(expected_hash, str):
        expected_bytes = record.get("image_bytes")
        if isinstance(expected_bytes, int) and actual != expected_bytes:
            return f"damaged ({actual} bytes, its record says {expected_bytes})"
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            return f"unreadable ({exc.strerror or exc})"
        if digest.hexdigest() != expected_hash:
            return "damaged (its sha256 differs from the one its record holds)"
        return None
    try:
        with Image.open(path) as im:
            im.load()
            found = im.size
    except Exception as exc:  # noqa: BLE001 - any decoding failure means the file is damaged
        return f"damaged (does not decode: {exc})"
    if size is not None and found != (size, size):
        return f"damaged ({found[0]}x{found[1]} pixels, expected {size}x{size})"
    return None


def read_job_list(root: Path) -> dict[str, list[dict[str, Any]]] | None:
    """The run's job list (category -> [{path, record, prompt}]) as sampling wrote it; None for runs made
    before it was written, or when it is unreadable (logged)."""
    path = root / JOBS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        categories = data["categories"]
        if not isinstance(categories, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("path"), str) for v in categories.values() for e in v
        ):
            raise ValueError("no job list per category")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s: unreadable (%s); the run's expected images are read from its records instead", path, exc)
        return None
    return categories


def write_job_list(root: Path, jobs: Sequence[ImageJob]) -> None:
    """Add the jobs to the run's job list (a resume may add categories or prompts; none is ever dropped)."""
    known = read_job_list(root) or {}
    merged = {category: {e["path"]: e for e in entries} for category, entries in known.items()}
    for job in jobs:
        merged.setdefault(job.category, {})[job.path] = {"path": job.path, "record": job.record, "prompt": job.prompt}
    data = {"categories": {category: list(entries.values()) for category, entries in merged.items()}}
    if data["categories"] != known:
        write_json_atomic(root / JOBS_FILE, data)
