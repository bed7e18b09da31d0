"""`gotr1 train grpo|sft`: the training recipes from YAML."""

from __future__ import annotations

import json
import logging
import os

from ..arguments import CliError

log = logging.getLogger("gotr1")


def cmd_train_grpo(args) -> int:
    from ..train.run import run_grpo

    if args.resume and args.overwrite:
        raise CliError("--resume continues the run in output_dir, --overwrite replaces it: give one")
    if args.allow_change and not args.resume:
        raise CliError("--allow-change applies to --resume (a new run takes the recipe as it is)")
    summary = run_grpo(
        args.config,
        model_override=args.model,
        resume=args.resume,
        overwrite=args.overwrite,
        allow_change=args.allow_change or (),
        overrides=args.overrides,
    )
    if int(os.environ.get("RANK", "0")) == 0:  # under `accelerate launch`: the main process only
        print(json.dumps(summary, indent=2))
    return 0


def cmd_train_sft(args) -> int:
    from ..train.run import run_sft

    summary = run_sft(args.config, model_override=args.model, overwrite=args.overwrite, overrides=args.overrides)
    print(json.dumps(summary, indent=2))
    return 0


OVERRIDES_HELP = "recipe settings that replace the file's, e.g. {example} (dotted keys, YAML values: null, [a, b])"


def add_train_commands(sub) -> None:
    """Add its commands to the `gotr1` subcommands."""
    train = sub.add_parser("train", help="training recipes")
    train_sub = train.add_subparsers(dest="train_command", required=True)
    grpo = train_sub.add_parser("grpo", help="GRPO from a YAML recipe (configs/*.yaml)")
    grpo.add_argument("--config", required=True)
    grpo.add_argument("--model", default=None, help="override the recipe's model")
    grpo.add_argument("--resume", action="store_true", help="continue from the latest good checkpoint of output_dir")
    grpo.add_argument("--overwrite", action="store_true", help="replace an earlier run in output_dir")
    grpo.add_argument(
        "--allow-change",
        action="append",
        metavar="KEY",
        help="with --resume: continue although the recipe's KEY (e.g. grpo.learning_rate) differs from the "
        "run's; recorded in config.json with the step (repeatable)",
    )
    grpo.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help=OVERRIDES_HELP.format(example="grpo.steps=20 grpo.lora_r=null log_with=[tensorboard]"),
    )
    grpo.set_defaults(func=cmd_train_grpo)
    sft = train_sub.add_parser("sft", help="teacher-forced SFT on a jsonl of (prompt, chain, image)")
    sft.add_argument("--config", required=True)
    sft.add_argument("--model", default=None, help="override the recipe's model")
    sft.add_argument("--overwrite", action="store_true", help="replace an earlier run in output_dir")
    sft.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP.format(example="sft.steps=200"))
    sft.set_defaults(func=cmd_train_sft)
