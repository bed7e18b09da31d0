"""What a region-preserving edit costs against re-drawing the whole image, same model, chain and settings.

The source is one image drawn from a fixed two-object chain; one edit recolours an object (its box, grown by the
margin, is re-sampled), the other moves it (its old and new boxes); the other image tokens are teacher-forced
in runs, one forward each.
The baseline is today's full re-render: the edited chain teacher-forced and every image token sampled. Both
take the chain's prefill and the same CFG; times are medians of `--repeats` calls after one warm-up each.

    python benchmarks/edit_speed.py [--model random:janus-pro-1b] [--dtype bfloat16] [--margin 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

CHAIN = (
    "A photo of <|obj_start|>a red apple<|obj_end|> <|box_start|>(120,540),(360,780)<|box_end|> to the left of "
    "<|obj_start|>a green cup<|obj_end|> <|box_start|>(600,420),(880,800)<|box_end|> on a wooden table."
)
EDITS = {
    "recolour one object": CHAIN.replace("a red apple", "a green apple"),
    "move one object": CHAIN.replace("(120,540),(360,780)", "(120,140),(360,380)"),
}


def _median_seconds(run, repeats: int) -> float:
    run()  # warm-up (allocations, first-call paths)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    from gotr1.model.edit_masks import DEFAULT_EDIT_MARGIN, plan_edit_mask
    from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler
    from gotr1.models import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:janus-pro-1b")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--margin", type=int, default=DEFAULT_EDIT_MARGIN)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    bundle = load_model(args.model, args.dtype, "cpu")
    sampler = TwoPhaseSampler(bundle)
    sampling = SamplingConfig(cfg_weight=5.0)
    source = sampler.generate(["a red apple and a green cup"], sampling, chains=[[CHAIN]], seed=1, decode_images=False)
    side = int(bundle.num_image_tokens**0.5)
    prompt = "a red apple and a green cup"

    def draw(chain, mask=None):
        edit = {} if mask is None else {"source_image_ids": [source[0].image_ids[0]], "edit_masks": [mask]}
        return lambda: sampler.generate([prompt], sampling, chains=[[chain]], seed=2, decode_images=False, **edit)

    print(
        f"{args.model} {args.dtype} on {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}; {side}x{side} image tokens, margin {args.margin}"
    )
    full_s = _median_seconds(draw(EDITS["move one object"]), args.repeats)
    print(f"full re-render (fixed chain, every image token sampled): {full_s:.2f} s")
    for name, chain in EDITS.items():
        mask = plan_edit_mask(CHAIN, chain, side, args.margin)
        edit_s = _median_seconds(draw(chain, mask), args.repeats)
        print(
            f"{name}: {int(mask.sum())} of {mask.numel()} tokens sampled ({float(mask.float().mean()):.1%}), "
            f"{edit_s:.2f} s; edit / full = {edit_s / full_s:.3f}"
        )


if __name__ == "__main__":
    main()
