"""`gotr1 compile`: pay the compiled decode path's compilation ahead of time, once per machine.

It samples one prompt with each `--images` count on the chosen compiled path, so every step the sampler will
meet at those shapes is compiled into the compile cache (`model/compile_cache.py`, under `GOTR1_CACHE`); a
later `gotr1 generate`, `eval` or `serve` of the same model, dtype, device and torch version loads it instead of
compiling. `--clear` empties the cache of every model.
"""

from __future__ import annotations

import logging
import shutil
import time

from .arguments import (
    DTYPES,
    CliError,
    add_model_argument,
    add_sampling_arguments,
    resolve_device,
    sampling_from_args,
)

log = logging.getLogger("gotr1")


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CliError(f"--images {text}: give image counts separated by commas, e.g. 1,4,16") from None
    if not counts or min(counts) < 1:
        raise CliError(f"--images {text}: give image counts of at least 1, e.g. 1,4,16")
    return counts


def cmd_compile(args) -> int:
    from .model.compile_cache import WARM_PROMPT, cache_root

    if args.clear:
        folder = cache_root() / "compile"
        shutil.rmtree(folder, ignore_errors=True)
        print(f"cleared {folder}")
        return 0
    if args.compile in ("none", "static"):
        raise CliError(f"--compile {args.compile} compiles nothing: give default, reduce-overhead or frozen")
    counts = _counts(args.images)
    from .model.sampler import TwoPhaseSampler
    from .models import load_model

    bundle = load_model(args.model, args.dtype, resolve_device(args.device))
    sampling = sampling_from_args(args).for_model(bundle)
    prompt = args.prompt or WARM_PROMPT
    bundle.check_prompt(prompt, sampling.max_reasoning_tokens)
    sampler = TwoPhaseSampler(bundle)
    for count in counts:
        start = time.perf_counter()
        sampler.generate([prompt], sampling, num_generations=count, seed=0, decode_images=False)
        print(f"{count} image(s) of one prompt: {time.perf_counter() - start:.1f} s, compiled or loaded")
    cache = sampler.static_decoder(sampling.compile).cache
    print(f"compile cache: {cache.folder} ({len(cache.shapes)} compiled step shapes)")
    return 0


def add_compile_command(sub) -> None:
    """Add `gotr1 compile` to the `gotr1` subcommands."""
    comp = sub.add_parser("compile", help="compile the decode path of a model ahead of time (the compile cache)")
    add_model_argument(comp)
    comp.add_argument("--images", default="1,4,16", help="image counts of one prompt to compile for (default 1,4,16)")
    comp.add_argument("--prompt", default=None, help="the prompt sampled (its length sets the prompt's shape)")
    add_sampling_arguments(comp)
    comp.set_defaults(compile="default")
    comp.add_argument("--dtype", default=None, choices=DTYPES, help="float32 / bfloat16 / float16")
    comp.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    comp.add_argument("--clear", action="store_true", help="remove every model's compiled steps (GOTR1_CACHE)")
    comp.set_defaults(func=cmd_compile)
