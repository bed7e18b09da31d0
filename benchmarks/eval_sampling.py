"""Images per second of `gotr1 eval` sampling against `gotr1 generate` one prompt at a time, same run.

Both draw one reasoning chain and one image per prompt for the same prompts (the shapes benchmark's
held-out prompts) with the same model and settings, and write their files (eval: the official image, the
record and the plan overlay; generate: image, chain.txt, chain.json and the plan overlay). Each side runs in
its own process, one after the other, so neither warms the other's caches.

    python benchmarks/eval_sampling.py [--model M] [--images 96] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _run_eval(model: str | None, images: int, batch_size: int, out: Path) -> float:
    from gotr1.eval.sampling import sample_run
    from gotr1.model.sampler import SamplingConfig
    from gotr1.models import load_model
    from gotr1.worlds.shapes.benchmark import ShapesBenchmark

    bundle = load_model(model)
    bench = ShapesBenchmark()
    jobs = bench.jobs(["heldout/all"], 1, limit=images)
    start = time.perf_counter()
    stats = sample_run(
        bundle, bench, jobs, out, SamplingConfig(max_reasoning_tokens=200), batch_size=batch_size, show_progress=False
    )
    seconds = time.perf_counter() - start
    assert stats["sampled"] == images
    return seconds


def _run_generate(model: str | None, images: int, out: Path) -> float:
    from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler
    from gotr1.models import load_model
    from gotr1.samples import write_sample_folder
    from gotr1.worlds.shapes.grammar import ShapesGrammar

    bundle = load_model(model)
    prompts = [p.text for p in ShapesGrammar().prompts("heldout", images)]
    sampler = TwoPhaseSampler(bundle)
    config = SamplingConfig(max_reasoning_tokens=200)
    start = time.perf_counter()
    for i, prompt in enumerate(prompts):  # what `gotr1 generate --batch-size 1` does per prompt
        for gen in sampler.generate([prompt], config, seeds=[i]):
            write_sample_folder(gen, out / f"{i:04d}" / "sample_00")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the shipped shapes model")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--side", choices=("eval", "generate"), help=argparse.SUPPRESS)  # one side, in a child
    args = parser.parse_args()
    if args.side:
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            seconds = (
                _run_eval(args.model, args.images, args.batch_size, Path(tmp))
                if args.side == "eval"
                else _run_generate(args.model, args.images, Path(tmp))
            )
        print(json.dumps({"seconds": seconds}))
        return
    results = {}
    for side in ("generate", "eval"):
        cmd = [
            sys.executable,
            __file__,
            "--side",
            side,
            "--images",
            str(args.images),
            "--batch-size",
            str(args.batch_size),
            *(["--model", args.model] if args.model else []),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[side] = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    rate = {side: args.images / seconds for side, seconds in results.items()}
    print(
        f"model: {args.model or 'shipped shapes model'}; {args.images} images, 1 chain each; "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"gotr1 generate, one prompt at a time: {rate['generate']:.2f} images/s ({results['generate']:.1f} s)")
    print(f"gotr1 eval, batch {args.batch_size}:             {rate['eval']:.2f} images/s ({results['eval']:.1f} s)")
    print(f"ratio eval / generate: {rate['eval'] / rate['generate']:.2f}x")


if __name__ == "__main__":
    main()
