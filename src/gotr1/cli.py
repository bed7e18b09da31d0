"""`gotr1` command line: parsing and dispatch. Each command's body lives with its subject: `generate.py`, `edit.py`,
`precompile.py`, `serving/commands.py`, `eval/commands.py`, `train/commands.py`, `rewards/commands.py` and the
shapes world's `worlds/shapes/commands.py`; the argument types they share are in `arguments.py`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .arguments import DTYPES, CliError

log = logging.getLogger("gotr1")
DESCRIPTION = "GoT-R1: a reasoning chain with boxes, then the image: generate, serve, train, evaluate."


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one line, like every other gotr1 error (not the usage block)."""

    def error(self, message: str):
        self.exit(2, f"gotr1: error: {self.prog}: {message} (see {self.prog} --help)\n")


def cmd_convert(args) -> int:
    from .model.loading import convert_checkpoint
    from .outputs import prepare_output

    dst = Path(args.dst)
    # An earlier converted checkpoint may be replaced with --overwrite; never the source, nor a user's files.
    output = prepare_output(dst, owned=("*",), what="gotr1 convert", overwrite=args.overwrite, inputs=[args.src])
    with output:
        convert_checkpoint(args.src, output.work, dtype=args.dtype)
    print(f"wrote transformers-layout checkpoint to {dst}")
    return 0


def add_convert_command(sub) -> None:
    """`gotr1 convert`: a checkpoint in either layout -> the transformers layout."""
    conv = sub.add_parser("convert", help="write a checkpoint (e.g. original GoT-R1 layout) in the transformers layout")
    conv.add_argument("src", help="source checkpoint directory or hub id")
    conv.add_argument("dst", help="output directory")
    conv.add_argument("--dtype", default=None, choices=DTYPES, help="dtype to save (default float32)")
    conv.add_argument("--overwrite", action="store_true", help="replace an earlier checkpoint in dst")
    conv.set_defaults(func=cmd_convert)


def build_parser() -> argparse.ArgumentParser:
    from .edit import add_edit_command
    from .eval.commands import add_eval_commands
    from .generate import add_generate_command
    from .precompile import add_compile_command
    from .rewards.commands import add_reward_command
    from .serving.commands import add_serving_commands
    from .train.commands import add_train_commands
    from .worlds.shapes.commands import add_shapes_commands

    parser = _Parser(prog="gotr1", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        add_generate_command,
        add_edit_command,
        add_serving_commands,
        add_convert_command,
        add_compile_command,
        add_reward_command,
        add_train_commands,
        add_shapes_commands,
        add_eval_commands,
    ):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # gotr1's own progress at INFO; other libraries' (HTTP clients log every request) only from WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gotr1").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from .config import ConfigError
    from .eval.benchmark import BenchmarkError, IncompleteRun
    from .eval.records import ScorerError
    from .model.loading import CheckpointError
    from .outputs import OutputConflict
    from .rewards.scoring import RewardsUnavailable

    try:
        return args.func(args)
    except IncompleteRun as exc:  # scored, results written: show them, then say what is missing (exit 1)
        from .eval.scoring import summary_table

        print(summary_table(exc.results))
        print(f"gotr1: error: {exc}", file=sys.stderr)
        return 1
    except (
        CliError,
        CheckpointError,
        ConfigError,
        RewardsUnavailable,
        BenchmarkError,
        ScorerError,
        OutputConflict,
    ) as exc:
        print(f"gotr1: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gotr1: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
