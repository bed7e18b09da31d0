"""One GRPO step at Janus-Pro size (random weights): time split, peak memory, and a memory table at G=16 x 8.

    # CPU, the recipe's shape (configs/janus_pro_1b_grpo.yaml: LoRA 32, gradient checkpointing, beta 0.01,
    # micro-batches) with a small group, the shapes world's exact rewards standing in for the judge
    python benchmarks/grpo_real_size.py --size janus-pro-1b --group 2 --max-reasoning-tokens 64
    # GPU (benchmarks/gpu_real_size.py runs these)
    python benchmarks/grpo_real_size.py --device cuda --size janus-pro-7b --group 8 --compile reduce-overhead

Not a test. It runs `GRPOTrainer.rollout()` (sampling, rewards, old/reference log-probs) and `optimize()`
(forward-backward and the AdamW step) once after one untimed warm-up step, and prints:

- the time split: sampling / rewards / log-prob passes / forward-backward + update;
- peak memory of each phase: on a GPU the allocator's peak, on the CPU the process's resident set sampled
  every 20 ms (so a phase's figure includes the weights and whatever the allocator kept);
- a memory table for both sizes at the recipe's G=16 x 8 prompts, from a per-part model (weights, LoRA with
  AdamW, KV cache while sampling, checkpointed activations and logits while training) whose inputs are the
  configurations and the recipe; the measured step's own peaks are printed beside the model's figure for the
  same step, so the model's error is visible.

With random weights a chain never closes by itself: every chain is --max-reasoning-tokens long.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gotr1.model.image_tokens import set_image_grid  # noqa: E402
from gotr1.model.real_size import build_random_janus, real_size_config  # noqa: E402
from gotr1.model.sampler import SamplingConfig  # noqa: E402
from gotr1.model.static_decode import COMPILE_MODES, bucketed  # noqa: E402
from gotr1.train.grpo import GRPOConfig, GRPOTrainer  # noqa: E402
from gotr1.worlds.shapes.grammar import ShapesGrammar  # noqa: E402
from gotr1.worlds.shapes.rl import prompt_source, reward_function  # noqa: E402

GIB = 2**30
PROMPT_TOKENS = 80  # a T2I-CompBench prompt in the chat template, about


class PeakMemory:
    """Peak memory of a phase: the CUDA allocator's, or the process's resident set sampled on a thread."""

    def __init__(self, device: str):
        self.cuda = torch.device(device).type == "cuda"

    def __enter__(self):
        self.peak = 0
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def _watch(self):
        page = 4096
        while not self._stop.is_set():
            with open("/proc/self/statm") as f:
                self.peak = max(self.peak, int(f.read().split()[1]) * page)
            time.sleep(0.02)

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()


def memory_model(size: str, *, prompts: int, group: int, reasoning: int, micro_batch: int, chunk: int | None):
    """Bytes of each part of a GRPO step (bf16 weights, LoRA 32 on the attention and MLP projections with
    fp32 AdamW, CFG sampling, gradient checkpointing) from the model's configuration. The KV cache counts
    the image phase's conditional and unconditional rows plus the text phase's cache, alive at the switch."""
    config = real_size_config(size).text_config
    hidden, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    kv_dim = config.num_key_value_heads * (config.hidden_size // config.num_attention_heads)
    image_tokens, codebook = 576, 16384
    meta = build_random_janus(size, device="meta")
    weights = sum(p.numel() for p in meta.model.parameters()) * 2
    inter, r = config.intermediate_size, 32
    lora_params = layers * r * ((hidden + hidden) * 2 + (hidden + kv_dim) * 2 + 3 * (hidden + inter))
    lora = lora_params * (2 + 4 + 4 + 4)  # bf16 weights, fp32 grads and two AdamW moments
    sequence = PROMPT_TOKENS + reasoning + 1 + image_tokens
    rows = (chunk or prompts) * group  # conditional rows of one sampler call
    kv_token = layers * 2 * kv_dim * 2  # keys and values, bf16
    # the image phase holds conditional + unconditional rows while the text phase's cache is still alive
    kv = 3 * rows * bucketed(sequence) * kv_token
    tokens = micro_batch * sequence
    checkpoints = layers * tokens * hidden * 2  # each layer's input kept for the recomputation
    one_layer = tokens * (4 * hidden + 3 * inter) * 2 * 2  # a recomputed layer's activations and grads
    logits = micro_batch * (reasoning * vocab + image_tokens * codebook) * 4 * 3  # fp32 logits, log-softmax, grad
    return {
        "weights (bf16)": weights,
        "LoRA r=32 + AdamW (fp32 states)": lora,
        "KV cache while sampling": kv,
        "activations (checkpointed) while training": checkpoints + one_layer,
        "logits while training": logits,
        "peak while sampling": weights + lora + kv,
        "peak while training": weights + lora + checkpoints + one_layer + logits,
    }


def recipe_table() -> dict:
    """The memory table of the 1B / 7B recipes (G=16 x 8 prompts), all at once and chunked; printed."""
    print("\nmemory at the recipes' shape (G=16 x 8 prompts, 600 reasoning tokens, micro-batch 8 / 4), GiB:")
    shapes = {
        "all 8 prompts sampled at once": None,
        "sample_chunk_prompts: 1": 1,
    }
    micro_batches = {"janus-pro-1b": 8, "janus-pro-7b": 4}  # configs/janus_pro_{1b,7b}_grpo.yaml
    tables = {}
    for label, chunk in shapes.items():
        for size, micro in micro_batches.items():
            tables[(label, size)] = memory_model(
                size, prompts=8, group=16, reasoning=600, micro_batch=micro, chunk=chunk
            )
    names = list(next(iter(tables.values())))
    header = "".join(f"{size + (', chunk 1' if shapes[label] else ''):>24s}" for label, size in tables)
    print(f"{'':44s}{header}")
    for name in names:
        print(f"{name:44s}" + "".join(f"{t[name] / GIB:24.1f}" for t in tables.values()))
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="janus-pro-1b", choices=("janus-pro-1b", "janus-pro-7b"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prompts", type=int, default=1, help="prompts per step (the recipe: 8)")
    parser.add_argument("--group", type=int, default=2, help="G, samples per prompt (the recipe: 16)")
    parser.add_argument("--max-reasoning-tokens", type=int, default=64, help="the recipe: 600")
    parser.add_argument("--micro-batch", type=int, default=2, help="sequences per forward/backward (the recipe: 8)")
    parser.add_argument("--compile", default="none", choices=COMPILE_MODES)
    parser.add_argument("--no-warmup", action="store_true", help="time the first step (includes compilation)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--smoke", action="store_true", help="2 layers, widths / 8, 16 image tokens: the code paths")
    parser.add_argument("--table-only", action="store_true", help="print the recipe memory table, run no step")
    args = parser.parse_args()
    if args.table_only:
        recipe_table()
        return

    start = time.perf_counter()
    shrink = dict(layers=2, shrink=8) if args.smoke else {}
    bundle = build_random_janus(args.size, dtype=torch.bfloat16, device=args.device, **shrink)
    if args.smoke:
        set_image_grid(bundle.model, 16)
    built = time.perf_counter() - start
    config = GRPOConfig(
        steps=2,
        prompts_per_step=args.prompts,
        num_generations=args.group,
        learning_rate=1e-5,
        lr_schedule="constant",
        beta=0.01,
        lora_r=32,
        lora_alpha=32,
        micro_batch_size=args.micro_batch,
        gradient_checkpointing=True,
    )
    settings = SamplingConfig(cfg_weight=5.0, max_reasoning_tokens=args.max_reasoning_tokens, compile=args.compile)
    trainer = GRPOTrainer(
        bundle, config, reward_function(), prompt_source(ShapesGrammar(), args.prompts), sampling=settings
    )
    print(
        f"{args.size}, random weights (built in {built:.0f} s), {args.device}, bf16, LoRA 32, gradient "
        f"checkpointing, beta 0.01, {args.prompts} prompt(s) x G={args.group}, {args.max_reasoning_tokens} "
        f"reasoning + 576 image tokens, micro-batch {args.micro_batch}, decode path {args.compile}, "
        f"torch threads {torch.get_num_threads()}",
        flush=True,
    )
    if not args.no_warmup:
        start = time.perf_counter()
        trainer.step()
        print(f"warm-up step: {time.perf_counter() - start:.0f} s", flush=True)

    with PeakMemory(args.device) as rollout_memory:
        start = time.perf_counter()
        rollout = trainer.rollout()
        rollout_seconds = time.perf_counter() - start
    with PeakMemory(args.device) as optimize_memory:
        start = time.perf_counter()
        trainer.optimize(rollout)
        optimize_seconds = time.perf_counter() - start
    sampling, rewards = rollout.sample_seconds, rollout.reward_seconds
    split = {
        "sampling": sampling,
        "rewards": rewards,
        "old/reference log-probs": rollout_seconds - sampling - rewards,
        "forward-backward + update": optimize_seconds,
    }
    total = rollout_seconds + optimize_seconds
    print(f"step: {total:.1f} s")
    for name, seconds in split.items():
        print(f"  {name:28s} {seconds:8.1f} s  {seconds / total:6.1%}")
    measured = {"rollout": rollout_memory.peak, "optimize": optimize_memory.peak}
    kind = "allocator peak" if rollout_memory.cuda else "resident set"
    print(
        f"peak memory ({kind}): rollout {measured['rollout'] / GIB:.2f} GiB, "
        f"optimize {measured['optimize'] / GIB:.2f} GiB"
    )
    here = memory_model(
        args.size,
        prompts=args.prompts,
        group=args.group,
        reasoning=args.max_reasoning_tokens,
        micro_batch=args.micro_batch,
        chunk=None,
    )
    print(
        f"the memory model for this step: sampling {here['peak while sampling'] / GIB:.2f} GiB, "
        f"training {here['peak while training'] / GIB:.2f} GiB (measured above: rollout, optimize)"
    )

    tables = recipe_table()
    if args.json:
        record = {
            "args": vars(args),
            "seconds": split,
            "peak_bytes": measured,
            "model_for_this_step": here,
            "recipe_tables": {f"{label} / {size}": t for (label, size), t in tables.items()},
        }
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
