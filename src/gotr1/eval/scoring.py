"""Score a sampled run with one scorer and write what it found.

``RUN/scores/<scorer>.jsonl`` holds one :class:`ImageScore` per image; ``RUN/results/<scorer>.json`` the
per-category summary (mean score, missing images, the failure split into "plan already wrong" and "image
does not follow a right plan"), the scorer's notes (every model substitution) and the benchmark's published
reference rows; plus the official result files the scorer writes beside the images.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import registry
from .benchmark import Benchmark, BenchmarkError, ScorerOptions
from .records import ImageScore, ScorerError, write_bytes_atomic, write_json_atomic
from .sampling import RUN_FILE

log = logging.getLogger(__name__)


def read_run(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise BenchmarkError(
            f"{run_dir}: no {RUN_FILE}, so not a gotr1 eval run (sample it with gotr1 eval <benchmark>)"
        )
    try:
        run = json.loads(path.read_text())
    except ValueError as exc:
        raise BenchmarkError(f"{path}: unreadable ({exc})") from None
    if not isinstance(run, dict) or "benchmark" not in run:
        raise BenchmarkError(f"{path}: no benchmark named")
    return run


def benchmark_of(name: str) -> Benchmark:
    try:
        suite = registry.get(name)
    except registry.UnknownSuite as exc:
        raise BenchmarkError(str(exc)) from None
    if suite.benchmark is None:
        raise BenchmarkError(f"{name} offers no benchmark")
    return suite.benchmark()


def score_run(
    run_dir: str | Path,
    scorer_name: str | None = None,
    options: ScorerOptions | None = None,
    *,
    categories: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Score every image of the run (or of `categories`) and write scores, results and official files."""
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    benchmark = benchmark_of(run["benchmark"])
    name = scorer_name or benchmark.default_scorer
    factories = benchmark.scorers()
    if name not in factories:
        raise BenchmarkError(f"unknown scorer {name!r} for {benchmark.name}; choose from {', '.join(factories)}")
    wanted = benchmark.check_categories(list(categories) if categories else run.get("categories", []))
    images = benchmark.read_back(run_dir, wanted)  # errors about foreign files before any model loads
    scorer = factories[name](options or ScorerOptions())
    scores: list[ImageScore] = []
    for category in wanted:
        items = images.get(category, [])
        if not items:
            log.warning("%s: no images to score", category)
            continue
        log.info("scoring %s: %d image(s) with %s", category, len(items), name)
        found = scorer.score(category, items, benchmark.output_dir(run_dir, category))
        if len(found) != len(items):
            raise ScorerError(f"scorer {name} returned {len(found)} scores for {len(items)} images of {category}")
        scores.extend(found)
    benchmark.write_official_results(run_dir, name, scores)
    lines = "".join(json.dumps(s.to_dict()) + "\n" for s in scores)
    write_bytes_atomic(run_dir / "scores" / f"{name}.jsonl", lines.encode())
    results = {
        "benchmark": benchmark.name,
        "scorer": name,
        "notes": list(getattr(scorer, "notes", [])),
        "run": run,
        "pass_mark": benchmark.pass_mark,
        "summary": benchmark.summarize(scores),
        "references": [asdict(r) for r in benchmark.references],
    }
    write_json_atomic(run_dir / "results" / f"{name}.json", results)
    return results


def summary_table(results: dict[str, Any]) -> str:
    """A plain-text table of a results dict: category, score, images, and the failure split."""
    rows = [("category", "score", "images", "missing", "plan wrong", "off plan", "not judged")]
    summary = results["summary"]
    for category, c in summary["categories"].items():
        f = c["failures"]
        rows.append(
            (
                category,
                "-" if c["score"] is None else f"{c['score']:.4f}",
                str(c["images"]),
                str(c["missing"]),
                str(f["plan_wrong"]),
                str(f["image_off_plan"]),
                str(f["plan_not_judged"]),
            )
        )
    if summary.get("overall") is not None:
        rows.append(("overall (mean of categories)", f"{summary['overall']:.4f}", "", "", "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    header = f"{results['benchmark']} scored by {results['scorer']}"
    notes = [f"note: {n}" for n in results.get("notes", [])]
    return "\n".join([header, *lines, *notes])
