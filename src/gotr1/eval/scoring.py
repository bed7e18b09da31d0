"""Score a sampled run with one scorer and write what it found.

``RUN/scores/<scorer>.jsonl`` holds one :class:`ImageScore` per image; ``RUN/results/<scorer>.json`` the
per-category summary (mean score, missing images, the failure split into "plan already wrong" and "image
does not follow a right plan"), the scorer's notes (every model substitution) and the benchmark's published
reference rows; plus the official result files the scorer writes beside the images. Scoring some categories
updates those and keeps the other categories' scores.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import registry
from ..outputs import write_bytes_atomic, write_json_atomic
from .benchmark import UNMADE, Benchmark, BenchmarkError, IncompleteRun, ScorerOptions, read_record
from .records import (
    JOBS_FILE,
    EvalImage,
    ImageScore,
    ScorerError,
    check_image,
    read_job_list,
)
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


def expected_images(
    run_dir: Path, run: dict[str, Any], benchmark: Benchmark, categories: Sequence[str]
) -> dict[str, dict[str, tuple[str, str | None]]]:
    """Per category, every image the run was asked for (official path -> (prompt, record path)), from the job
    list sampling writes (``jobs.json``). For a category sampled before that list existed: the benchmark's
    jobs for the run's settings (without ``--limit``, which run.json does not keep) whose image or record is
    there, so an image deleted beside its record is still expected."""
    listed = read_job_list(run_dir) or {}
    out: dict[str, dict[str, tuple[str, str | None]]] = {}
    unlisted = []
    for category in categories:
        if category in listed:
            out[category] = {e["path"]: (str(e.get("prompt", "")), e.get("record")) for e in listed[category]}
        else:
            unlisted.append(category)
    if unlisted:
        log.info(
            "%s: no %s for %s; expecting the images whose image or record is there",
            run_dir,
            JOBS_FILE,
            ", ".join(unlisted),
        )
        try:
            options = run.get("options") or {}
            jobs = benchmark.jobs(unlisted, int(run.get("images_per_prompt", 1)), None, **options)
        except (BenchmarkError, TypeError, ValueError) as exc:
            log.warning("%s: the run's jobs cannot be listed (%s); scoring the images that are there", run_dir, exc)
            jobs = []
        for category in unlisted:
            out[category] = {}
        for job in jobs:
            if (run_dir / job.path).exists() or (run_dir / job.record).exists():
                out[job.category][job.path] = (job.prompt, job.record)
    return out


def _read_kept_scores(path: Path, replaced: set[str], strict: bool) -> dict[str, list[str]]:
    """The lines of an earlier scores file, per category, left out the ``replaced`` categories' (kept as
    written, byte for byte). An unreadable file is an error when other categories' scores must be kept
    (``strict``), else it is replaced whole (logged)."""
    kept: dict[str, list[str]] = {}
    if not path.is_file():
        return kept
    try:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            try:
                category = json.loads(line)["category"]
                if not isinstance(category, str):
                    raise TypeError("no category")
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"line {number}: {exc}") from None
            if category not in replaced:
                kept.setdefault(category, []).append(line + "\n")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if strict:
            raise BenchmarkError(
                f"{path}: unreadable ({exc}), so the other categories' scores cannot be kept; score every "
                "category (leave out --categories) to write it again"
            ) from None
        log.warning("%s: unreadable (%s); writing it again", path, exc)
        return {}
    return kept


def _unmade_score(category: str, path: str, prompt: str, record: str | None, kind: str, why: str) -> ImageScore:
    return ImageScore(
        path=path,
        category=category,
        prompt=prompt,
        score=None,
        reason=f"image {why}; sample the run again (the same command) to make it",
        record=record,
        details={UNMADE: kind},
    )


def score_run(
    run_dir: str | Path,
    scorer_name: str | None = None,
    options: ScorerOptions | None = None,
    *,
    categories: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Score every image of the run (or of `categories`) and write scores, results and official files.

    `categories` re-scores those and keeps every other category's scores: ``scores/<scorer>.jsonl`` keeps
    their lines as written, results are summarized over all of them, files are replaced atomically.

    Missing and damaged images: the images a category expects are the run's jobs (``jobs.json``, written by
    sampling; see :func:`expected_images` for older runs), not what is on disk. An expected image that is not
    there is *missing*; one whose file does not match the sha256 its record holds (or, without one, does not
    decode) is *damaged* and is never given to the scorer. Each gets a score line with score null and the
    reason, so the category's ``images`` counts it and its ``missing`` column is never 0; the mean is over the
    images there, and the category is marked ``incomplete`` with their names (``missing_images``,
    ``damaged_images``), in results and in :func:`summary_table`. Because a mean over fewer images is not the
    benchmark's number, after writing everything this raises :class:`IncompleteRun` (the command exits 1),
    with a one-line summary naming the count and the first images, and the results on it.
    """
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    benchmark = benchmark_of(run["benchmark"])
    name = scorer_name or benchmark.default_scorer
    factories = benchmark.scorers()
    if name not in factories:
        raise BenchmarkError(f"unknown scorer {name!r} for {benchmark.name}; choose from {', '.join(factories)}")
    wanted = benchmark.check_categories(list(categories) if categories else run.get("categories", []))
    images = benchmark.read_back(run_dir, wanted)  # errors about foreign files before any model loads
    expected = expected_images(run_dir, run, benchmark, wanted)
    scores_path = run_dir / "scores" / f"{name}.jsonl"
    kept = _read_kept_scores(scores_path, set(wanted), strict=bool(categories))
    scorer = factories[name](options or ScorerOptions())
    fresh: dict[str, list[ImageScore]] = {}
    for category in wanted:
        items = images.get(category, [])
        sound: list[EvalImage] = []
        unmade: dict[str, ImageScore] = {}
        for item in items:
            problem = check_image(item.path, item.record)
            if problem is None:
                sound.append(item)
            else:
                kind = "missing" if problem == "missing" else "damaged"
                unmade[item.job.path] = _unmade_score(
                    category, item.job.path, item.prompt, item.job.record, kind, problem
                )
                log.warning("%s: %s; not scored", item.path, problem)
        there = {item.job.path for item in items}
        for path, (prompt, record) in expected.get(category, {}).items():
            if path not in there:
                if record and not prompt:
                    prompt = str((read_record(run_dir, record) or {}).get("prompt", ""))
                unmade[path] = _unmade_score(
                    category, path, prompt, record, "missing", "missing (the run asked for it)"
                )
        if not sound and not unmade:
            log.warning("%s: no images to score", category)
            continue
        found: list[ImageScore] = []
        if sound:
            log.info("scoring %s: %d image(s) with %s", category, len(sound), name)
            found = scorer.score(category, sound, benchmark.output_dir(run_dir, category))
            if len(found) != len(sound):
                raise ScorerError(f"scorer {name} returned {len(found)} scores for {len(sound)} images of {category}")
        # the images in the order they were read back (damaged ones in their place), then the missing ones
        scored = iter(found)
        ordered = [unmade.pop(item.job.path) if item.job.path in unmade else next(scored) for item in items]
        fresh[category] = ordered + list(unmade.values())
    lines: dict[str, list[str]] = {}
    for category in [*kept, *fresh]:
        if category in fresh:
            lines[category] = [json.dumps(s.to_dict()) + "\n" for s in fresh[category]]
        else:
            lines[category] = kept[category]
    scores = [ImageScore.from_dict(json.loads(line)) for block in lines.values() for line in block]
    benchmark.write_official_results(run_dir, name, scores)
    write_bytes_atomic(scores_path, "".join(line for block in lines.values() for line in block).encode())
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
    asked = results["summary"]["categories"]
    missing = [p for c in wanted if c in asked for p in asked[c]["missing_images"]]
    damaged = [p for c in wanted if c in asked for p in asked[c]["damaged_images"]]
    if missing or damaged:
        raise IncompleteRun(_incomplete_line(missing, damaged, name), results)
    return results


def _names(paths: Sequence[str], shown: int = 3) -> str:
    return ", ".join(paths[:shown]) + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


def _incomplete_line(missing: Sequence[str], damaged: Sequence[str], scorer: str) -> str:
    parts = [f"{len(v)} {k} ({_names(v)})" for k, v in (("missing", missing), ("damaged", damaged)) if v]
    return (
        f"{len(missing) + len(damaged)} image(s) of the run not scored: {'; '.join(parts)}; the scores are over "
        f"the images there, marked incomplete (every name in results/{scorer}.json); sample the run again "
        "(the same gotr1 eval command) to make them"
    )


def summary_table(results: dict[str, Any]) -> str:
    """A plain-text table of a results dict: category, score, images, and the failure split."""
    summary = results["summary"]
    extra = summary.get("columns", [])  # a benchmark's own per-category figures: [key, header]
    rows = [("category", "score", "images", "missing", "plan wrong", "off plan", "not judged", *(h for _, h in extra))]
    footnotes = []
    for category, c in summary["categories"].items():
        f = c["failures"]
        mark = "*" if c.get("incomplete") else ""
        if mark:
            counts = [f"{len(c.get(k + '_images', []))} {k}" for k in ("missing", "damaged") if c.get(k + "_images")]
            unmade = [*c.get("missing_images", []), *c.get("damaged_images", [])]
            footnotes.append(
                f"* {category} incomplete: {', '.join(counts)} ({_names(unmade)}); its score is over the images there"
            )
        rows.append(
            (
                category,
                ("-" if c["score"] is None else f"{c['score']:.4f}") + mark,
                str(c["images"]),
                str(c["missing"]),
                str(f["plan_wrong"]),
                str(f["image_off_plan"]),
                str(f["plan_not_judged"]),
                *("-" if c.get(key) is None else f"{c[key]:.4f}" for key, _ in extra),
            )
        )
    if summary.get("overall") is not None:
        mark = "*" if summary.get("incomplete") else ""
        rows.append(("overall (mean of categories)", f"{summary['overall']:.4f}{mark}", *[""] * (len(rows[0]) - 2)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    header = f"{results['benchmark']} scored by {results['scorer']}"
    notes = [f"note: {n}" for n in results.get("notes", [])]
    return "\n".join([header, *lines, *footnotes, *notes])
