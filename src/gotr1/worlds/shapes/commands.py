"""`gotr1 shapes`: the shapes world's recipe (tokenizers, SFT export, pretraining) and its eval alias."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ...arguments import CliError, at_least, positive, resolve_device, seed_type
from ...eval.commands import add_eval_sampling_args

log = logging.getLogger("gotr1")


def cmd_shapes_build_tokenizer(args) -> int:
    from ...outputs import prepare_output
    from ...worlds.shapes.recipe import build_tokenizers

    output = prepare_output(
        args.out, owned=("tokenizer", "vq", "tokenizers.json"), what="tokenizer build", overwrite=args.overwrite
    )
    with output:
        report = build_tokenizers(output.work, seed=args.seed, vq_steps=args.vq_steps, vq_full_steps=args.vq_full_steps)
    print(json.dumps(report, indent=2))
    return 0


def cmd_shapes_export_sft(args) -> int:
    from ...outputs import prepare_output
    from ...worlds.shapes.recipe import export_sft_records

    output = prepare_output(args.out, owned=("images", "records.jsonl"), what="SFT export", overwrite=args.overwrite)
    with output:
        export_sft_records(output.work, args.examples, seed=args.seed, split=args.split)
    path = Path(args.out) / "records.jsonl"
    print(f"wrote {args.examples} records to {path}")
    return 0


def check_model_sizes(args) -> None:
    """--hidden-size splits evenly over --heads (each head's width even, for the rotary embedding)."""
    from ...worlds.shapes.recipe import SHAPES_MODEL

    hidden = args.hidden_size or SHAPES_MODEL["hidden_size"]
    heads = args.heads or SHAPES_MODEL["num_heads"]
    if hidden % heads or (hidden // heads) % 2:
        raise CliError(
            f"--hidden-size {hidden} with --heads {heads}: the width must split into {heads} heads of an even "
            f"width (a multiple of {2 * heads}, e.g. {2 * heads * max(1, round(hidden / (2 * heads)))})"
        )


def cmd_shapes_pretrain(args) -> int:
    from ...outputs import prepare_output
    from ...train.sft import SFTConfig
    from ...worlds.shapes.recipe import pretrain

    check_model_sizes(args)
    device = resolve_device(args.device)
    # What pretrain writes: a checkpoint (config, weights, tokenizer files) and its reports.
    output = prepare_output(
        args.out, owned=("*",), what="shapes pretrain", overwrite=args.overwrite, inputs=[args.tokenizers]
    )

    mixed = args.mixed_precision
    if mixed == "auto":  # bf16 autocast only where the hardware does bf16 natively (else it is slower)
        from ...train.distributed import native_bf16

        mixed = "bf16" if native_bf16(device) else "no"
    sft = SFTConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        max_minutes=args.minutes or None,
        seed=args.seed,
        mixed_precision=mixed,
    )
    sizes = {
        key: value
        for key, value in (
            ("hidden_size", args.hidden_size),
            ("num_layers", args.layers),
            ("num_heads", args.heads),
            ("num_kv_heads", args.heads),
        )
        if value is not None
    }
    if args.hidden_size is not None:
        sizes["intermediate_size"] = 4 * args.hidden_size
    try:
        with output:
            report = pretrain(
                args.tokenizers,
                output.work,
                examples=args.examples,
                seed=args.seed,
                sft=sft,
                model_sizes=sizes,
                device=device,
            )
    except FileNotFoundError as exc:  # no tokenizers where --tokenizers points
        raise CliError(str(exc)) from None
    print(json.dumps({k: v for k, v in report.items() if k != "sft"} | {"sft_seconds": report["sft"]["seconds"]}))
    return 0


def add_shapes_commands(sub) -> None:
    """Add its commands to the `gotr1` subcommands."""
    shapes = sub.add_parser("shapes", help="the built-in shapes world: recipe and evaluation")
    shapes_sub = shapes.add_subparsers(dest="shapes_command", required=True)
    tok = shapes_sub.add_parser("build-tokenizer", help="train the VQ image tokenizer and the text tokenizer")
    tok.add_argument("--out", default="outputs/shapes/tokenizers")
    tok.add_argument("--vq-steps", type=at_least(1), default=5000, help="VQ steps on 32 px crops")
    tok.add_argument("--vq-full-steps", type=at_least(0), default=1500, help="then VQ steps on full images")
    tok.add_argument("--seed", type=seed_type, default=0)
    tok.add_argument("--overwrite", action="store_true", help="replace an earlier output in --out")
    tok.set_defaults(func=cmd_shapes_build_tokenizer)
    pre = shapes_sub.add_parser("pretrain", help="SFT a small Janus on rendered (prompt, chain, image) triples")
    pre.add_argument(
        "--tokenizers",
        default="outputs/shapes/tokenizers",
        help="output of `gotr1 shapes build-tokenizer`, or a shapes checkpoint whose VQ and "
        "tokenizer to reuse (e.g. the shipped model's directory)",
    )
    pre.add_argument("--out", default="outputs/shapes/model")
    pre.add_argument("--examples", type=at_least(1), default=40000)
    pre.add_argument("--steps", type=at_least(1), default=6000)
    pre.add_argument("--batch-size", type=at_least(1), default=32)
    pre.add_argument("--lr", type=positive, default=1.5e-3)
    pre.add_argument(
        "--minutes",
        type=at_least(0.0, float),
        default=24.0,
        help="stop SFT after this many minutes (the cosine decay follows this budget)",
    )
    pre.add_argument(
        "--mixed-precision",
        default="auto",
        choices=("auto", "no", "bf16"),
        help="bf16: bfloat16 autocast (about 1.6x faster on CPUs with AVX512-BF16); "
        "auto: bf16 where the CPU or GPU supports it natively",
    )
    pre.add_argument("--hidden-size", type=at_least(1), default=None, help="LM width (default 128; MLP 4x)")
    pre.add_argument("--layers", type=at_least(1), default=None, help="LM layers (default 4)")
    pre.add_argument("--heads", type=at_least(1), default=None, help="attention heads (default 4)")
    pre.add_argument("--device", default="cpu", help="where SFT runs, e.g. cuda")
    pre.add_argument("--seed", type=seed_type, default=0)
    pre.add_argument("--overwrite", action="store_true", help="replace an earlier output in --out")
    pre.set_defaults(func=cmd_shapes_pretrain)
    exp = shapes_sub.add_parser(
        "export-sft", help="write rendered (prompt, chain, image) records for `gotr1 train sft`"
    )
    exp.add_argument("--out", default="configs/shapes_sft_data", help="where configs/shapes_sft.yaml reads its data")
    exp.add_argument("--examples", type=at_least(1), default=2000)
    exp.add_argument("--split", default="train", choices=("train", "val", "heldout"))
    exp.add_argument("--seed", type=seed_type, default=0)
    exp.add_argument("--overwrite", action="store_true", help="replace an earlier output in --out")
    exp.set_defaults(func=cmd_shapes_export_sft)
    ev = shapes_sub.add_parser("eval", help="alias of `gotr1 eval shapes`")
    add_eval_sampling_args(ev, "shapes")
