"""T2I-CompBench in its official layout.

One folder per category; images flat in ``<category>/samples/{prompt}_{idx:06d}.png`` with a running
index over the category (prompt i, image k -> idx = i * n + k) and image k of a prompt seeded 42 + k, as
the official generation script does. The official scorers read the prompt back from the file name
(``name.split('_')[0]``) and sort files by the number after the last underscore, so ``samples/`` must hold
these PNGs and nothing else: our sample records (chain, objects, plan overlay) go to ``<category>/plans/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..registry import Suite
from . import DATA
from .benchmark import Benchmark, BenchmarkError, Reference, ScorerOptions, read_record
from .declarations import T2I_COMPBENCH
from .records import EvalImage, ImageJob, Scorer

CATEGORIES = ("color", "shape", "texture", "spatial", "non_spatial", "complex", "3d_spatial", "numeracy")
PAPER_CATEGORIES = CATEGORIES[:6]  # the GoT-R1 paper's table; 3d_spatial and numeracy are T2I-CompBench++
COLOR_VERSIONS = ("current", "pre-2025-09-03")  # upstream edited color_val.txt on 2025-09-03; the paper used the old
FIRST_SEED = 42
_DATA = DATA / "t2i_compbench"
_OFFICIAL_NAME = re.compile(r"^(?P<prompt>[^_/]+)_(?P<idx>\d{6})\.png$")

# GoT-R1 paper, Table 1 (T2I-CompBench, color / shape / texture / 2D-spatial / non-spatial / complex).
_PAPER = "GoT-R1 paper (arXiv 2505.17022), Table 1"
REFERENCES = tuple(
    Reference(label, dict(zip(PAPER_CATEGORIES, values)), _PAPER)
    for label, values in (
        ("Janus-Pro-1B", (0.3411, 0.2261, 0.2696, 0.0968, 0.2808, 0.2721)),
        ("Janus-Pro-1B-GoT (SFT)", (0.6336, 0.4456, 0.5621, 0.2140, 0.3070, 0.3490)),
        ("GoT-R1-1B", (0.7632, 0.5174, 0.6589, 0.2674, 0.3101, 0.3749)),
        ("Janus-Pro-7B", (0.6359, 0.3528, 0.4936, 0.2061, 0.3085, 0.3559)),
        ("Janus-Pro-7B-GoT (SFT)", (0.6551, 0.5008, 0.5836, 0.2457, 0.3113, 0.3754)),
        ("GoT-R1-7B", (0.8139, 0.5549, 0.7339, 0.3306, 0.3169, 0.3944)),
        ("FLUX.1", (0.7407, 0.5718, 0.6922, 0.2863, 0.3127, 0.3703)),
    )
)


def prompt_file(category: str, color_version: str = "current") -> Path:
    if category == "color" and color_version == "pre-2025-09-03":
        return _DATA / "color_val.pre-2025-09-03.txt"
    return _DATA / f"{category}_val.txt"


def read_prompts(category: str, color_version: str = "current") -> list[str]:
    """The category's 300 validation prompts, in file order (blank lines skipped, ends stripped)."""
    path = prompt_file(category, color_version)
    prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    for number, prompt in enumerate(prompts, 1):
        if "_" in prompt or "/" in prompt:  # the official file-name round trip would break
            raise BenchmarkError(
                f"{path.name}:{number}: prompt holds '_' or '/', which the official file names cannot carry"
            )
    return prompts


def sample_name(prompt: str, idx: int) -> str:
    return f"{prompt}_{idx:06d}.png"


class T2ICompBench(Benchmark):
    name = "t2i-compbench"
    categories = CATEGORIES
    default_categories = PAPER_CATEGORIES
    default_images_per_prompt = 10
    default_scorer = "official"
    references = REFERENCES

    def jobs(
        self,
        categories: Sequence[str],
        images_per_prompt: int,
        limit: int | None = None,
        color_version: str = "current",
        **_: Any,
    ) -> list[ImageJob]:
        if color_version not in COLOR_VERSIONS:
            raise BenchmarkError(
                f"unknown colour prompt version {color_version!r}; choose from {', '.join(COLOR_VERSIONS)}"
            )
        jobs = []
        for category in self.check_categories(categories):
            prompts = read_prompts(category, color_version)[:limit]
            for i, prompt in enumerate(prompts):
                for k in range(images_per_prompt):
                    idx = i * images_per_prompt + k
                    jobs.append(
                        ImageJob(
                            category=category,
                            prompt=prompt,
                            prompt_index=i,
                            image_index=k,
                            seed=FIRST_SEED + k,
                            path=f"{category}/samples/{sample_name(prompt, idx)}",
                            record=f"{category}/plans/{idx:06d}.json",
                        )
                    )
        return jobs

    def read_back(self, run_dir: Path, categories: Sequence[str]) -> dict[str, list[EvalImage]]:
        """Each category's samples sorted by the number after the last underscore, prompts read from the
        names, as the official scripts do; a file there that does not fit that reading is an error."""
        out = {}
        for category in self.check_categories(categories):
            samples = run_dir / category / "samples"
            if not samples.is_dir():
                raise BenchmarkError(f"{samples}: no such folder (was {category} sampled into this run?)")
            found = []
            for path in samples.iterdir():
                match = _OFFICIAL_NAME.match(path.name)
                if match is None or not path.is_file():
                    raise BenchmarkError(
                        f"{path}: not an official sample name ({{prompt}}_{{idx:06d}}.png); the "
                        "official scripts read every file in samples/: move it out"
                    )
                found.append((int(match["idx"]), match["prompt"], path.name))
            found.sort()
            images = []
            for idx, prompt, name in found:
                record_path = f"{category}/plans/{idx:06d}.json"
                record = read_record(run_dir, record_path)
                k = int(record.get("image_index", 0)) if record else 0
                job = ImageJob(
                    category=category,
                    prompt=prompt,
                    prompt_index=int(record.get("prompt_index", -1)) if record else -1,
                    image_index=k,
                    seed=int(record.get("seed", FIRST_SEED + k)) if record else FIRST_SEED,
                    path=f"{category}/samples/{name}",
                    record=record_path,
                )
                images.append(EvalImage(job, run_dir, record))
            out[category] = images
        return out

    def scorers(self) -> Mapping[str, Callable[[ScorerOptions], Scorer]]:
        from .scorers import t2i_compbench_scorers

        return t2i_compbench_scorers()


SUITE = Suite(
    name=T2I_COMPBENCH.name,
    description=T2I_COMPBENCH.description,
    benchmark=T2ICompBench,
)
