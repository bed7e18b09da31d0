"""Scoring a folder written by ``gotr1 generate``: the engine of ``gotr1 reward``.

Every ``chain.json`` under the folder is a sample (prompt, chain, one or more images). Each gets a
``reward.json`` beside it with every component's value, the reason behind it and the judge's raw
answers. Samples that already have one are skipped unless ``force`` is set, so an interrupted run
picks up where it stopped and a finished one costs nothing to re-run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from PIL import Image

from .scoring import RewardPipeline, ScoredSample

__all__ = ["FolderError", "score_folder", "summary_table"]

RESULT_FILE = "reward.json"


class FolderError(ValueError):
    pass


@dataclass
class _Row:
    sample_dir: Path
    prompt: str
    chain: str
    image_name: str | None
    image: Image.Image | None


def _rows(sample_json: Path) -> list[_Row]:
    try:
        record = json.loads(sample_json.read_text())
        prompt, chain = record["prompt"], record["chain"]
    except (OSError, ValueError) as exc:
        raise FolderError(f"{sample_json}: not readable JSON ({exc})") from None
    except KeyError as exc:
        raise FolderError(f"{sample_json}: missing key {exc.args[0]!r}") from None
    names = [entry["image"] for entry in record.get("images", []) if isinstance(entry, dict) and "image" in entry]
    if not names:  # a chain without images is still scored: its image rewards come out missing
        return [_Row(sample_json.parent, prompt, chain, None, None)]
    rows = []
    for name in names:
        path = sample_json.parent / name
        image = None
        if path.is_file():
            with Image.open(path) as opened:
                image = opened.convert("RGB")
        rows.append(_Row(sample_json.parent, prompt, chain, name, image))
    return rows


def _record(row: _Row, scored: ScoredSample) -> dict[str, Any]:
    return {
        "image": row.image_name,
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


def score_folder(folder: str | Path, pipeline: RewardPipeline, *, batch_size: int = 32, force: bool = False,
                 progress=None) -> dict[str, Any]:
    """Score every sample under ``folder``; returns the summary (also written to reward_summary.json)."""
    root = Path(folder)
    if not root.is_dir():
        raise FolderError(f"{root}: no such directory")
    samples = sorted(root.rglob("chain.json"))
    if not samples:
        raise FolderError(f"{root}: no chain.json found (expected a folder written by `gotr1 generate`)")
    todo = [s for s in samples if force or not (s.parent / RESULT_FILE).is_file()]
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        rows = [row for sample in batch for row in _rows(sample)]
        scored = pipeline.evaluate([r.prompt for r in rows], [r.chain for r in rows], [r.image for r in rows])
        by_dir: dict[Path, list[dict]] = {}
        for row, result in zip(rows, scored):
            by_dir.setdefault(row.sample_dir, []).append(_record(row, result))
        for sample_dir, records in by_dir.items():
            _write_atomic(sample_dir / RESULT_FILE, {"combine": pipeline.combine, "images": records})
        if progress is not None:
            progress(min(start + batch_size, len(todo)), len(todo))
    summary = _summarize(samples, list(pipeline.components), pipeline)
    summary["scored_now"] = len(todo)
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
        table[name] = {"mean": fmean(present) if present else None, "scored": len(present),
                       "missing": len(column) - len(present)}
    return {"samples": len(samples), "combine": pipeline.combine, "table": table, "this_run": pipeline.report()}


def summary_table(summary: dict[str, Any]) -> str:
    """The summary as an aligned text table, one line per component and the total."""
    lines = [f"{'reward':<10} {'mean':>8} {'scored':>8} {'missing':>8}"]
    for name, row in summary["table"].items():
        mean = "-" if row["mean"] is None else f"{row['mean']:.4f}"
        lines.append(f"{name:<10} {mean:>8} {row['scored']:>8} {row['missing']:>8}")
    for model_id, stats in summary["this_run"]["judges"].items():
        lines.append(f"judge {model_id}: {stats['requests']} requests, {stats['failed']} failed, "
                     f"{stats['retries']} retries, {stats['cached']} cached, {stats['unreadable']} unreadable, "
                     f"{stats['clamped']} clamped")
    return "\n".join(lines)
