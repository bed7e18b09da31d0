"""Sample a benchmark run: every image of the benchmark's jobs, in its official layout, resumable and shardable.

Each image is its own sample with its own reasoning chain (GoT-R1 plans before every image) and depends only
on (prompt, seed): jobs are batched across prompts, and the files do not depend on the batch, on the order
or on how many processes share the work. Per image we write the official file and, beside the official files,
a record (chain, objects, problems) and the plan drawn over the image. Every file is written atomically and
the official image last, so an image exists only complete, with its record: a killed run loses at most the
batch in flight, and re-running skips what is done. Under ``accelerate launch`` process r of n samples jobs
r, r + n, r + 2n, ... of the run.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..outputs import check_writable
from .benchmark import Benchmark, BenchmarkError
from .records import ImageJob, write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


@dataclass
class EvalSampling:
    """How images are sampled (the GoT-R1 release's settings unless said otherwise)."""

    cfg_weight: float | None = None  # None: the checkpoint's generation_config.guidance_scale, else 5
    text_temperature: float = 1.0
    image_temperature: float = 1.0
    text_top_k: int | None = None
    text_top_p: float | None = None
    max_reasoning_tokens: int = 600
    batch_size: int = 16  # images sampled together (each with its own chain)
    compile: str = "none"  # the sampler's decode path (model/static_decode.py)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise BenchmarkError(f"batch size must be >= 1, got {self.batch_size}")
        if self.cfg_weight is not None and not self.cfg_weight == self.cfg_weight:  # NaN
            raise BenchmarkError("cfg weight must be a number, got nan")


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def is_done(root: Path, job: ImageJob) -> bool:
    return (root / job.path).is_file() and (root / job.record).is_file()


def prepare_run_folder(out: Path, identity: dict[str, Any], categories: Sequence[str], *, overwrite: bool) -> None:
    """Decide what an existing folder means: the same run (resume), another run (refuse unless --overwrite)
    or foreign files (refuse). Writes run.json with the union of the categories sampled so far."""
    run_file = out / RUN_FILE
    if out.exists() and not out.is_dir():
        raise BenchmarkError(f"--out {out}: exists and is not a folder")
    existing = None
    if run_file.is_file():
        try:
            existing = json.loads(run_file.read_text())
        except ValueError as exc:
            raise BenchmarkError(f"{run_file}: unreadable ({exc}); choose another --out") from None
    elif out.is_dir() and any(out.iterdir()):
        raise BenchmarkError(
            f"--out {out}: holds files but no {RUN_FILE}, so it is not a gotr1 eval run; choose an empty or new folder"
        )
    if existing is not None:
        differs = [key for key in identity if existing.get(key) != identity[key]]
        if differs and not overwrite:
            key = differs[0]
            raise BenchmarkError(
                f"--out {out}: holds a run with other settings ({key}: {existing.get(key)!r}, "
                f"now {identity[key]!r}); choose another --out, or pass --overwrite to replace it"
            )
        if differs:
            log.warning("--overwrite: removing the earlier run in %s", out)
            shutil.rmtree(out)
            existing = None
    check_writable(out)
    sampled = list(dict.fromkeys([*(existing or {}).get("categories", []), *categories]))
    write_json_atomic(run_file, identity | {"categories": sampled, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})


def sample_run(
    bundle,
    benchmark: Benchmark,
    jobs: Sequence[ImageJob],
    out: Path,
    sampling: EvalSampling,
    *,
    process_index: int = 0,
    num_processes: int = 1,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Sample this process's share of the jobs that are not done yet. Returns counts and the speed."""
    from ..layout import plan_overlay
    from ..model.sampler import SamplingConfig, TwoPhaseSampler

    mine = list(jobs)[process_index::num_processes]
    for relative, data in benchmark.extra_files(mine).items():
        if not (out / relative).is_file() or (out / relative).read_bytes() != data:
            write_bytes_atomic(out / relative, data)
    pending = [job for job in mine if not is_done(out, job)]
    config = SamplingConfig(
        num_generations=1,
        images_per_chain=1,
        cfg_weight=sampling.cfg_weight if sampling.cfg_weight is not None else bundle.preferred_cfg_weight(),
        text_temperature=sampling.text_temperature,
        image_temperature=sampling.image_temperature,
        text_top_k=sampling.text_top_k,
        text_top_p=sampling.text_top_p,
        max_reasoning_tokens=sampling.max_reasoning_tokens,
        compile=sampling.compile,
    )
    sampler = TwoPhaseSampler(bundle)
    start = time.perf_counter()
    bar = tqdm(
        total=len(mine),
        initial=len(mine) - len(pending),
        unit="img",
        desc=benchmark.name,
        disable=None if show_progress else True,
        dynamic_ncols=True,
    )
    with bar:
        for first in range(0, len(pending), sampling.batch_size):
            batch = pending[first : first + sampling.batch_size]
            generations = sampler.generate([job.prompt for job in batch], config, seeds=[job.seed for job in batch])
            for job, gen in zip(batch, generations):
                image = gen.images[0]
                plan_path = job.record[: -len(".json")] + ".png"
                write_bytes_atomic(out / plan_path, _png(plan_overlay(image, gen.objects)))
                record = gen.record() | {
                    "category": job.category,
                    "prompt_index": job.prompt_index,
                    "image_index": job.image_index,
                    "image": job.path,
                    "plan": plan_path,
                    "metadata": job.metadata,
                }
                write_json_atomic(out / job.record, record)
                write_bytes_atomic(out / job.path, _png(image))  # last: its presence means "done"
            bar.update(len(batch))
    seconds = time.perf_counter() - start
    return {
        "images": len(mine),
        "sampled": len(pending),
        "skipped": len(mine) - len(pending),
        "seconds": seconds,
        "images_per_second": len(pending) / seconds if pending and seconds else None,
    }


def sampling_identity(
    benchmark: Benchmark,
    model: str,
    source: str,
    sampling: EvalSampling,
    cfg_weight: float,
    images_per_prompt: int,
    options: dict[str, Any],
) -> dict[str, Any]:
    """What makes two runs the same run (resuming may add categories or prompts, never change these)."""
    settings = asdict(sampling) | {"cfg_weight": cfg_weight}
    settings.pop("batch_size")  # batching never changes a sample
    settings.pop("compile")  # nor does the decode path (the same tokens, up to float rounding)
    return {
        "benchmark": benchmark.name,
        "model": model,
        "model_source": source,
        "sampling": settings,
        "images_per_prompt": images_per_prompt,
        "options": options,
    }
