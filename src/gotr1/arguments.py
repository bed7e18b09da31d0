"""Command-line argument types and checks every gotr1 command shares: numbers in range, devices, seeds,
the model and decode-path flags, and the one-line error they raise."""

from __future__ import annotations

import argparse
import math
import re

from .models import BUILTIN_TINY_RANDOM


class CliError(Exception):
    """A user-facing error printed as one line."""


def _number(text: str, kind=float):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def at_least(low, kind=int, *, high=None):
    """An argparse type: a number >= low (and <= high when given)."""

    def parse(text: str):
        value = _number(text, kind)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {text}")
        return value

    parse.__name__ = "integer" if kind is int else "number"
    return parse


def probability(text: str) -> float:
    """An argparse type: a number in (0, 1]."""
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def positive(text: str) -> float:
    """An argparse type: a number > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


# model/sampler.py's bounds: seeds are int64 keys; a CFG weight or temperature beyond 100 only overflows.
MAX_SEED = 2**63 - 1


MAX_CFG_WEIGHT = 100.0


MAX_TEMPERATURE = 100.0


seed_type = at_least(0, high=MAX_SEED)


port_type = at_least(0, high=65535)


cfg_type = at_least(0.0, float, high=MAX_CFG_WEIGHT)


temperature_type = at_least(0.0, float, high=MAX_TEMPERATURE)


def csv_items(text: str) -> str:
    """An argparse type: a comma-separated list naming at least one item (kept as text; `csv_list` splits it)."""
    if not csv_list(text):
        raise argparse.ArgumentTypeError(f"names nothing, got {text!r} (leave the flag out for the default)")
    return text


def check_seed_span(seed: int, count: int, flag: str = "--seed") -> None:
    """Seeds seed .. seed + count - 1 must all fit the sampler's int64 keys."""
    if count > 0 and seed + count - 1 > MAX_SEED:
        raise CliError(
            f"{flag} {seed}: {count} seeds from it (one per prompt or image) pass {MAX_SEED}; use a smaller {flag}"
        )


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Text as it may go into a log line: control characters (ANSI escapes included) shown escaped."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def resolve_device(device: str | None) -> str | None:
    """A device the machine has, checked before a model loads (a one-line CliError otherwise)."""
    if device is None:
        return None
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise CliError(f"--device {device!r}: not a device (cpu, cuda, cuda:1, mps, ...)") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"--device {device}: this machine has no CUDA device (torch sees none); use --device cpu")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise CliError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise CliError(f"--device {device}: MPS is not available on this machine")
    return device


def csv_list(text: str | None) -> list[str] | None:
    return None if text is None else [item.strip() for item in text.split(",") if item.strip()]


def require_module(module: str, extra: str) -> None:
    """A one-line error naming the extra to install when an optional dependency is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise CliError(f"this command needs {module}: pip install 'gotr1[{extra}]'")


DTYPES = ("float32", "bfloat16", "float16")


# model/static_decode.py's COMPILE_MODES
COMPILE_CHOICES = ("none", "static", "default", "reduce-overhead", "frozen")


def add_compile_argument(parser) -> None:
    parser.add_argument(
        "--compile",
        default="none",
        choices=COMPILE_CHOICES,
        help="decode path: none (eager), static (fixed shapes), default / reduce-overhead (torch.compile, "
        "CUDA graphs with reduce-overhead), frozen (torch.compile with the weights as constants: prepacked "
        "on the CPU, a second copy of them in memory); see docs/benchmarks.md for which is faster where",
    )


def add_sampling_arguments(parser, *, reasoning_top: bool = True) -> None:
    """The sampler's flags, one per SamplingConfig field, the same for every command that samples
    (`sampling_from_args` reads them back); reasoning_top: also --top-k / --top-p for reasoning tokens."""
    parser.add_argument(
        "--cfg",
        type=cfg_type,
        default=None,
        help="classifier-free guidance weight (<= 1 disables); default: the checkpoint's "
        "generation_config.guidance_scale, else 5",
    )
    parser.add_argument("--text-temperature", type=temperature_type, default=1.0)
    parser.add_argument("--image-temperature", type=temperature_type, default=1.0)
    if reasoning_top:
        parser.add_argument("--top-k", type=at_least(1), default=None, help="top-k for reasoning tokens")
        parser.add_argument("--top-p", type=probability, default=None, help="nucleus for reasoning tokens")
    parser.add_argument("--max-reasoning-tokens", type=at_least(0), default=600)
    add_compile_argument(parser)


def sampling_from_args(args):
    """The SamplingConfig the flags of `add_sampling_arguments` describe."""
    from .model.sampler import SamplingConfig

    return SamplingConfig(
        cfg_weight=args.cfg,
        text_temperature=args.text_temperature,
        image_temperature=args.image_temperature,
        text_top_k=getattr(args, "top_k", None),
        text_top_p=getattr(args, "top_p", None),
        max_reasoning_tokens=args.max_reasoning_tokens,
        compile=args.compile,
    )


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    from .models import DEFAULT_MODEL_NAME

    parser.add_argument(
        "--model",
        default=None,
        help=f"a built-in model ({DEFAULT_MODEL_NAME}, the default: the shapes world's GoT-R1 after GRPO; "
        "shapes-sft: before GRPO), a checkpoint directory (transformers or original GoT-R1 layout), "
        f"a hub id, or '{BUILTIN_TINY_RANDOM}' for a tiny random model",
    )
