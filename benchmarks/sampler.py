"""Sampler throughput: our batched two-phase sampler against (a) the published per-sample algorithm
and (b) transformers' own Janus `generate(generation_mode="image")` for the image phase.

Not a test: it prints samples/s and ratios measured in one run on one model.

    python benchmarks/sampler.py --size tiny     # CPU, per-step overhead dominates
    python benchmarks/sampler.py --size small    # CPU, arithmetic dominates
    python benchmarks/sampler.py --device cuda --dtype bfloat16 --size medium
    # Janus-Pro-1B's published architecture with random weights (gotr1.model.real_size), one prompt x G=16;
    # whole images take too long on a CPU, so every method decodes the same fixed number of steps, and the
    # per-sample loop (a) runs 4 of the 16 samples (its samples are independent: time x 16/4)
    python benchmarks/sampler.py --size janus-pro-1b --dtype bfloat16 --prompts 1 --group 16 \
        --max-reasoning-tokens 128 --image-steps 144 --repeats 1 --reference-samples 4 --compile none,default

With random weights a chain rarely closes itself, so it runs to --max-reasoning-tokens: every method then
decodes exactly that many reasoning steps and --image-steps image steps, and samples/s compares like with like.
The image-phase comparison (b) teacher-forces one fixed chain of about --max-reasoning-tokens tokens, the same
token ids for ours and for transformers.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from functools import partial

import torch

from gotr1.chain import BOX_END, BOX_START, OBJ_END, OBJ_START
from gotr1.model.image_tokens import set_image_grid
from gotr1.model.loading import JanusBundle
from gotr1.model.real_size import build_random_janus, sizes
from gotr1.model.reference import ReferenceParts, reference_generate
from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler
from gotr1.model.static_decode import COMPILE_MODES
from gotr1.model.tiny import TinyJanusSpec, build_tiny_janus
from gotr1.model.tokens import SpecialTokenIds, encode_prompt

SIZES = {
    # the test-suite's tiny language model (~0.1M parameters), 16x16 = 256 image tokens (64 px)
    "tiny": TinyJanusSpec(image_size=64, vq_channel_multiplier=(1, 1, 2), vq_codebook_size=1024),
    # ~7M-parameter language model, 16x16 = 256 image tokens (64 px)
    "small": TinyJanusSpec(
        hidden_size=256,
        num_layers=4,
        num_heads=8,
        num_kv_heads=8,
        intermediate_size=768,
        image_size=64,
        vq_channel_multiplier=(1, 1, 2),
        vq_codebook_size=1024,
    ),
    # ~100M-parameter language model, 24x24 = 576 image tokens like Janus-Pro (GPU)
    "medium": TinyJanusSpec(
        hidden_size=768,
        num_layers=12,
        num_heads=12,
        num_kv_heads=12,
        intermediate_size=2048,
        image_size=96,
        vq_channel_multiplier=(1, 1, 2),
        vq_codebook_size=16384,
    ),
}
PROMPTS = ["a red circle to the left of a blue square", "two small green triangles above a large yellow star"]


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak(device) -> int:
    """Peak memory in bytes since the last call: the device's allocator on a GPU, the process's RSS on a CPU."""
    if torch.device(device).type == "cuda":
        peak = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def fixed_chain(tokenizer, length: int) -> str:
    """A well-formed GoT chain (scene text, objects with boxes) of about `length` tokens."""
    pieces = ["The picture shows a few simple shapes on a plain background."]
    k = 0
    while len(tokenizer.encode(" ".join(pieces), add_special_tokens=False)) < length:
        x = 60 * (k % 12)
        pieces.append(f"{OBJ_START}a red circle{OBJ_END}{BOX_START}({x},{x}),({x + 200},{x + 250}){BOX_END}")
        k += 1
    return " ".join(pieces)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES) + list(sizes()), default="tiny")
    parser.add_argument("--prompts", type=int, default=len(PROMPTS), choices=range(1, len(PROMPTS) + 1))
    parser.add_argument(
        "--image-steps", type=int, default=None, help="decode only this many image tokens (default: all of them)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones")
    parser.add_argument("--group", type=int, default=8, help="G, chains per prompt")
    parser.add_argument("--max-reasoning-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--reference-samples",
        type=int,
        default=None,
        help="time the per-sample loop (a) on this many samples and scale to all (default: all)",
    )
    parser.add_argument(
        "--compile", default="none", help=f"comma-separated decode paths of ours to time: {', '.join(COMPILE_MODES)}"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    modes = args.compile.split(",")
    if any(m not in COMPILE_MODES for m in modes):
        parser.error(f"--compile takes {', '.join(COMPILE_MODES)}")

    dtype = getattr(torch, args.dtype)
    prompts = PROMPTS[: args.prompts]
    if args.size in SIZES:
        model, tokenizer = build_tiny_janus(spec=SIZES[args.size], seed=0)
        model = model.to(device=args.device, dtype=dtype).eval()
        bundle = JanusBundle(model, tokenizer, SpecialTokenIds.from_tokenizer(tokenizer))
    else:
        bundle = build_random_janus(args.size, dtype=dtype, device=args.device)
        model, tokenizer = bundle.model.eval(), bundle.tokenizer
    if args.image_steps is not None:
        try:
            set_image_grid(model, args.image_steps)
        except ValueError as error:
            parser.error(f"--image-steps: {error}")
    sampler = TwoPhaseSampler(bundle)
    G, n_samples = args.group, len(prompts) * args.group
    lm_params = sum(p.numel() for p in model.model.language_model.parameters()) / 1e6
    print(
        f"model: {args.size} (language model {lm_params:.1f}M params), {bundle.num_image_tokens} image tokens, "
        f"device {args.device}, {args.dtype}, {len(prompts)} prompt(s) x G={G}, "
        f"<= {args.max_reasoning_tokens} reasoning tokens, CFG 5, torch threads {torch.get_num_threads()}",
        flush=True,
    )
    rows, peaks = [], {}

    def config(mode):
        return SamplingConfig(max_reasoning_tokens=args.max_reasoning_tokens, compile=mode)

    call = dict(num_generations=G, decode_images=False)  # G samples per prompt, image codes only

    # Ours, both phases, on each decode path; the first call of a compiled path includes its compilation.
    ours = {}
    for mode in modes:
        start = time.perf_counter()
        samples = sampler.generate(prompts, config(mode), **call)
        first = time.perf_counter() - start
        ours[mode] = timed(partial(sampler.generate, prompts, config(mode), **call), args.device, args.repeats, 0)
        rows.append((f"ours [{mode}]: chains + images", ours[mode]))
        peaks[f"ours [{mode}]"] = _peak(args.device)
        print(f"ours [{mode}]: first call {first:.1f} s, then {ours[mode]:.1f} s", flush=True)
    text_tokens = sum(len(s.text_ids) for s in samples) / len(samples)

    # (a) The published algorithm, one sample at a time, no prefix sharing.
    parts = ReferenceParts.from_janus(model)
    gen = torch.Generator(device=args.device).manual_seed(0)
    per_prompt = G if args.reference_samples is None else max(1, -(-args.reference_samples // len(prompts)))
    per_prompt = min(per_prompt, G)

    def per_sample():
        with torch.inference_mode():
            for prompt in prompts:
                ids = encode_prompt(tokenizer, prompt, bundle.ids.bos)
                for _ in range(per_prompt):
                    reference_generate(
                        parts,
                        ids,
                        begin_of_image=bundle.ids.begin_of_image,
                        pad=bundle.ids.pad,
                        num_image_tokens=bundle.num_image_tokens,
                        max_text_tokens=args.max_reasoning_tokens,
                        generator=gen,
                        decode=False,
                    )

    warm = min(args.warmup, 1) if args.size in SIZES else 0
    t_ref = timed(per_sample, args.device, max(1, args.repeats - 2), warm) * G / per_prompt
    peaks["(a)"] = _peak(args.device)
    scaled = "" if per_prompt == G else f" (timed on {per_prompt} of {G} samples per prompt, scaled)"
    rows.append(("(a) published algorithm, per sample" + scaled, t_ref))

    # (b) Image phase only, on one fixed chain: ours (teacher-forced prefill) vs transformers' generate.
    chain = fixed_chain(tokenizer, args.max_reasoning_tokens)
    chains = [[chain] * G for _ in prompts]
    forced = {}
    for mode in modes:
        run = partial(sampler.generate, prompts, config(mode), chains=chains, **call)
        # A compiled path meets new shapes here (a shared chain, no per-row part): its first call compiles again.
        warm = args.warmup if mode == "none" else max(args.warmup, 1)
        forced[mode] = timed(run, args.device, args.repeats, warm)
        rows.append((f"ours [{mode}]: images for a fixed chain", forced[mode]))
        peaks[f"ours [{mode}], images"] = _peak(args.device)
    body = tokenizer.encode(chain, add_special_tokens=False)
    sequences = [[*encode_prompt(tokenizer, p, bundle.ids.bos), *body, bundle.ids.begin_of_image] for p in prompts]
    sequences = [s for s in sequences for _ in range(G)]
    input_ids, attention = _left_padded(sequences, bundle.ids.pad, args.device)

    def hf_generate():
        with torch.inference_mode():
            model.generate(
                input_ids, attention_mask=attention, generation_mode="image", do_sample=True, guidance_scale=5.0
            )

    t_hf = timed(hf_generate, args.device, args.repeats, args.warmup)
    peaks["(b)"] = _peak(args.device)
    rows.append(("(b) transformers generate(image)", t_hf))

    print(
        f"{n_samples} samples, {text_tokens:.0f} reasoning tokens each (fixed chain: {len(body) + 1}), "
        f"{bundle.num_image_tokens} image tokens"
    )
    print(f"{'':62s} {'seconds':>9s} {'s/sample':>9s} {'samples/s':>10s}")
    for name, t in rows:
        print(f"{name:62s} {t:9.2f} {t / n_samples:9.3f} {n_samples / t:10.3f}")
    for mode in modes:
        print(
            f"[{mode}] speed-up over (a) per-sample published algorithm: {t_ref / ours[mode]:.2f}x; "
            f"over (b) transformers image generate: {t_hf / forced[mode]:.2f}x"
        )
    if len(modes) > 1:
        best = min(modes, key=lambda m: ours[m])
        print(f"fastest decode path here: {best} ({', '.join(f'{m} {ours[m]:.1f} s' for m in modes)})")
    if args.device == "cpu":
        print(
            f"peak resident memory of the process: {peaks[f'ours [{modes[0]}]'] / 2**30:.2f} GiB after ours, "
            f"{max(peaks.values()) / 2**30:.2f} GiB after all methods"
        )
    else:
        print("peak device memory per method (GiB): " + ", ".join(f"{k} {v / 2**30:.2f}" for k, v in peaks.items()))


def _left_padded(sequences, pad: int, device):
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for i, s in enumerate(sequences):
        input_ids[i, width - len(s) :] = torch.tensor(s)
        attention[i, width - len(s) :] = 1
    return input_ids.to(device), attention.to(device)


if __name__ == "__main__":
    main()
