"""Sampler throughput: our batched two-phase sampler against (a) the published per-sample algorithm
and (b) transformers' own Janus `generate(generation_mode="image")` for the image phase.

Not a test: it prints samples/s and ratios measured in one run on one model.

    python benchmarks/sampler.py --size tiny     # CPU, per-step overhead dominates
    python benchmarks/sampler.py --size small    # CPU, arithmetic dominates
    python benchmarks/sampler.py --device cuda --dtype bfloat16 --size medium
    # Janus-Pro-1B's published architecture with random weights (gotr1.model.real_size), one prompt x G=16;
    # a whole per-sample run is too long on a CPU, so every method runs the same fixed number of decode steps
    python benchmarks/sampler.py --size janus-pro-1b --dtype bfloat16 --prompts 1 --group 16 \
        --max-reasoning-tokens 16 --image-steps 16 --repeats 1

With random weights a chain rarely closes itself, so it runs to --max-reasoning-tokens: every method then
decodes exactly that many reasoning steps and --image-steps image steps, and samples/s compares like with like.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from gotr1.model.loading import JanusBundle
from gotr1.model.real_size import build_random_janus, sizes
from gotr1.model.reference import ReferenceParts, reference_generate
from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler
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
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    prompts = PROMPTS[: args.prompts]
    if args.size in SIZES:
        model, tokenizer = build_tiny_janus(spec=SIZES[args.size], seed=0)
        model = model.to(device=args.device, dtype=dtype).eval()
        bundle = JanusBundle(model, tokenizer, SpecialTokenIds.from_tokenizer(tokenizer))
    else:
        bundle = build_random_janus(args.size, dtype=dtype, device=args.device)
        model, tokenizer = bundle.model.eval(), bundle.tokenizer
    if args.image_steps is not None:  # every method reads the image length from these two settings
        side = int(args.image_steps**0.5)
        if side * side != args.image_steps:
            parser.error("--image-steps must be a square number (the image grid is square)")
        model.config.vq_config.num_patches = side
        model.model.vision_model.config.num_image_tokens = args.image_steps
    sampler = TwoPhaseSampler(bundle)
    G, n_samples = args.group, len(prompts) * args.group
    config = SamplingConfig(num_generations=G, max_reasoning_tokens=args.max_reasoning_tokens, decode_images=False)
    lm_params = sum(p.numel() for p in model.model.language_model.parameters()) / 1e6
    print(
        f"model: {args.size} (language model {lm_params:.1f}M params), {bundle.num_image_tokens} image tokens, "
        f"device {args.device}, {args.dtype}, {len(prompts)} prompt(s) x G={G}, "
        f"<= {args.max_reasoning_tokens} reasoning tokens, CFG 5, torch threads {torch.get_num_threads()}"
    )

    # Ours, both phases.
    t_ours = timed(lambda: sampler.generate(prompts, config), args.device, args.repeats, args.warmup)
    peaks = {"ours": _peak(args.device)}

    # (a) The published algorithm, one sample at a time, no prefix sharing.
    parts = ReferenceParts.from_janus(model)
    gen = torch.Generator(device=args.device).manual_seed(0)

    def per_sample():
        with torch.inference_mode():
            for prompt in prompts:
                ids = encode_prompt(tokenizer, prompt, bundle.ids.bos)
                for _ in range(G):
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

    t_ref = timed(per_sample, args.device, max(1, args.repeats - 2), min(args.warmup, 1) if args.size in SIZES else 0)
    peaks["(a)"] = _peak(args.device)

    # (b) Image phase only, on fixed chains: ours (teacher-forced prefill) vs transformers' generate.
    samples = sampler.generate(prompts, config)
    chains = [[s.chain for s in samples[i * G : (i + 1) * G]] for i in range(len(prompts))]
    t_ours_img = timed(lambda: sampler.generate(prompts, config, chains=chains), args.device, args.repeats, args.warmup)
    peaks["ours, images"] = _peak(args.device)
    sequences = [torch.cat([s.prompt_ids, s.text_ids]) for s in samples]
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), bundle.ids.pad, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for i, s in enumerate(sequences):
        input_ids[i, width - len(s) :] = s
        attention[i, width - len(s) :] = 1
    input_ids, attention = input_ids.to(args.device), attention.to(args.device)

    def hf_generate():
        with torch.inference_mode():
            model.generate(
                input_ids, attention_mask=attention, generation_mode="image", do_sample=True, guidance_scale=5.0
            )

    t_hf = timed(hf_generate, args.device, args.repeats, args.warmup)
    peaks["(b)"] = _peak(args.device)

    rows = [
        ("ours: chains + images", t_ours),
        ("(a) published algorithm, per sample", t_ref),
        ("ours: images for fixed chains", t_ours_img),
        ("(b) transformers generate(image)", t_hf),
    ]
    print(f"{'':40s} {'seconds':>9s} {'samples/s':>10s}")
    for name, t in rows:
        print(f"{name:40s} {t:9.3f} {n_samples / t:10.2f}")
    print(f"speed-up over (a) per-sample published algorithm: {t_ref / t_ours:.2f}x")
    print(f"speed-up over (b) transformers image generate:    {t_hf / t_ours_img:.2f}x")
    if args.device == "cpu":
        print(f"peak resident memory of the process: {max(peaks.values()) / 2**30:.2f} GiB (all methods together)")
    else:
        print("peak device memory per method (GiB): " + ", ".join(f"{k} {v / 2**30:.2f}" for k, v in peaks.items()))


if __name__ == "__main__":
    main()
