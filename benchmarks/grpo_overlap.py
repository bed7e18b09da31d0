"""A GRPO step against a latency-bound judge: score everything after sampling, or overlap it chunk by chunk.

    python benchmarks/grpo_overlap.py [--judge latency|server] [--latency 1.0] [--concurrency 32] [--chunks 2,4]

The shapes recipe's step (the built-in shapes-sft model, 8 prompts x 8 samples, CFG 3, full fine-tuning
with a frozen reference) with the four judge rewards (R_sem, R_spa, R_RI, R_PI, built as a judged recipe
builds them) asked of a latency-bound judge:

  --judge latency   (default) every answer takes --latency seconds, --concurrency at a time, and costs this
                    machine nothing: a remote engine (vLLM) that batches, with the client's work left out
  --judge server    OpenAIJudge over HTTP to the fake judge server with that latency per answer, the stand-in
                    of benchmarks/judge_throughput.py (b): the client's work (PNG encoding, HTTP, JSON) and
                    the server process then share this machine's CPUs with sampling

The answers are scripted, so the step trains on the exact shapes rewards (computed beside the judge's): the
settings can then be checked to draw the same samples and make the same updates. Settings, one trainer each
from the same weights, take their steps interleaved (a step of each in turn), so a load change on the machine
falls on all of them:

  sequential         today's default: one sampler call, then the rewards
  chunk k            k prompts per sampler call, each scored before the next samples (--chunking-cost)
  chunk k, overlap   each chunk scored on a background thread while the next one samples

Prints medians of seconds per step and its split (sampling; waiting for rewards; the rest: log-probs and
update), the reward thread's busy time, the ratio to sequential, and whether every setting gave the same
rewards and weights. Ratios are within the run; the absolute times depend on the machine's load.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gotr1.model.sampler import SamplingConfig  # noqa: E402
from gotr1.models import load_model  # noqa: E402
from gotr1.progress import log_to_stderr, progress  # noqa: E402
from gotr1.rewards import JudgeSettings, OpenAIJudgeConfig, RewardSettings, build_reward  # noqa: E402
from gotr1.rewards.judge import JudgeAnswer, JudgeStats  # noqa: E402
from gotr1.train.grpo import GRPOConfig, GRPOTrainer  # noqa: E402
from gotr1.worlds.shapes.grammar import ShapesGrammar  # noqa: E402
from gotr1.worlds.shapes.rl import prompt_source, reward_function  # noqa: E402
from tests.fake_judge_server import DEFAULT_ANSWER, DEFAULT_BOXES  # noqa: E402
from tests.judge_servers import fake_judge_server  # noqa: E402


class LatencyJudge:
    """A judge whose answers each take `latency` seconds, `concurrency` at a time, at no cost here; it
    answers as the fake server does."""

    model_id = "latency-stand-in"

    def __init__(self, latency: float, concurrency: int):
        self.latency, self.concurrency, self.stats = latency, concurrency, JudgeStats()

    def ask(self, requests):
        time.sleep(math.ceil(len(requests) / self.concurrency) * self.latency)
        answers = [
            JudgeAnswer(DEFAULT_BOXES if r.prompt.startswith("Find every") else DEFAULT_ANSWER) for r in requests
        ]
        self.stats.add_answers(answers)
        return answers


class JudgedShapes:
    """The four judge rewards for their time, the exact shapes rewards for the signal (and the check)."""

    def __init__(self, args, url: str | None):
        config = OpenAIJudgeConfig(
            base_urls=[url or "http://unused/v1"], model="fake", max_concurrency=args.concurrency
        )
        judge = LatencyJudge(args.latency, args.concurrency) if url is None else None
        self.judged = build_reward(RewardSettings(source="judge", judge=JudgeSettings(openai=config)), judge=judge)
        self.exact = reward_function()

    def __call__(self, prompts, chains, images):
        judged, _ = self.judged(prompts, chains, images)
        totals, components = self.exact(prompts, chains, images)
        return totals, {**components, "judge": judged}

    @contextlib.contextmanager
    def one_batch(self):
        with self.judged.one_batch(), self.exact.one_batch():
            yield


def trainer(args, url: str | None, **overlap) -> GRPOTrainer:
    config = GRPOConfig(
        steps=10_000,
        prompts_per_step=args.prompts_per_step,
        num_generations=args.group,
        learning_rate=5e-5,
        lr_schedule="constant",
        beta=0.01,
        lora_r=None,
        micro_batch_size=32,
        **overlap,
    )
    bundle = load_model("shapes-sft", dtype="float32", device="cpu")
    source = prompt_source(ShapesGrammar(), args.prompts_per_step, split="heldout-pairs")
    sampling = SamplingConfig(cfg_weight=3.0, max_reasoning_tokens=200)
    return GRPOTrainer(bundle, config, JudgedShapes(args, url), source, sampling=sampling)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--judge", choices=("latency", "server"), default="latency")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--latency", type=float, default=1.0, help="judge seconds per answer")
    parser.add_argument("--concurrency", type=int, default=32, help="judge requests in flight (its default)")
    parser.add_argument("--chunks", default="2,4", help="prompts per sampler call, comma-separated")
    parser.add_argument("--chunking-cost", action="store_true", help="also chunk k without the overlap")
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    log_to_stderr()
    chunks = [int(k) for k in args.chunks.split(",")]
    if args.judge == "server":
        import openai  # noqa: F401 - its import (seconds) is not a step's time

    with fake_judge_server(latency=args.latency) if args.judge == "server" else contextlib.nullcontext() as server:
        settings = {"sequential": {}}
        for k in chunks:
            if args.chunking_cost:
                settings[f"chunk {k}"] = {"sample_chunk_prompts": k}
            settings[f"chunk {k}, overlap"] = {"sample_chunk_prompts": k, "overlap_rewards": True}
        url = server.url if server is not None else None
        trainers = {label: trainer(args, url, **overlap) for label, overlap in settings.items()}
        results: dict[str, list] = {label: [] for label in settings}
        with progress(args.steps * len(trainers), "grpo steps (all settings)", "step") as bar:
            for _ in range(args.steps):
                for label, t in trainers.items():
                    start = time.perf_counter()
                    results[label].append((t.step(), time.perf_counter() - start))
                    bar.set_postfix(last=f"{label} {results[label][-1][1]:.1f} s", refresh=False)
                    bar.update(1)
    requests = sum(t.reward_fn.judged.judges()[0].stats.requests for t in trainers.values())

    print(
        f"GRPO step, shapes-sft, {args.prompts_per_step} prompts x {args.group} samples, {args.steps} steps per "
        f"setting (interleaved), judge stand-in ({args.judge}) {args.latency:.2f} s per answer, {args.concurrency} "
        f"in flight ({requests} judge requests in all), torch {args.threads} threads"
    )
    print(
        f"  {'setting':<18} {'s/step':>7} {'sampling':>9} {'reward wait':>12} {'update':>7} {'reward busy':>12}  ratio"
    )
    base = None
    for label, runs in results.items():
        step = statistics.median(s for _, s in runs)
        sample = statistics.median(r.metrics["sample_seconds"] for r, _ in runs)
        wait = statistics.median(r.metrics["reward_seconds"] for r, _ in runs)
        busy = statistics.median(r.metrics["reward_busy_seconds"] for r, _ in runs)
        base = base or step
        rest = step - sample - wait
        print(f"  {label:<18} {step:7.2f} {sample:9.2f} {wait:12.2f} {rest:7.2f} {busy:12.2f}  {base / step:5.2f}x")
    reference = trainers["sequential"]
    same_rewards = all(
        [r.rewards for r, _ in runs] == [r.rewards for r, _ in results["sequential"]] for runs in results.values()
    )
    same_weights = all(
        all(torch.equal(p, q) for p, q in zip(reference.model.parameters(), t.model.parameters()))
        for t in trainers.values()
    )
    print(f"  same rewards in every setting: {same_rewards}; same weights after the steps: {same_weights}")


if __name__ == "__main__":
    main()
