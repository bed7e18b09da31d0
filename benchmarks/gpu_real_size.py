"""Janus-Pro at real size on a GPU: a decode step against the chip's bandwidth bound, eager vs compiled vs
transformers' `generate`, and one GRPO step at 1B and 7B. One script for a lent GPU, inside --budget-s.

    python benchmarks/gpu_real_size.py --out results/        # on the GPU machine (~9 minutes on an H200)
    python benchmarks/gpu_real_size.py --smoke               # the same code paths, tiny, on the CPU

Not a test. What it measures, in this order (the most important first, so a short budget keeps those):

1. the chip's memory bandwidth: a large device-to-device copy (bytes read + written per second);
2. ms per image decode step of Janus-Pro-1B (random weights, bf16) at batch 32, 1, 16 and 64 (x2 rows for
   CFG), for our eager path ("none"), our compiled path ("reduce-overhead": CUDA graphs) and transformers'
   `generate(generation_mode="image")`. A step's time is the difference between decoding 256 and 64 image
   tokens after the same teacher-forced prompt and chain, divided by 192, so prefill is left out. Two bounds,
   bytes over the measured bandwidth: the language model's and the generation head's weights (the hard
   limit, against which the compiled path is judged), and those plus every row's cached keys and values at
   the mean length of those 192 steps (what a path without shared segments must read);
3. one GRPO step (LoRA 32, gradient checkpointing) at 1B (G=16) and at 7B (G=8), by
   benchmarks/grpo_real_size.py: time split and peak memory.

Everything printed is also written to --out (results.json, report.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sampler import fixed_chain  # noqa: E402 - benchmarks/sampler.py, beside this script

from gotr1.model.image_tokens import set_image_grid  # noqa: E402
from gotr1.model.real_size import build_random_janus  # noqa: E402
from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler  # noqa: E402
from gotr1.model.tokens import encode_prompt  # noqa: E402
from gotr1.progress import log_to_stderr, progress  # noqa: E402

PROMPT = "two small green triangles above a large yellow star"


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def bandwidth(device, gib: float) -> float:
    """Bytes per second of a device-to-device copy (counting the read and the write)."""
    n = int(gib * 2**30)
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    sync(device)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - start)
    del src, dst
    return 2 * n / best


class DecodeBench:
    """Image-phase time for a batch, by method, after a fixed teacher-forced chain."""

    def __init__(self, bundle, device, chain_tokens: int, lengths: tuple[int, int]):
        self.bundle, self.device, self.lengths = bundle, device, lengths
        self.model = bundle.model
        self.sampler = TwoPhaseSampler(bundle)
        tok = bundle.tokenizer
        self.chain = chain = fixed_chain(tok, chain_tokens)
        prompt = encode_prompt(tok, PROMPT, bundle.ids.bos)
        self.sequence = [*prompt, *tok.encode(chain, add_special_tokens=False), bundle.ids.begin_of_image]

    def _run(self, method: str, batch: int, n_tokens: int) -> float:
        set_image_grid(self.model, n_tokens)
        if method == "transformers":
            ids = torch.tensor([self.sequence] * batch, device=self.device)

            def run():
                with torch.inference_mode():
                    self.model.generate(
                        ids,
                        attention_mask=torch.ones_like(ids),
                        generation_mode="image",
                        do_sample=True,
                        guidance_scale=5.0,
                    )
        else:
            config = SamplingConfig(compile=method)

            def run():
                self.sampler.generate(
                    [PROMPT], config, num_generations=batch, decode_images=False, chains=[[self.chain] * batch]
                )

        for _ in range(1 if method in ("none", "transformers") else 2):
            run()  # warm-up (compiled: compilation and CUDA-graph recording, given a second chance to settle)
        sync(self.device)
        start = time.perf_counter()
        run()
        sync(self.device)
        return time.perf_counter() - start

    def step_ms(self, method: str, batch: int) -> float:
        short, long = self.lengths
        return (self._run(method, batch, long) - self._run(method, batch, short)) / (long - short) * 1e3

    def bound_ms(self, batch: int, bytes_per_second: float, *, with_cache: bool = True) -> float:
        """Bytes a step must read at the measured bandwidth: the weights, plus (with_cache) every row's whole
        KV cache, as a path without shared segments reads it (ours reads shared prefixes once, so it can beat
        that one; the weights-only bound is the hard limit)."""
        lm = self.model.model.language_model
        weights = sum(p.numel() * p.element_size() for p in lm.parameters())
        weights += sum(p.numel() * p.element_size() for p in self.model.model.generation_head.parameters())
        config = lm.config
        kv_dim = config.num_key_value_heads * (config.hidden_size // config.num_attention_heads)
        short, long = self.lengths
        mean_length = len(self.sequence) + (short + long) / 2
        kv = 2 * batch * config.num_hidden_layers * 2 * kv_dim * 2 * mean_length  # rows, K+V, bf16
        return (weights + (kv if with_cache else 0)) / bytes_per_second * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_results")
    parser.add_argument("--budget-s", type=float, default=540, help="skip what would start after this")
    parser.add_argument("--smoke", action="store_true", help="a shrunk model on any device: checks the code paths")
    parser.add_argument("--device", default=None)
    parser.add_argument("--methods", default="none,reduce-overhead,transformers")
    parser.add_argument("--grpo-compile", default="none", help="decode path of the GRPO steps")
    args = parser.parse_args()
    started = time.perf_counter()
    log_to_stderr()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"device": device, "torch": torch.__version__}
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)
        (out / "report.md").write_text("\n".join(lines) + "\n")
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    def time_left() -> float:
        return args.budget_s - (time.perf_counter() - started)

    if device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name(device)
    say(f"# Janus-Pro at real size: {results.get('gpu', device)}, torch {torch.__version__}")
    bw = bandwidth(device, 0.05 if args.smoke else 4.0)
    results["bandwidth_bytes_per_s"] = bw
    say(f"measured bandwidth (device-to-device copy): {bw / 1e9:.0f} GB/s")

    shrink = dict(layers=2, shrink=8) if args.smoke else {}
    bundle = build_random_janus("janus-pro-1b", dtype=torch.bfloat16, device=device, **shrink)
    bundle.model.eval()
    lengths = (4, 16) if args.smoke else (64, 256)
    bench = DecodeBench(bundle, device, chain_tokens=16 if args.smoke else 128, lengths=lengths)
    methods = args.methods.split(",")
    batches = [2, 1] if args.smoke else [32, 1, 16, 64]
    say("\n## ms per image decode step, Janus-Pro-1B, bf16 (rows = 2 x batch for CFG)\n")
    say(
        "| batch | " + " | ".join(methods) + " | bound (weights + whole caches) | bound (weights) "
        "| compiled / weights bound | compiled vs transformers |"
    )
    say("|---|" + "---|" * (len(methods) + 4))
    results["decode_ms"] = {}
    bar = progress(len(batches) * len(methods), "decode timings", "run")
    for batch in batches:
        row = {}
        for method in methods:
            row[method] = None
            if time_left() >= 60:
                try:
                    row[method] = bench.step_ms(method, batch)
                except Exception as error:  # noqa: BLE001 - a failed method is reported, the others still run
                    say(f"<!-- {method} at batch {batch} failed: {type(error).__name__}: {error} -->")
            bar.update(1)
        bound = bench.bound_ms(batch, bw)
        weights_bound = bench.bound_ms(batch, bw, with_cache=False)
        results["decode_ms"][batch] = row | {"bound": bound, "weights_bound": weights_bound}
        compiled = row.get("reduce-overhead")
        ratio = f"{compiled / weights_bound:.2f}x" if compiled else "-"
        versus = f"{row['transformers'] / compiled:.1f}x" if compiled and row.get("transformers") else "-"
        cells = " | ".join("skipped" if row[m] is None else f"{row[m]:.2f}" for m in methods)
        say(f"| {batch} | {cells} | {bound:.2f} | {weights_bound:.2f} | {ratio} | {versus} |")
    bar.close()
    del bench, bundle
    if device.startswith("cuda"):
        torch.cuda.empty_cache()

    say("\n## One GRPO step (LoRA 32, gradient checkpointing, shapes rewards), bf16\n")
    runs = [("janus-pro-1b", 16), ("janus-pro-7b", 8)]
    for size, group in runs:
        if time_left() < 120 or args.smoke and size == "janus-pro-7b":
            say(f"{size}: skipped (budget)" if not args.smoke else f"{size}: skipped (smoke)")
            continue
        target = out / f"grpo_{size}.json"
        command = [
            sys.executable,
            str(Path(__file__).with_name("grpo_real_size.py")),
            f"--size={size}",
            f"--device={device}",
            f"--group={2 if args.smoke else group}",
            f"--max-reasoning-tokens={8 if args.smoke else 128}",
            f"--micro-batch={2 if args.smoke else 8}",
            f"--compile={args.grpo_compile}",
            f"--json={target}",
        ]
        if args.smoke:
            command.append("--smoke")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=max(30, time_left() - 15))
            say(f"### {size}, G={group}\n```\n{done.stdout.strip()}\n```")
            if done.returncode:
                say(f"<!-- failed: {done.stderr.strip()[-2000:]} -->")
            elif target.exists():
                results[f"grpo_{size}"] = json.loads(target.read_text())
        except subprocess.TimeoutExpired:
            say(f"{size}: stopped at the budget")
    say(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
