"""Scoring a folder written by ``gotr1 generate``: the engine of ``gotr1 reward``.

Every ``chain.json`` under the folder is a sample (prompt, chain, one or more images). Each gets a
``reward.json`` beside it with every component's value, the reason behind it and the judge's raw
answers, and a fingerprint of what was scored (prompt, chain, image bytes, components). A sample counts as
done only when its reward.json is complete (no component missing, e.g. after a judge outage) and its
fingerprint matches the sample as it is now (a regenerated image or an edited chain is scored again), so an
interrupted run picks up where it stopped and a finished one costs nothing to re-run (``force`` re-scores
all). One unreadable sample (broken JSON, an image that is not one, too large, or outside the folder) is
reported and skipped, never the end of the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from PIL import Image

from .scoring import RewardPipeline, ScoredSample

__all__ = ["FolderError", "score_folder", "summary_table"]

RESULT_FILE = "reward.json"
MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # a larger "image" is refused before it is decoded
log = logging.getLogger(__name__)


class FolderError(ValueError):
    pass


@dataclass
class _Row:
    sample_dir: Path
    prompt: str
    chain: str
    image_name: str | None
    image: Image.Image | None
    fingerprint: str = ""
    problem: str | None = None  # why the image could not be used (it is then scored as missing)


@dataclass
class _Sample:
    path: Path  # its chain.json
    rows: list[_Row] = field(default_factory=list)
    problem: str | None = None  # why the sample cannot be scored at all


def _fingerprint(components: list[str], prompt: str, chain: str, image_bytes: bytes | None) -> str:
    digest = hashlib.sha256(json.dumps([components, prompt, chain]).encode())
    digest.update(image_bytes or b"")
    return digest.hexdigest()


def _load_image(sample_dir: Path, name: object) -> tuple[Image.Image | None, bytes | None, str | None]:
    """(image, its bytes, problem): a path outside the sample's folder, a missing, unreadable, truncated or
    oversized file is a problem, never an exception."""
    if not isinstance(name, str) or not name:
        return None, None, f"image entry {name!r} is not a file name"
    path = (sample_dir / name).resolve()
    if not path.is_relative_to(sample_dir.resolve()):
        return None, None, f"image {name!r} lies outside the sample folder; refused"
    if not path.is_file():
        return None, None, f"image {name!r} not found"
    try:
        data = path.read_bytes()
        with Image.open(path) as opened:
            if opened.width * opened.height > MAX_IMAGE_PIXELS:
                return None, data, f"image {name!r} is {opened.width}x{opened.height}, too large to score"
            image = opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return None, None, f"image {name!r} is not a readable image ({exc})"
    return image, data, None


def _read_sample(sample_json: Path, components: list[str]) -> _Sample:
    sample = _Sample(sample_json)
    try:
        record = json.loads(sample_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        sample.problem = f"not readable JSON ({exc})"
        return sample
    if not isinstance(record, dict):
        sample.problem = f"expected a JSON object, got a {type(record).__name__}"
        return sample
    prompt, chain = record.get("prompt"), record.get("chain")
    for key, value in (("prompt", prompt), ("chain", chain)):
        if not isinstance(value, str):
            sample.problem = f"missing key {key!r}" if value is None else f"{key!r} is not text"
            return sample
    images = record.get("images", [])
    entries = [entry.get("image") for entry in images if isinstance(entry, dict)] if isinstance(images, list) else []
    if not entries:  # a chain without images is still scored: its image rewards come out missing
        sample.rows.append(
            _Row(sample_json.parent, prompt, chain, None, None, _fingerprint(components, prompt, chain, None))
        )
        return sample
    for name in entries:
        image, data, problem = _load_image(sample_json.parent, name)
        sample.rows.append(
            _Row(
                sample_json.parent,
                prompt,
                chain,
                name if isinstance(name, str) else None,
                image,
                _fingerprint(components, prompt, chain, data),
                problem,
            )
        )
    return sample


def _is_done(sample: _Sample, components: list[str]) -> bool:
    """Complete and about these inputs: every component has a value and every fingerprint matches."""
    path = sample.path.parent / RESULT_FILE
    try:
        saved = json.loads(path.read_text())
        records = saved["images"]
        if [r.get("fingerprint") for r in records] != [row.fingerprint for row in sample.rows]:
            return False
        return all(r["components"].get(name, {}).get("value") is not None for r in records for name in components)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _record(row: _Row, scored: ScoredSample) -> dict[str, Any]:
    return {
        "image": row.image_name,
        "fingerprint": row.fingerprint,
        **({"image_problem": row.problem} if row.problem else {}),
        "total": scored.total,
        "components": {
            name: {"value": r.value, "reason": r.reason, "raw": r.raw, **({"details": r.details} if r.details else {})}
            for name, r in scored.results.items()
        },
    }


def _write_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def score_folder(
    folder: str | Path, pipeline: RewardPipeline, *, batch_size: int = 32, force: bool = False, progress=None
) -> dict[str, Any]:
    """Score every sample under ``folder``; returns the summary (also written to reward_summary.json)."""
    root = Path(folder)
    if not root.is_dir():
        raise FolderError(f"{root}: no such directory")
    paths = sorted(root.rglob("chain.json"))
    if not paths:
        raise FolderError(f"{root}: no chain.json found (expected a folder written by `gotr1 generate`)")
    components = list(pipeline.components)
    samples = [_read_sample(path, components) for path in paths]
    unreadable = [s for s in samples if s.problem is not None]
    for sample in unreadable:
        log.warning("%s: skipped: %s", sample.path, sample.problem)
    readable = [s for s in samples if s.problem is None]
    if not readable:
        first = unreadable[0]
        raise FolderError(
            f"{first.path}: {first.problem} (and no other sample is readable)"
            if len(unreadable) > 1
            else f"{first.path}: {first.problem}"
        )
    todo = [s for s in readable if force or not _is_done(s, components)]
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        rows = [row for sample in batch for row in sample.rows]
        scored = pipeline.evaluate([r.prompt for r in rows], [r.chain for r in rows], [r.image for r in rows])
        by_dir: dict[Path, list[dict]] = {}
        for row, result in zip(rows, scored):
            by_dir.setdefault(row.sample_dir, []).append(_record(row, result))
        for sample_dir, records in by_dir.items():
            _write_atomic(sample_dir / RESULT_FILE, {"combine": pipeline.combine, "images": records})
        if progress is not None:
            progress(min(start + batch_size, len(todo)), len(todo))
    samples = [s.path for s in readable]
    summary = _summarize(samples, list(pipeline.components), pipeline)
    summary["scored_now"] = len(todo)
    summary["unreadable"] = [{"sample": str(s.path), "problem": s.problem} for s in unreadable]
    _write_atomic(root / "reward_summary.json", summary)
    return summary


def _summarize(samples: list[Path], components: list[str], pipeline: RewardPipeline) -> dict[str, Any]:
    values: dict[str, list[float | None]] = {name: [] for name in [*components, "total"]}
    for sample in samples:
        path = sample.parent / RESULT_FILE
        if not path.is_file():
            continue
        for record in json.loads(path.read_text())["images"]:
            values["total"].append(record["total"])
            for name in components:
                values[name].append(record["components"].get(name, {}).get("value"))
    table = {}
    for name, column in values.items():
        present = [v for v in column if v is not None]
        table[name] = {
            "mean": fmean(present) if present else None,
            "scored": len(present),
            "missing": len(column) - len(present),
        }
    return {"samples": len(samples), "combine": pipeline.combine, "table": table, "this_run": pipeline.report()}


def summary_table(summary: dict[str, Any]) -> str:
    """The summary as an aligned text table, one line per component and the total."""
    lines = [f"{'reward':<10} {'mean':>8} {'scored':>8} {'missing':>8}"]
    for name, row in summary["table"].items():
        mean = "-" if row["mean"] is None else f"{row['mean']:.4f}"
        lines.append(f"{name:<10} {mean:>8} {row['scored']:>8} {row['missing']:>8}")
    for bad in summary.get("unreadable", []):
        lines.append(f"skipped {bad['sample']}: {bad['problem']}")
    for model_id, stats in summary["this_run"]["judges"].items():
        lines.append(
            f"judge {model_id}: {stats['requests']} requests, {stats['failed']} failed, "
            f"{stats['retries']} retries, {stats['cached']} cached, {stats['unreadable']} unreadable, "
            f"{stats['clamped']} clamped"
        )
    return "\n".join(lines)
