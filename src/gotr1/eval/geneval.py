"""GenEval in its official layout.

``<run>/<index:05d>/metadata.jsonl`` holds the prompt's metadata line (the scorer reads it with one
``json.load``) and ``<run>/<index:05d>/samples/<k:04d>.png`` its images, 4 per prompt. The scorer reads only
folders whose name is all digits and only files matching ``\\d+\\.png`` in ``samples/``; our sample records
(chain, objects, plan overlay) go to ``<index:05d>/plans/``, which it never opens. Image k of a prompt is
seeded ``seed + k`` (GenEval's own script seeds its sampler once per run; any fixed seeds are fair).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..registry import Suite
from .benchmark import Benchmark, BenchmarkError, Reference, ScorerOptions, read_record
from .declarations import GENEVAL
from .records import EvalImage, ImageJob, ImageScore, Scorer
from .rules.geneval import TAGS, load_metadata, validate_metadata

DEFAULT_SEED = 42
_DIGITS = re.compile(r"^\d+$")
_SAMPLE = re.compile(r"^\d+\.png$")

REFERENCES = (
    Reference(
        "GoT-R1-7B", {"overall": 0.75, "two_object": 0.94, "color_attr": 0.68}, "GoT-R1 paper (arXiv 2505.17022)"
    ),
    Reference("Janus-Pro-7B", {"overall": 0.80}, "Janus-Pro report"),
    Reference("Janus-Pro-1B", {"overall": 0.73}, "Janus-Pro report"),
)


class GenEval(Benchmark):
    name = "geneval"
    categories = TAGS
    default_categories = TAGS
    default_images_per_prompt = 4
    default_scorer = "official"
    references = REFERENCES

    def jobs(
        self,
        categories: Sequence[str],
        images_per_prompt: int,
        limit: int | None = None,
        seed: int = DEFAULT_SEED,
        **_: Any,
    ) -> list[ImageJob]:
        """Prompts in metadata order (the first ``limit``), kept only when their tag is asked for; the
        folder index stays the line's index, so a partial run's folders are those of a full run."""
        wanted = set(self.check_categories(categories))
        jobs = []
        for index, metadata in enumerate(load_metadata()[:limit]):
            if metadata["tag"] not in wanted:
                continue
            for k in range(images_per_prompt):
                jobs.append(
                    ImageJob(
                        category=metadata["tag"],
                        prompt=metadata["prompt"],
                        prompt_index=index,
                        image_index=k,
                        seed=seed + k,
                        path=f"{index:05d}/samples/{k:04d}.png",
                        record=f"{index:05d}/plans/{k:04d}.json",
                        metadata=metadata,
                    )
                )
        return jobs

    def extra_files(self, jobs: Sequence[ImageJob]) -> dict[str, bytes]:
        """The one ``metadata.jsonl`` per prompt folder that goes with these jobs."""
        return {f"{job.prompt_index:05d}/metadata.jsonl": (json.dumps(job.metadata) + "\n").encode() for job in jobs}

    def read_back(self, run_dir: Path, categories: Sequence[str]) -> dict[str, list[EvalImage]]:
        """Prompt folders (all-digit names) in order, metadata from each folder's metadata.jsonl, images
        from ``samples/\\d+.png``; other folders and files are skipped, as the official scorer skips them."""
        wanted = set(self.check_categories(categories))
        out: dict[str, list[EvalImage]] = {tag: [] for tag in TAGS if tag in wanted}
        if not run_dir.is_dir():
            raise BenchmarkError(f"{run_dir}: no such folder")
        folders = sorted((p for p in run_dir.iterdir() if p.is_dir() and _DIGITS.match(p.name)), key=lambda p: p.name)
        for folder in folders:
            meta_path = folder / "metadata.jsonl"
            try:
                metadata = validate_metadata(json.loads(meta_path.read_text()), str(meta_path))
            except (OSError, ValueError) as exc:
                raise BenchmarkError(f"{meta_path}: unreadable metadata ({exc})") from None
            if metadata["tag"] not in wanted:
                continue
            samples = folder / "samples"
            names = sorted(p.name for p in samples.iterdir() if _SAMPLE.match(p.name)) if samples.is_dir() else []
            for name in names:
                k = int(name[:-4])
                record_path = f"{folder.name}/plans/{k:04d}.json"
                record = read_record(run_dir, record_path)
                job = ImageJob(
                    category=metadata["tag"],
                    prompt=metadata["prompt"],
                    prompt_index=int(folder.name),
                    image_index=k,
                    seed=int(record.get("seed", -1)) if record else -1,
                    path=f"{folder.name}/samples/{name}",
                    record=record_path,
                    metadata=metadata,
                )
                out[metadata["tag"]].append(EvalImage(job, run_dir, record))
        return out

    def output_dir(self, run_dir: Path, category: str) -> Path:
        return run_dir  # GenEval's results.jsonl covers the whole run

    def scorers(self) -> Mapping[str, Callable[[ScorerOptions], Scorer]]:
        from .scorers import geneval_scorers

        return geneval_scorers()

    def write_official_results(self, run_dir: Path, scorer: str, scores: Sequence[ImageScore]) -> None:
        if scorer == "official":
            from .scorers.geneval_official import write_official_results

            write_official_results(run_dir, list(scores))


SUITE = Suite(name=GENEVAL.name, description=GENEVAL.description, benchmark=GenEval)
