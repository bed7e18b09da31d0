"""One loaded model behind the demo and the HTTP server.

Several people use a served model at once; what they share is this engine: the sampler (one model, so
one call at a time, under a lock), the sampling settings and, when configured, the rewards that score
each sample. A request becomes `Job`s, one per image: sample a chain for the prompt, or teacher-force a
given chain and sample only the image. Jobs of different requests share one sampler call and keep their own
random draws (keyed by prompt seed and index, never by the batch); only float rounding, which the batch's
shape can change, may rarely flip a token that sat on a sampling boundary.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from ..chain import BEGIN_OF_IMAGE
from ..model.compile_cache import WARM_PROMPT
from ..model.loading import JanusBundle
from ..model.sampler import Generation, SamplingConfig, TwoPhaseSampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One image to make: a chain sampled for `prompt` (or `chain` teacher-forced), then its image; an edit also
    gives the source's image tokens and the cells to re-sample (`model.editing.prepare_edit` decides them)."""

    prompt: str
    seed: int = 0
    sample_index: int = 0
    chain: str | None = None
    source_ids: torch.Tensor | None = field(default=None, compare=False)  # [N] the source image's tokens
    edit_mask: torch.Tensor | None = field(default=None, compare=False)  # [N] bool: True = re-sample
    redraw: bool = False  # an edit that samples every token, keeping the source's pixels outside the mask


@dataclass
class Scores:
    """The rewards of one sample: each component (None where it could not be scored) and the total."""

    total: float | None
    components: dict[str, float | None]
    reasons: dict[str, str] = field(default_factory=dict)  # what each reward says of its value (why 0, why none)


@dataclass
class Sample:
    job: Job
    generation: Generation
    image: Image.Image
    scores: Scores | None = None
    score_note: str = ""  # why there are no scores, when rewards are configured but could not run

    @property
    def chain(self) -> str:
        return self.generation.chain

    def record(self) -> dict[str, Any]:
        """The sample as JSON: prompt, seed, chain, objects on the 0..1000 grid, problems, rewards (or why not)."""
        record = self.generation.record()
        if self.scores is not None:
            record["rewards"] = {"total": self.scores.total, **self.scores.components}
        elif self.score_note:
            record["rewards_note"] = self.score_note
        return record


class Engine:
    """A model, its sampler and (optionally) rewards, safe to call from several threads."""

    def __init__(
        self,
        bundle: JanusBundle,
        *,
        name: str,
        sampling: SamplingConfig | None = None,
        rewards: Any | None = None,
        read_prompt: Callable[[str], Any | None] | None = None,
        rewards_name: str = "",
    ) -> None:
        """rewards: a RewardPipeline (or anything with `evaluate(prompts, chains, images)`); read_prompt turns a
        typed prompt into what the rewards take (None: not in their language, so the sample is not scored)."""
        self.bundle = bundle
        self.name = name
        self.sampling = (sampling or SamplingConfig()).for_model(bundle)
        self.rewards = rewards
        self.rewards_name = rewards_name
        self.read_prompt = read_prompt
        self.sampler = TwoPhaseSampler(bundle)
        self._lock = threading.Lock()

    @property
    def image_size(self) -> int:
        return self.bundle.image_size

    @property
    def context_length(self) -> int | None:
        return self.bundle.context_length

    def check_prompt(self, prompt: str, *, chain: str | None = None, max_reasoning_tokens: int | None = None) -> None:
        """PromptTooLong (one line) when `prompt` with the reasoning cap, or with a given `chain` (which
        replaces the cap: it is teacher-forced as it is), and the image does not fit in the model's context."""
        reasoning = self.sampling.max_reasoning_tokens if max_reasoning_tokens is None else max_reasoning_tokens
        if chain is not None:
            body = chain.removesuffix(BEGIN_OF_IMAGE)
            reasoning = len(self.bundle.tokenizer.encode(body, add_special_tokens=False, verbose=False))
        self.bundle.check_prompt(prompt, reasoning, chain_given=chain is not None)

    def warm_up(self, batch_sizes: Sequence[int]) -> float | None:
        """On a compiled decode path, sample a batch of each size once (no rewards, no images), so that the
        first requests find their steps compiled, or loaded from the compile cache; returns the seconds it took
        (None on the eager path, which has nothing to compile)."""
        if self.sampling.compile in ("none", "static"):
            return None
        start = time.perf_counter()
        with self._lock:
            for size in sorted(set(batch_sizes)):
                self.sampler.generate(
                    [WARM_PROMPT] * size,
                    self.sampling,
                    seeds=[0] * size,
                    sample_indices=list(range(size)),
                    decode_images=False,
                )
        seconds = time.perf_counter() - start
        log.info(
            "the %s decode path is ready for batches of %s (%.1f s, compile cache %s)",
            self.sampling.compile, ", ".join(map(str, sorted(set(batch_sizes)))), seconds,
            self.sampler.static_decoder(self.sampling.compile).cache.folder,
        )  # fmt: skip
        return seconds

    def run(self, jobs: Sequence[Job], sampling: SamplingConfig | None = None) -> list[Sample]:
        """Make every job's image in (at most) two sampler calls: sampled chains, then given chains.

        `sampling` overrides the engine's settings for this call (a job is one chain and one image).
        Samples come back in the order of `jobs`.
        """
        jobs = list(jobs)
        if not jobs:
            return []
        settings = (sampling or self.sampling).for_model(self.bundle)
        samples: list[Sample | None] = [None] * len(jobs)
        sampled = [i for i, job in enumerate(jobs) if job.chain is None]
        forced = [i for i, job in enumerate(jobs) if job.chain is not None]
        with self._lock:
            for indices in (sampled, forced):
                if not indices:
                    continue
                part = [jobs[i] for i in indices]
                generations = self.sampler.generate(
                    [job.prompt for job in part],
                    settings,
                    seeds=[job.seed for job in part],
                    sample_indices=[job.sample_index for job in part],
                    chains=None if part[0].chain is None else [[job.chain] for job in part],
                    **self._edits(part),
                )
                for i, generation in zip(indices, generations):
                    samples[i] = Sample(jobs[i], generation, generation.images[0])
            done = [s for s in samples if s is not None]
            self._score(done)
        return done

    def prepare_edit(self, source, **what):
        """`model.editing.prepare_edit`: what an edit re-samples, to run as Jobs with `source_ids` and `edit_mask`.
        Only a prompt edit uses the model (it samples candidate chains), and only then is the engine's lock taken."""
        from ..model.editing import prepare_edit

        sampling = what.pop("sampling", None) or self.sampling
        samples = what.get("chain") is None and what.get("mask") is None
        with self._lock if samples else contextlib.nullcontext():
            return prepare_edit(self.sampler, source, sampling=sampling, **what)

    def source_from_image(self, image, prompt: str, chain: str):
        """An `EditSource` from a picture, its tokens from the model's VQ encoder (under the engine's lock: one
        model call at a time)."""
        from ..model.editing import EditSource

        with self._lock:
            return EditSource.from_image(self.bundle, image, prompt, chain)

    def _edits(self, jobs: Sequence[Job]) -> dict[str, Any]:
        """The sampler's edit arguments when any job is an edit: the others re-sample every cell (which is
        plain sampling), so edits and generations share one call."""
        if all(job.edit_mask is None for job in jobs):
            return {}
        n = self.bundle.num_image_tokens
        return {
            "source_image_ids": [
                job.source_ids if job.edit_mask is not None else torch.zeros(n, dtype=torch.long) for job in jobs
            ],
            "edit_masks": [
                job.edit_mask if job.edit_mask is not None else torch.ones(n, dtype=torch.bool) for job in jobs
            ],
            "redraw": [job.redraw and job.edit_mask is not None for job in jobs],
        }

    def _score(self, samples: list[Sample]) -> None:
        """Each sample's rewards, when rewards are configured and its prompt is in their language."""
        if self.rewards is None:
            return
        readable = []
        for sample in samples:
            prompt = self.read_prompt(sample.job.prompt) if self.read_prompt else sample.job.prompt
            if prompt is None:
                sample.score_note = f"not scored: the prompt is not in the {self.rewards_name or 'rewards'}' language"
            else:
                readable.append((sample, prompt))
        if not readable:
            return
        try:
            scored = self.rewards.evaluate(
                [prompt for _, prompt in readable], [s.chain for s, _ in readable], [s.image for s, _ in readable]
            )
        except Exception as exc:  # a judge that is down: say so on each sample, never a zero
            log.warning("rewards failed: %s", exc)
            for sample, _ in readable:
                sample.score_note = f"rewards unavailable: {str(exc).splitlines()[0][:200]}"
            return
        for (sample, _), result in zip(readable, scored):
            sample.scores = Scores(
                result.total,
                {name: r.value for name, r in result.results.items()},
                {name: r.reason for name, r in result.results.items() if r.reason},
            )
