"""First call in a fresh process: the compiled path with a cold compile cache, with a warm one, and the eager path.

Each case runs in its own process (as `gotr1 generate`, `eval` or `serve` would start): load the model, then time
the first `generate` call (compiling or loading included) and a second, steady one, one prompt x G images. With
random weights every chain runs to --max-reasoning-tokens; --image-steps image tokens per image (a smaller grid
than the model's, decoded as far as the sampler goes; no VQ decode). Not a test: it prints seconds and ratios.

    python benchmarks/compile_cache.py [--size janus-pro-1b] [--group 16] [--max-reasoning-tokens 32] [--image-steps 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

CASE = """
import json, sys, time, torch
from gotr1.model.image_tokens import set_image_grid
from gotr1.model.real_size import build_random_janus
from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler
size, group, reasoning, steps, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
start = time.perf_counter()
bundle = build_random_janus(size, dtype="bfloat16", device="cpu")
set_image_grid(bundle.model, steps)
loaded = time.perf_counter() - start
sampler = TwoPhaseSampler(bundle)
sampling = SamplingConfig(max_reasoning_tokens=reasoning, compile=mode, cfg_weight=5.0)
times, tokens = [], []
for _ in range(2):
    start = time.perf_counter()
    prompts = ["a red vase beside a teal vase"]
    out = sampler.generate(prompts, sampling, num_generations=group, seed=1, decode_images=False)
    times.append(time.perf_counter() - start)
    tokens.append([g.image_ids.tolist() for g in out])
print(json.dumps({"load": loaded, "first": times[0], "second": times[1], "same": tokens[0] == tokens[1]}))
"""


def _case(args, mode: str, cache: str) -> dict:
    env = os.environ | {"GOTR1_CACHE": cache}
    command = [sys.executable, "-c", CASE, args.size, str(args.group), str(args.max_reasoning_tokens)]
    done = subprocess.run([*command, str(args.image_steps), mode], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode}: failed\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {mode:8s} {json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()})}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="janus-pro-1b")
    parser.add_argument("--group", type=int, default=16)
    parser.add_argument("--max-reasoning-tokens", type=int, default=32)
    parser.add_argument("--image-steps", type=int, default=64)
    parser.add_argument("--mode", default="default", help="the compiled path: default, reduce-overhead or frozen")
    args = parser.parse_args()
    print(
        f"{args.size} bf16, one prompt x G={args.group}, {args.max_reasoning_tokens} reasoning and {args.image_steps} "
        f"image steps; {platform.machine()}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}"
    )
    with tempfile.TemporaryDirectory() as cache:
        cold = _case(args, args.mode, cache)
        warm = _case(args, args.mode, cache)
    eager = _case(args, "none", tempfile.gettempdir())
    print(f"| {args.mode} path | first call, s | second call, s |\n|---|---|---|")
    print(f"| cold compile cache | {cold['first']:.1f} | {cold['second']:.1f} |")
    print(f"| warm compile cache (a fresh process) | {warm['first']:.1f} | {warm['second']:.1f} |")
    print(f"| eager | {eager['first']:.1f} | {eager['second']:.1f} |")
    print(
        f"first call, warm cache against eager: {eager['first'] / warm['first']:.2f}x faster; "
        f"steady: {eager['second'] / warm['second']:.2f}x; cold compile costs {cold['first'] - cold['second']:.0f} s"
    )


if __name__ == "__main__":
    main()
