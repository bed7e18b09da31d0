"""Sample a benchmark run: every image of the benchmark's jobs, in its official layout, resumable and shardable.

Each image is its own sample with its own reasoning chain (GoT-R1 plans before every image) and depends only
on (prompt, seed): jobs are batched across prompts, and the files do not depend on the batch, on the order
or on how many processes share the work. Per image we write the official file and, beside the official files,
a record (chain, objects, problems) and the plan drawn over the image. Every file is written atomically and
the official image last, so an image exists only complete, with its record: a killed run loses at most the
batch in flight, and re-running skips what is done. Done is checked, not assumed: each record holds the
sha256 and size of its official image, and an image that no longer matches (truncated, replaced, deleted)
is named in a warning and sampled again. ``jobs.json`` lists every image the run was asked for, so scoring
can name the ones that are not there. Under ``accelerate launch`` process r of n samples jobs
r, r + n, r + 2n, ... of the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..outputs import Output, prepare_output, write_bytes_atomic, write_json_atomic
from ..progress import progress
from ..provenance import describe, differences
from ..samples import SampleFiles, write_sample
from .benchmark import Benchmark, BenchmarkError, read_record
from .records import (
    JOBS_FILE,
    ImageJob,
    check_image,
    write_job_list,
)

if TYPE_CHECKING:
    from ..model.sampler import SamplingConfig

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


def _plan_path(job: ImageJob) -> str:
    """Where a job's plan (drawn over its image) goes: beside its record."""
    return job.record[: -len(".json")] + ".png"


def image_problem(root: Path, job: ImageJob, image_size: int | None = None, run_id: str | None = None) -> str | None:
    """Why the job's official image is not done, or None when it is: its record must be readable, name this
    run's settings (``run_id``, when given) and match the file's sha256 and size (records without them, from
    older runs: the file must decode completely, at ``image_size`` pixels a side when given)."""
    record = read_record(root, job.record)
    if record is None:
        return "missing" if not (root / job.path).exists() else "its record is missing or unreadable"
    if run_id is not None and record.get("run_id", run_id) != run_id:
        return "sampled with other settings than this run's"
    return check_image(root / job.path, record, image_size)


def is_done(root: Path, job: ImageJob, image_size: int | None = None) -> bool:
    return image_problem(root, job, image_size) is None


def run_id(identity: dict[str, Any]) -> str:
    """A short name for a run's settings, kept in every image's record: a folder whose records name two
    ids holds images of two settings."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


EVAL_RUN = "gotr1 eval run"  # what an eval run folder's manifest says wrote it


def _recorded_run(folder: Path) -> dict[str, Any] | None:
    run_file = folder / RUN_FILE
    if not run_file.is_file():
        return None
    try:
        return json.loads(run_file.read_text())
    except ValueError as exc:
        raise BenchmarkError(f"{run_file}: unreadable ({exc}); choose another --out") from None


def check_run_folder(out: Path) -> dict[str, Any] | None:
    """The checks a folder passes before a model loads: a folder (or nothing yet) holding a gotr1 eval run or
    nothing. Returns its run.json, if any."""
    if out.exists() and not out.is_dir():
        raise BenchmarkError(f"--out {out}: exists and is not a folder")
    existing = _recorded_run(out)
    if existing is None and out.is_dir() and any(out.iterdir()):
        raise BenchmarkError(
            f"--out {out}: holds files but no {RUN_FILE}, so it is not a gotr1 eval run; choose an empty or new folder"
        )
    return existing


def run_owned(jobs: Sequence[ImageJob]) -> tuple[str, ...]:
    """The top-level names an eval run writes: its record, scores and results, and the jobs' folders."""
    tops = {Path(name).parts[0] for job in jobs for name in (job.path, job.record)}
    return (RUN_FILE, JOBS_FILE, "scores", "results", "results.jsonl", *sorted(tops))


def prepare_run_folder(
    out: Path,
    identity: dict[str, Any],
    categories: Sequence[str],
    *,
    overwrite: bool,
    owned: Sequence[str],
    writer: bool = True,
) -> Output:
    """Decide what an existing folder means, touching nothing in it: the same run (resume in place), another
    run (refused, naming the first setting that differs; with --overwrite sampled beside and swapped in on
    success, replacing only gotr1's files) or foreign files (refused). Writes run.json, with the union of
    the categories sampled so far, where this run writes."""
    existing = check_run_folder(out)
    differs = _first_difference(existing, identity) if existing else None
    if differs and not overwrite:
        raise BenchmarkError(
            f"--out {out}: holds a run with other settings ({describe(*differs)}); choose another --out, "
            "or pass --overwrite to replace it"
        )

    def same_run(folder: Path) -> bool:
        recorded = _recorded_run(folder)
        return recorded is not None and _first_difference(recorded, identity) is None

    output = prepare_output(
        out,
        owned=owned,
        what=EVAL_RUN,
        overwrite=bool(differs),
        resume=not differs,
        inputs=inputs_of(identity),
        writer=writer,
        continue_staging=same_run,
    )
    if writer:
        earlier = _recorded_run(output.work) or {}
        sampled = list(dict.fromkeys([*earlier.get("categories", []), *categories]))
        write_json_atomic(
            output.work / RUN_FILE, identity | {"categories": sampled, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
        )
    return output


def _first_difference(recorded: dict[str, Any], identity: dict[str, Any]):
    return next(differences({key: recorded.get(key) for key in identity}, identity), None)


def inputs_of(identity: dict[str, Any]) -> list[str]:
    """The paths a run reads (its model folder), which its folder may not be or contain."""
    return [identity["model_source"]] if identity.get("model_source") else []


def sample_run(
    bundle,
    benchmark: Benchmark,
    jobs: Sequence[ImageJob],
    out: Path,
    sampling: SamplingConfig,
    *,
    batch_size: int = 16,
    process_index: int = 0,
    num_processes: int = 1,
    show_progress: bool = True,
    settings_id: str | None = None,
) -> dict[str, Any]:
    """Sample this process's share of the jobs that are not done yet. Returns counts and the speed.

    sampling: how to sample (one chain and one image per job whatever its counts say); batch_size: images
    sampled together, each with its own chain. settings_id: the run's `run_id`, written into every record; a
    record naming another is not done."""
    from ..model.sampler import TwoPhaseSampler

    mine = list(jobs)[process_index::num_processes]
    if process_index == 0:
        write_job_list(out, jobs)
    for relative, data in benchmark.extra_files(mine).items():
        if not (out / relative).is_file() or (out / relative).read_bytes() != data:
            write_bytes_atomic(out / relative, data)
    image_size = getattr(bundle, "image_size", None)
    pending, remade = [], []
    for job in mine:
        problem = image_problem(out, job, image_size if isinstance(image_size, int) else None, settings_id)
        if problem is None:
            continue
        pending.append(job)
        # an image that was there, or whose record was (deleted since, or a run stopped between the two)
        if problem != "missing" or (out / job.record).exists():
            reason = "missing, its record is there" if problem == "missing" else problem
            log.warning("%s: %s; sampling it again", job.path, reason)
            remade.append(job.path)
    sampler = TwoPhaseSampler(bundle)
    start = time.perf_counter()
    # A bar on a terminal; a log line every GOTR1_PROGRESS_SECONDS (30) when the output is piped or a file.
    bar = progress(len(mine), benchmark.name, "img", initial=len(mine) - len(pending), enabled=show_progress)
    with bar:
        for first in range(0, len(pending), batch_size):
            batch = pending[first : first + batch_size]
            edits = benchmark.edit_requests(sampler, batch, sampling)
            generations = sampler.generate(
                [job.prompt for job in batch], sampling, seeds=[job.seed for job in batch], **_edit_arguments(edits)
            )
            for i, (job, gen) in enumerate(zip(batch, generations)):
                if edits is not None:
                    for relative, data in edits[i].files.items():
                        write_bytes_atomic(out / relative, data)
                extra = {
                    "category": job.category,
                    "prompt_index": job.prompt_index,
                    "image_index": job.image_index,
                    "image": job.path,
                    "plan": _plan_path(job),
                    "metadata": job.metadata,
                } | ({"run_id": settings_id} if settings_id else {})
                if edits is not None:
                    extra |= edits[i].record
                files = SampleFiles(
                    out / job.record, [out / job.path], [out / _plan_path(job)], extra=extra, fingerprint=True
                )
                write_sample(gen, files)  # the official image last: its presence means "done"
            bar.update(len(batch))
    seconds = time.perf_counter() - start
    if remade:
        shown = ", ".join(remade[:5]) + (f" and {len(remade) - 5} more" if len(remade) > 5 else "")
        log.warning("%d damaged or missing image(s) of an earlier run sampled again: %s", len(remade), shown)
    return {
        "images": len(mine),
        "sampled": len(pending),
        "skipped": len(mine) - len(pending),
        "remade": remade,
        "seconds": seconds,
        "images_per_second": len(pending) / seconds if pending and seconds else None,
    }


def _edit_arguments(edits) -> dict[str, Any]:
    """The sampler's arguments for a batch of edit jobs (each its chain, source tokens and mask)."""
    if edits is None:
        return {}
    return {
        "chains": [[edit.chain] for edit in edits],
        "source_image_ids": [edit.source_ids for edit in edits],
        "edit_masks": [edit.mask for edit in edits],
        "redraw": [edit.redraw for edit in edits],
    }


def sampling_identity(
    benchmark: Benchmark,
    model: str,
    source: str,
    sampling: SamplingConfig,
    images_per_prompt: int,
    options: dict[str, Any],
    provenance: dict[str, str],
) -> dict[str, Any]:
    """What makes two runs the same run (resuming may add categories or prompts, never change these): the
    benchmark, the model (its fingerprint, dtype and device class: bf16 and float32 images are not one run),
    every sampling setting as the model resolves it (`SamplingConfig.for_model`), the decode path (compiled
    and eager paths round differently) and the seeds' options. Batching alone is left out: a sample does not
    depend on its batch."""
    return {
        "benchmark": benchmark.name,
        "model": model,
        "model_source": source,
        **provenance,
        "sampling": sampling.sample_settings() | {"compile": sampling.compile},
        "images_per_prompt": images_per_prompt,
        "options": options,
    }
