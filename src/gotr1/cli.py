"""`gotr1` command line: generate, convert (training, rewards and evaluation join as they land)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path

from .models import BUILTIN_TINY_RANDOM, load_model

log = logging.getLogger("gotr1")

class CliError(Exception):
    """A user-facing error printed as one line."""


def _slug(text: str, limit: int = 60) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    return slug[:limit] or "prompt"


def write_generation(gen, out_dir: Path) -> list[Path]:
    """Per sample: image(s), chain as text and JSON, and the plan drawn over each image."""
    from .layout import draw_plan_over_image

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "chain.txt").write_text(gen.chain + "\n")
    record = {
        "prompt": gen.prompt,
        "seed": gen.seed,
        "sample_index": gen.sample_index,
        "chain": gen.chain,
        "text": gen.parsed.text,
        "objects": [
            {"name": o.name, "box": None if o.box is None else [o.box.x1, o.box.y1, o.box.x2, o.box.y2]}
            for o in gen.objects
        ],
        "problems": [{"kind": str(getattr(p.kind, "value", p.kind)), "message": p.message} for p in gen.parsed.problems],
        "hit_token_cap": gen.hit_token_cap,
        "num_text_tokens": int(len(gen.text_ids)),
        "images": [],
    }
    written = [out_dir / "chain.txt", out_dir / "chain.json"]
    for i, image in enumerate(gen.images):
        image_path, plan_path = out_dir / f"image_{i}.png", out_dir / f"plan_{i}.png"
        image.save(image_path)
        # Small images are enlarged (nearest) so the plan's labels stay legible.
        scale = max(1, -(-384 // image.width))
        shown = image.resize((image.width * scale, image.height * scale), resample=0) if scale > 1 else image
        draw_plan_over_image(shown, gen.objects).save(plan_path)
        record["images"].append({"image": image_path.name, "plan": plan_path.name})
        written += [image_path, plan_path]
    (out_dir / "chain.json").write_text(json.dumps(record, indent=2) + "\n")
    return written


def cmd_generate(args) -> int:
    from .model.sampler import SamplingConfig, TwoPhaseSampler

    prompts = list(args.prompt or [])
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise CliError(f"{path}: no such prompts file")
        prompts += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts:
        raise CliError("give at least one --prompt or a --prompts-file")
    bundle = load_model(args.model, args.dtype, args.device)
    cfg_weight = args.cfg
    if cfg_weight is None:  # the checkpoint's preferred weight, else the release's 5
        cfg_weight = getattr(bundle.model.generation_config, "guidance_scale", None) or 5.0
    config = SamplingConfig(
        num_generations=args.num_chains, images_per_chain=args.num_images, cfg_weight=cfg_weight,
        text_temperature=args.text_temperature, image_temperature=args.image_temperature,
        text_top_k=args.top_k, text_top_p=args.top_p, max_reasoning_tokens=args.max_reasoning_tokens,
        seed=args.seed, show_progress=True,
    )
    sampler = TwoPhaseSampler(bundle)
    out_root = Path(args.out)
    for start in range(0, len(prompts), args.batch_size):
        batch = prompts[start:start + args.batch_size]
        seeds = [args.seed + start + i for i in range(len(batch))]
        for gen in sampler.generate(batch, config, seeds=seeds):
            index = start + gen.prompt_index
            target = out_root / f"{index:04d}_{_slug(gen.prompt)}" / f"sample_{gen.sample_index:02d}"
            write_generation(gen, target)
            log.info("%s: %d object(s), %d problem(s) -> %s", gen.prompt, len(gen.objects),
                     len(gen.parsed.problems), target)
    print(f"wrote {len(prompts) * args.num_chains} sample(s) under {out_root}")
    return 0


def cmd_convert(args) -> int:
    from .model.loading import convert_checkpoint

    out = convert_checkpoint(args.src, args.dst, dtype=args.dtype)
    print(f"wrote transformers-layout checkpoint to {out}")
    return 0


def cmd_shapes_build_tokenizer(args) -> int:
    from .worlds.shapes.recipe import build_tokenizers

    report = build_tokenizers(args.out, seed=args.seed, vq_steps=args.vq_steps, vq_full_steps=args.vq_full_steps)
    print(json.dumps(report, indent=2))
    return 0


def cmd_shapes_export_sft(args) -> int:
    from .worlds.shapes.recipe import export_sft_records

    path = export_sft_records(args.out, args.examples, seed=args.seed, split=args.split)
    print(f"wrote {args.examples} records to {path}")
    return 0


def cmd_shapes_pretrain(args) -> int:
    from .train.sft import SFTConfig
    from .worlds.shapes.recipe import pretrain

    mixed = args.mixed_precision
    if mixed == "auto":  # bf16 autocast only where the hardware does bf16 natively (else it is slower)
        from .train.distributed import native_bf16

        mixed = "bf16" if native_bf16(args.device) else "no"
    sft = SFTConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                    max_seconds=args.minutes * 60 if args.minutes else None, seed=args.seed,
                    mixed_precision=mixed)
    sizes = {key: value for key, value in (("hidden_size", args.hidden_size), ("num_layers", args.layers),
                                           ("num_heads", args.heads), ("num_kv_heads", args.heads))
             if value is not None}
    if args.hidden_size is not None:
        sizes["intermediate_size"] = 4 * args.hidden_size
    try:
        report = pretrain(args.tokenizers, args.out, examples=args.examples, seed=args.seed, sft=sft,
                          model_sizes=sizes, device=args.device)
    except FileNotFoundError as exc:  # no tokenizers where --tokenizers points
        raise CliError(str(exc)) from None
    print(json.dumps({k: v for k, v in report.items() if k != "sft"} | {"sft_seconds": report["sft"]["seconds"]}))
    return 0


def cmd_shapes_eval(args) -> int:
    from .worlds.shapes.evaluate import ShapesEvalConfig, evaluate, write_report

    bundle = load_model(args.model, args.dtype, args.device)
    config = ShapesEvalConfig(split=args.split, num_prompts=args.prompts, samples_per_prompt=args.samples,
                              seed=args.seed, cfg_weight=args.cfg, batch_size=args.batch_size)
    summary, records, generations = evaluate(bundle, config)
    out = write_report(args.out, summary, records, generations)
    print(f"{args.split} accuracy (all constraints hold): {summary['accuracy']:.3f} over {summary['samples']} samples")
    print(f"chain validity: {summary['chain_valid_rate']:.3f}; reward means: "
          + ", ".join(f"{k} {v:.3f}" for k, v in summary["reward_means"].items() if v is not None))
    print(f"summary, samples and grid written to {out}")
    return 0


def cmd_train_grpo(args) -> int:
    from .train.run import run_grpo

    summary = run_grpo(args.config, model_override=args.model, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:  # under `accelerate launch`: the main process only
        print(json.dumps(summary, indent=2))
    return 0


def cmd_train_sft(args) -> int:
    from .train.run import run_sft

    print(json.dumps(run_sft(args.config, model_override=args.model), indent=2))
    return 0


def cmd_reward(args) -> int:
    from .config import load_config
    from .rewards.config import RewardSettings, build_reward
    from .rewards.folder import FolderError, score_folder, summary_table

    if args.judge:
        settings = load_config(args.judge, RewardSettings)
        base_dir = Path(args.judge).parent
    else:
        settings, base_dir = RewardSettings(), Path.cwd()
    if args.base_url:
        settings.judge.openai.base_urls = list(args.base_url)
    if args.judge_model:
        settings.judge.openai.model = args.judge_model
    if settings.uses("shapes"):
        raise CliError("the shapes world's exact rewards need prompt meanings; `gotr1 reward` scores text prompts "
                       "(use source: judge, or `gotr1 shapes eval` for the shapes world)")
    try:
        pipeline = build_reward(settings, base_dir, max_missing_fraction=1.0)
        summary = score_folder(args.dir, pipeline, batch_size=args.batch_size, force=args.force,
                               progress=lambda done, total: log.info("scored %d/%d samples", done, total))
    except (ValueError, FolderError) as exc:
        raise CliError(str(exc)) from None
    print(summary_table(summary))
    run = summary["this_run"]
    if run["samples"] and run["missing_total"] == run["samples"]:
        print(f"gotr1: error: none of the {run['samples']} image(s) scored in this run got a reward; "
              "see the reasons in reward.json (is the judge server up?)", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gotr1", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="prompt -> reasoning chain with boxes -> image(s)")
    gen.add_argument("--model", default=None,
                     help="checkpoint directory or hub id (transformers or original GoT-R1 layout); "
                          f"'{BUILTIN_TINY_RANDOM}' for a tiny random model")
    gen.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    gen.add_argument("--prompts-file", help="text file, one prompt per line")
    gen.add_argument("--num-chains", type=int, default=1, help="reasoning chains per prompt")
    gen.add_argument("--num-images", type=int, default=1, help="images per reasoning chain")
    gen.add_argument("--cfg", type=float, default=None,
                     help="classifier-free guidance weight (<= 1 disables); default: the checkpoint's "
                          "generation_config.guidance_scale, else 5")
    gen.add_argument("--text-temperature", type=float, default=1.0)
    gen.add_argument("--image-temperature", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, default=None, help="top-k for reasoning tokens")
    gen.add_argument("--top-p", type=float, default=None, help="nucleus for reasoning tokens")
    gen.add_argument("--max-reasoning-tokens", type=int, default=600)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--batch-size", type=int, default=4, help="prompts sampled together")
    gen.add_argument("--dtype", default=None, help="float32 / bfloat16 / float16 (default: bf16 on GPU, fp32 on CPU)")
    gen.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    gen.add_argument("--out", default="outputs/generate", help="output directory")
    gen.set_defaults(func=cmd_generate)

    conv = sub.add_parser("convert", help="write a checkpoint (e.g. original GoT-R1 layout) in the transformers layout")
    conv.add_argument("src", help="source checkpoint directory or hub id")
    conv.add_argument("dst", help="output directory")
    conv.add_argument("--dtype", default=None, help="dtype to save (default float32)")
    conv.set_defaults(func=cmd_convert)

    rew = sub.add_parser("reward", help="score a folder written by `gotr1 generate` with the judge rewards")
    rew.add_argument("dir", help="folder of samples (chain.json + images)")
    rew.add_argument("--judge", default=None, help="reward/judge YAML (configs/judge_vllm.yaml); "
                                                   "default: every component judged by a vLLM server on "
                                                   "127.0.0.1:8000")
    rew.add_argument("--base-url", action="append", help="judge server URL, e.g. http://host:8000/v1 (repeatable)")
    rew.add_argument("--judge-model", default=None, help="model name the judge server serves")
    rew.add_argument("--batch-size", type=int, default=32, help="samples scored (and saved) together")
    rew.add_argument("--force", action="store_true", help="re-score samples that already have reward.json")
    rew.set_defaults(func=cmd_reward)

    train = sub.add_parser("train", help="training recipes")
    train_sub = train.add_subparsers(dest="train_command", required=True)
    grpo = train_sub.add_parser("grpo", help="GRPO from a YAML recipe (configs/*.yaml)")
    grpo.add_argument("--config", required=True)
    grpo.add_argument("--model", default=None, help="override the recipe's model")
    grpo.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of output_dir")
    grpo.set_defaults(func=cmd_train_grpo)
    sft = train_sub.add_parser("sft", help="teacher-forced SFT on a jsonl of (prompt, chain, image)")
    sft.add_argument("--config", required=True)
    sft.add_argument("--model", default=None, help="override the recipe's model")
    sft.set_defaults(func=cmd_train_sft)

    shapes = sub.add_parser("shapes", help="the built-in shapes world: recipe and evaluation")
    shapes_sub = shapes.add_subparsers(dest="shapes_command", required=True)
    tok = shapes_sub.add_parser("build-tokenizer", help="train the VQ image tokenizer and the text tokenizer")
    tok.add_argument("--out", default="outputs/shapes/tokenizers")
    tok.add_argument("--vq-steps", type=int, default=5000, help="VQ steps on 32 px crops")
    tok.add_argument("--vq-full-steps", type=int, default=1500, help="then VQ steps on full images")
    tok.add_argument("--seed", type=int, default=0)
    tok.set_defaults(func=cmd_shapes_build_tokenizer)
    pre = shapes_sub.add_parser("pretrain", help="SFT a small Janus on rendered (prompt, chain, image) triples")
    pre.add_argument("--tokenizers", default="outputs/shapes/tokenizers",
                     help="output of `gotr1 shapes build-tokenizer`, or a shapes checkpoint whose VQ and "
                          "tokenizer to reuse (e.g. the shipped model's directory)")
    pre.add_argument("--out", default="outputs/shapes/model")
    pre.add_argument("--examples", type=int, default=40000)
    pre.add_argument("--steps", type=int, default=6000)
    pre.add_argument("--batch-size", type=int, default=32)
    pre.add_argument("--lr", type=float, default=1.5e-3)
    pre.add_argument("--minutes", type=float, default=24.0,
                     help="stop SFT after this many minutes (the cosine decay follows this budget)")
    pre.add_argument("--mixed-precision", default="auto", choices=("auto", "no", "bf16"),
                     help="bf16: bfloat16 autocast (about 1.6x faster on CPUs with AVX512-BF16); "
                          "auto: bf16 where the CPU or GPU supports it natively")
    pre.add_argument("--hidden-size", type=int, default=None, help="LM width (default 128; MLP 4x)")
    pre.add_argument("--layers", type=int, default=None, help="LM layers (default 4)")
    pre.add_argument("--heads", type=int, default=None, help="attention heads (default 4)")
    pre.add_argument("--device", default="cpu", help="where SFT runs, e.g. cuda")
    pre.add_argument("--seed", type=int, default=0)
    pre.set_defaults(func=cmd_shapes_pretrain)
    exp = shapes_sub.add_parser("export-sft", help="write rendered (prompt, chain, image) records for `gotr1 train sft`")
    exp.add_argument("--out", default="outputs/shapes/sft_data")
    exp.add_argument("--examples", type=int, default=2000)
    exp.add_argument("--split", default="train", choices=("train", "val", "heldout"))
    exp.add_argument("--seed", type=int, default=0)
    exp.set_defaults(func=cmd_shapes_export_sft)
    ev = shapes_sub.add_parser("eval", help="held-out compositional accuracy, judged from pixels")
    ev.add_argument("--model", default=None, help="checkpoint (default: the shipped shapes model)")
    ev.add_argument("--split", default="heldout", choices=("train", "val", "heldout"))
    ev.add_argument("--prompts", type=int, default=200)
    ev.add_argument("--samples", type=int, default=1, help="samples per prompt")
    ev.add_argument("--cfg", type=float, default=3.0)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--dtype", default=None)
    ev.add_argument("--device", default=None)
    ev.add_argument("--out", default="outputs/shapes/eval")
    ev.set_defaults(func=cmd_shapes_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from .config import ConfigError
    from .model.loading import CheckpointError
    from .rewards.scoring import RewardsUnavailable

    try:
        return args.func(args)
    except (CliError, CheckpointError, ConfigError, RewardsUnavailable) as exc:
        print(f"gotr1: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gotr1: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
