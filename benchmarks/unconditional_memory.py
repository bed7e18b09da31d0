"""Peak memory of the compiled image phase's unconditional rows, at Janus-Pro-1B size with random weights.

One prompt x G chains of about --chain-tokens tokens (one fixed chain, teacher-forced), the image phase on the
fixed-shape path (`--compile static`: the workspace and the unconditional rows of the compiled paths, without
compiling) for --image-steps steps, no VQ decode. Prints the process's peak resident memory (ru_maxrss) and how
far sampling (the chain's prefill and the image phase) raised it above the model's. Run it in a fresh process
per version to compare (the peak of a process never goes down):

    python benchmarks/unconditional_memory.py [--size janus-pro-1b] [--group 16] [--chain-tokens 600]
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import time

import torch

from gotr1.model.image_tokens import set_image_grid
from gotr1.model.real_size import build_random_janus
from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="janus-pro-1b")
    parser.add_argument("--group", type=int, default=16, help="G: images of the one prompt")
    parser.add_argument("--chain-tokens", type=int, default=600)
    parser.add_argument("--image-steps", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    bundle = build_random_janus(args.size, dtype="bfloat16", device="cpu")
    set_image_grid(bundle.model, args.image_steps)
    sampler = TwoPhaseSampler(bundle)
    words = " ".join(["a red vase beside a teal vase on a wooden table"] * 200)
    ids = bundle.tokenizer.encode(words, add_special_tokens=False)[: args.chain_tokens]
    chain = bundle.tokenizer.decode(ids)
    sampling = SamplingConfig(compile="static", cfg_weight=5.0)
    before = _peak_gib()
    start = time.perf_counter()
    sampler.generate(["p"], sampling, chains=[[chain] * args.group], num_generations=args.group, decode_images=False)
    seconds = time.perf_counter() - start
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(
        f"{args.size} bf16, G={args.group}, chain of {len(ids)} tokens, {args.image_steps} image steps, "
        f"compile static, {platform.machine()} {torch.get_num_threads()} threads, commit {commit}: "
        f"peak RSS {_peak_gib():.2f} GiB, {_peak_gib() - before:+.2f} GiB over the model's ({seconds:.0f} s)"
    )


if __name__ == "__main__":
    main()
