"""How fast is a GRPO step, per device and precision, and does bf16 score like float32?

Times B x G GRPO steps of the shapes recipe (the built-in model, exact rewards) in each setting given,
printing seconds per step and the speed-up over the first setting of the same run. Then, on the first
CUDA device if there is one (else the CPU), re-scores one step's samples teacher-forced under float32
and under bf16 autocast and prints how far the per-token log-probs differ. Not a test.

    python benchmarks/grpo_speed.py                                   # cpu/no vs cpu/bf16
    python benchmarks/grpo_speed.py --settings cpu:no,cuda:no,cuda:bf16 --cpu-threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from gotr1.model.loading import load_janus
from gotr1.model.sampler import SamplingConfig
from gotr1.models import builtin_model
from gotr1.progress import log_to_stderr, progress
from gotr1.train.distributed import make_accelerator
from gotr1.train.grpo import GRPOConfig, GRPOTrainer
from gotr1.worlds.shapes.grammar import ShapesGrammar
from gotr1.worlds.shapes.rl import prompt_source, reward_function


def trainer_for(device: str, precision: str, args) -> GRPOTrainer:
    bundle = load_janus(args.model, device=device, dtype="float32")
    config = GRPOConfig(
        steps=10_000,
        prompts_per_step=args.prompts_per_step,
        num_generations=args.group,
        learning_rate=5e-5,
        lora_r=None,
        beta=0.01,
        micro_batch_size=args.micro_batch_size,
        lr_schedule="constant",
    )
    accelerator = make_accelerator(mixed_precision=precision, cpu=device == "cpu")
    return GRPOTrainer(
        bundle,
        config,
        reward_function(),
        prompt_source(ShapesGrammar(), args.prompts_per_step),
        sampling=SamplingConfig(cfg_weight=3.0, max_reasoning_tokens=200),
        accelerator=accelerator,
    )


def time_steps(trainer: GRPOTrainer, steps: int, warmup: int) -> dict:
    """Median seconds per step, and of its sampling and reward parts (the rest is the update)."""
    times = []
    setting = f"{trainer.accelerator.device.type}/{trainer.accelerator.mixed_precision}"
    with progress(warmup + steps, f"grpo steps ({setting})", "step") as bar:
        for i in range(warmup + steps):
            if trainer.accelerator.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            trainer.step()
            if trainer.accelerator.device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
            bar.update(1)
    timed = trainer.history[warmup:]
    return {
        "step": statistics.median(times),
        "sample": statistics.median(h["sample_seconds"] for h in timed),
        "reward": statistics.median(h["reward_seconds"] for h in timed),
    }


def profile_step(trainer: GRPOTrainer, rows: int = 25) -> None:
    """torch.profiler's table of one step (after a warm-up step), by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    trainer.step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        trainer.step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def precision_gap(device: str, args) -> None:
    """Per-token log-probs of the same samples, float32 vs bf16 autocast."""
    trainer = trainer_for(device, "no", args)
    gens = trainer.sample(prompt_source(ShapesGrammar(), args.prompts_per_step)(0, None))
    with torch.no_grad():
        lp32, mask = trainer.sequence_logprobs(trainer.policy, gens)
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            lp16, _ = trainer.sequence_logprobs(trainer.policy, gens)
    diff = (lp16.float() - lp32)[mask]
    seq32 = (lp32 * mask).sum(1)
    seq16 = (lp16.float() * mask).sum(1)
    print(
        f"bf16 vs float32 on {device}, {len(gens)} samples, {int(mask.sum())} tokens: per-token |dlogp| mean "
        f"{diff.abs().mean():.4f}, max {diff.abs().max():.4f}; sequence log-prob relative gap mean "
        f"{((seq16 - seq32).abs() / seq32.abs()).mean():.5f}; per-token ratio exp(dlogp) in "
        f"[{diff.exp().min():.3f}, {diff.exp().max():.3f}] (GRPO clips at 1 +- 0.2)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(builtin_model("shapes-sft")))
    parser.add_argument("--settings", default="cpu:no,cpu:bf16", help="device:precision, comma-separated")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--micro-batch-size", type=int, default=32)
    parser.add_argument("--cpu-threads", type=int, default=2)
    parser.add_argument("--profile", help="device:precision: print torch.profiler's table of one step, then stop")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # one setting, in a child process (see below)
    args = parser.parse_args()
    torch.set_num_threads(args.cpu_threads)
    log_to_stderr()
    if args.only or args.profile:
        device, precision = (args.only or args.profile).split(":")
        trainer = trainer_for(device, precision, args)
        if args.profile:
            profile_step(trainer)
        else:
            print(json.dumps(time_steps(trainer, args.steps, args.warmup)))
        return
    baseline = None
    for setting in args.settings.split(","):
        # accelerate keeps one precision per process, so each setting runs in a process of its own; its
        # stderr (progress lines, errors) passes through.
        child = subprocess.run([sys.executable, *sys.argv, "--only", setting], stdout=subprocess.PIPE, text=True)
        if child.returncode:
            sys.exit(f"{setting} failed (exit status {child.returncode}; its errors are above)")
        timing = json.loads(child.stdout.strip().splitlines()[-1])
        device, precision = setting.split(":")
        baseline = baseline or timing["step"]
        samples = args.prompts_per_step * args.group
        label = f"{device} ({args.cpu_threads} threads)" if device == "cpu" else torch.cuda.get_device_name()
        print(
            f"{label:28s} {precision:4s}  {timing['step']:6.3f} s/step (sampling {timing['sample']:.3f}, "
            f"rewards {timing['reward']:.3f})  {samples / timing['step']:7.1f} samples/s  "
            f"{baseline / timing['step']:5.2f}x vs {args.settings.split(',')[0]}",
            flush=True,
        )
    precision_gap("cuda" if torch.cuda.is_available() else "cpu", args)


if __name__ == "__main__":
    main()
