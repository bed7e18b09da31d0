"""Sampler throughput: our batched two-phase sampler against (a) the published per-sample algorithm
and (b) transformers' own Janus `generate(generation_mode="image")` for the image phase.

Not a test: it prints samples/s and ratios measured in one run on one model.

    python benchmarks/sampler.py --size tiny     # CPU, per-step overhead dominates
    python benchmarks/sampler.py --size small    # CPU, arithmetic dominates
    python benchmarks/sampler.py --device cuda --dtype bfloat16 --size medium
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gotr1.model.loading import JanusBundle
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


def timed(fn, device, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--group", type=int, default=8, help="G, chains per prompt")
    parser.add_argument("--max-reasoning-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    model, tokenizer = build_tiny_janus(spec=SIZES[args.size], seed=0)
    model = model.to(device=args.device, dtype=dtype).eval()
    bundle = JanusBundle(model, tokenizer, SpecialTokenIds.from_tokenizer(tokenizer))
    sampler = TwoPhaseSampler(bundle)
    G, n_samples = args.group, len(PROMPTS) * args.group
    config = SamplingConfig(num_generations=G, max_reasoning_tokens=args.max_reasoning_tokens, decode_images=False)
    lm_params = sum(p.numel() for p in model.model.language_model.parameters()) / 1e6
    print(
        f"model: {args.size} (language model {lm_params:.1f}M params), {bundle.num_image_tokens} image tokens, "
        f"device {args.device}, {args.dtype}, {len(PROMPTS)} prompts x G={G}, "
        f"<= {args.max_reasoning_tokens} reasoning tokens, CFG 5"
    )

    # Ours, both phases.
    t_ours = timed(lambda: sampler.generate(PROMPTS, config), args.device, args.repeats)

    # (a) The published algorithm, one sample at a time, no prefix sharing.
    parts = ReferenceParts.from_janus(model)
    gen = torch.Generator(device=args.device).manual_seed(0)

    def per_sample():
        with torch.inference_mode():
            for prompt in PROMPTS:
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
                    )

    t_ref = timed(per_sample, args.device, max(1, args.repeats - 2))

    # (b) Image phase only, on fixed chains: ours (teacher-forced prefill) vs transformers' generate.
    samples = sampler.generate(PROMPTS, config)
    chains = [[s.chain for s in samples[i * G : (i + 1) * G]] for i in range(len(PROMPTS))]
    t_ours_img = timed(lambda: sampler.generate(PROMPTS, config, chains=chains), args.device, args.repeats)
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

    t_hf = timed(hf_generate, args.device, args.repeats)

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


if __name__ == "__main__":
    main()
