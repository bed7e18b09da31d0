"""The shapes world as a benchmark: fixed prompt sets per category and split, scored exactly from pixels.

Categories partition prompts by what they test (see :func:`category_of`), plus ``all``: the split's first
prompts unfiltered, the held-out accuracy that training reports. Each category holds the first ``limit``
prompts of the split (among its first 2000, so held-out prompts stay clear of the RL prompt set
``heldout-pairs``) that fall in it; a prompt's images are seeded from its index in the split, image 0 with the
index itself, as training's evaluation does. The exact scorer: an image is right when every constraint of the
prompt holds in it (oracle grounder); its plan is right when the chain plans every object of the prompt with
boxes satisfying every count and relation (R_sem = R_spa = 1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...eval.benchmark import Benchmark, BenchmarkError, ScorerOptions, read_record
from ...eval.records import EvalImage, ImageJob, ImageScore, Scorer
from .grammar import Prompt, ShapesGrammar
from .rewards import all_constraints_hold, score_all
from .rl import EVAL_RESERVE
from .vocabulary import Meaning

if TYPE_CHECKING:
    from ...model.sampler import SamplingConfig

KINDS = ("all", "shape", "color", "size", "counting", "spatial", "complex")
SPLITS = ("heldout", "val")
IMAGE_SEED_STRIDE = 1_000_003  # image k of prompt i is seeded i + k * stride (image 0: i, as in training)


def category_of(meaning: Meaning) -> str:
    """One of shape / color / size / counting / spatial / complex (a partition of all meanings)."""
    groups, relations = meaning.groups, meaning.relations
    if not relations:
        if any(g.count > 1 for g in groups):
            return "counting"
        if len(groups) == 1:
            return "size" if groups[0].size else "shape"
        return "color"  # two or three single objects: each colour bound to its shape
    if len(groups) == 2 and all(g.count == 1 for g in groups):
        return "spatial"
    return "complex"


def category_prompts(grammar: ShapesGrammar, split: str, kind: str, limit: int) -> list[tuple[int, Prompt]]:
    """(index in the split, prompt) of the category's first `limit` prompts."""
    stream = grammar.prompts(split, EVAL_RESERVE)
    chosen = [(i, p) for i, p in enumerate(stream) if kind == "all" or category_of(p.meaning) == kind]
    return chosen[:limit]


def read_category(run_dir: Path, category: str, complete: Callable[[dict | None], bool], lack: str) -> list[EvalImage]:
    """A shapes-world category's images as `<category>/samples/NNNNNN.png` with `plans/NNNNNN.json` beside them;
    a foreign file, or a record that is missing or not `complete`, is a BenchmarkError naming it (`lack` says what
    an incomplete record lacks)."""
    samples = run_dir / category / "samples"
    if not samples.is_dir():
        raise BenchmarkError(f"{samples}: no such folder (was {category} sampled into this run?)")
    images = []
    for path in sorted(samples.iterdir()):
        if not (path.suffix == ".png" and path.stem.isdigit()):
            raise BenchmarkError(f"{path}: not a sample of this run (expected NNNNNN.png): move it out")
        record_path = f"{category}/plans/{path.stem}.json"
        record = read_record(run_dir, record_path)
        if not complete(record):
            raise BenchmarkError(f"{run_dir / record_path}: missing, or {lack}")
        job = ImageJob(
            category=category,
            prompt=record["prompt"],
            prompt_index=int(record["prompt_index"]),
            image_index=int(record["image_index"]),
            seed=int(record["seed"]),
            path=f"{category}/samples/{path.name}",
            record=record_path,
            metadata=record["metadata"],
        )
        images.append(EvalImage(job, run_dir, record))
    return images


class ShapesBenchmark(Benchmark):
    name = "shapes"
    categories = tuple(f"{split}/{kind}" for split in SPLITS for kind in KINDS)
    default_categories = categories
    default_images_per_prompt = 1
    default_scorer = "shapes"

    def __init__(self, grammar_seed: int = 0) -> None:
        self.grammar = ShapesGrammar(grammar_seed)

    def jobs(
        self, categories: Sequence[str], images_per_prompt: int, limit: int | None = None, **_: Any
    ) -> list[ImageJob]:
        limit = 100 if limit is None else limit
        if limit > EVAL_RESERVE:
            raise BenchmarkError(
                f"--limit {limit}: the shapes benchmark draws from the first {EVAL_RESERVE} prompts of each split"
            )
        jobs = []
        for category in self.check_categories(categories):
            split, kind = category.split("/")
            for j, (index, prompt) in enumerate(category_prompts(self.grammar, split, kind, limit)):
                for k in range(images_per_prompt):
                    n = j * images_per_prompt + k
                    jobs.append(
                        ImageJob(
                            category=category,
                            prompt=prompt.text,
                            prompt_index=index,
                            image_index=k,
                            seed=index + k * IMAGE_SEED_STRIDE,
                            path=f"{category}/samples/{n:06d}.png",
                            record=f"{category}/plans/{n:06d}.json",
                            metadata={"split": split, "meaning": prompt.meaning.to_dict()},
                        )
                    )
        return jobs

    def read_back(self, run_dir: Path, categories: Sequence[str]) -> dict[str, list[EvalImage]]:
        def has_meaning(record) -> bool:
            metadata = record.get("metadata") if record else None
            return isinstance(metadata, dict) and isinstance(metadata.get("meaning"), dict)

        return {
            category: read_category(run_dir, category, has_meaning, "without the prompt's meaning")
            for category in self.check_categories(categories)
        }

    def scorers(self) -> Mapping[str, Callable[[ScorerOptions], Scorer]]:
        return {"shapes": lambda options: ExactScorer()}


class ExactScorer:
    """The shapes world's oracle: exact from pixels and from the chain, no model involved."""

    name = "shapes"
    notes: list[str] = []

    def score(self, category: str, images: Sequence[EvalImage], out_dir: Path) -> list[ImageScore]:
        prompts = [Prompt(image.prompt, Meaning.from_dict(image.job.metadata["meaning"])) for image in images]
        chains = [image.chain or "" for image in images]
        pixels = [image.image() for image in images]
        rewards = score_all(prompts, chains, pixels)
        scores = []
        for image, prompt, picture, reward in zip(images, prompts, pixels, rewards):
            plan_right = reward["r_sem"] == 1.0 and reward["r_spa"] == 1.0  # the chain alone decides both
            scores.append(
                ImageScore(
                    path=image.job.path,
                    category=category,
                    prompt=image.prompt,
                    score=1.0 if all_constraints_hold(prompt, picture) else 0.0,
                    plan_score=1.0 if plan_right else 0.0,
                    record=image.job.record,
                    details=reward,
                )
            )
        return scores


def training_evaluation(bundle, num_prompts: int, sampling: SamplingConfig) -> dict[str, Any]:
    """Held-out accuracy during GRPO: the first `num_prompts` held-out prompts, one image each, sampled as the
    run samples (its recipe's `sampling:`)."""
    from .evaluate import ShapesEvalConfig, evaluate

    summary, _, _ = evaluate(bundle, ShapesEvalConfig(num_prompts=num_prompts, sampling=sampling))
    return summary
