"""`gotr1 generate`: prompts -> reasoning chains -> images, one sample folder each."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from .arguments import (
    DTYPES,
    CliError,
    add_model_argument,
    add_sampling_arguments,
    at_least,
    check_seed_span,
    printable,
    resolve_device,
    sampling_from_args,
    seed_type,
)
from .samples import write_sample_folder

log = logging.getLogger("gotr1")


def _slug(text: str, limit: int = 60) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    return slug[:limit] or "prompt"


DECODE_BATCH_SIZE = 8  # images per VQ decode
GENERATE_OWNS = ("[0-9][0-9][0-9][0-9]_*", "generate.json")  # what `gotr1 generate` writes in its --out


def read_prompts_file(path: Path) -> list[str]:
    if not path.is_file():
        raise CliError(f"{path}: no such prompts file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # an editor's byte-order mark is not part of prompt 1
    except UnicodeDecodeError:
        raise CliError(f"{path}: not a text file (one prompt per line, UTF-8)") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise CliError(f"{path}: the prompts file holds no prompts (one prompt per line)")
    return prompts


def cmd_generate(args) -> int:
    from .outputs import new_run_folder, prepare_output

    prompts = [p.strip() for p in args.prompt or []]
    if any(not p for p in prompts):
        raise CliError("--prompt: an empty prompt")
    if args.prompts_file:
        prompts += read_prompts_file(Path(args.prompts_file))
    if not prompts:
        raise CliError("give at least one --prompt or a --prompts-file")
    check_seed_span(args.seed, len(prompts))
    device = resolve_device(args.device)
    out_root = Path(args.out) if args.out else new_run_folder("outputs/generate")
    output = prepare_output(
        out_root,
        owned=GENERATE_OWNS,
        what="gotr1 generate",
        overwrite=args.overwrite,
        inputs=[args.model, args.prompts_file],
    )
    with output:
        written = _generate_into(args, prompts, device, output.work)
    print(f"wrote {written} sample(s) under {out_root}")
    return 0


def _generate_into(args, prompts: list[str], device, out_root: Path) -> int:
    """Sample every prompt into ``out_root`` (the --out folder, or the staging folder of a replacement)."""
    from .model.sampler import TwoPhaseSampler
    from .models import load_model  # looked up when called (tests replace it)

    bundle = load_model(args.model, args.dtype, device)
    sampling = sampling_from_args(args).for_model(bundle)  # the settings as they are used (generate.json)
    check_prompt_lengths(bundle, prompts, sampling.max_reasoning_tokens)
    manifest = {
        "model": args.model or "built-in",
        "model_source": bundle.source,
        **bundle.provenance(),
        "seed_policy": "prompt i (from 0, in order) is sampled with seed + i; its chains and images draw from it",
        "prompts": prompts,
        "sampling": {
            "num_generations": args.num_chains,
            "images_per_chain": args.num_images,
            **sampling.sample_settings(),
            "seed": args.seed,
            "decode_images": True,
            "decode_batch_size": DECODE_BATCH_SIZE,
            "compile": sampling.compile,
        },
    }
    (out_root / "generate.json").write_text(json.dumps(manifest, indent=2) + "\n")
    sampler = TwoPhaseSampler(bundle)
    written = 0
    for start in range(0, len(prompts), args.batch_size):
        batch = prompts[start : start + args.batch_size]
        seeds = [args.seed + start + i for i in range(len(batch))]
        generations = sampler.generate(
            batch,
            sampling,
            num_generations=args.num_chains,
            images_per_chain=args.num_images,
            seeds=seeds,
            decode_batch_size=DECODE_BATCH_SIZE,
            show_progress=True,
        )
        for gen in generations:
            index = start + gen.prompt_index
            target = out_root / f"{index:04d}_{_slug(gen.prompt)}" / f"sample_{gen.sample_index:02d}"
            write_sample_folder(gen, target)
            written += 1
            log.info(
                "%s: %d object(s), %d problem(s) -> %s",
                printable(gen.prompt),
                len(gen.objects),
                len(gen.parsed.problems),
                target,
            )
    return written


def check_prompt_lengths(bundle, prompts: list[str], max_reasoning_tokens: int) -> None:
    """Every prompt fits the model's context beside the reasoning cap and the image (a one-line error)."""
    from .model.loading import PromptTooLong

    for prompt in prompts:
        try:
            bundle.check_prompt(prompt, max_reasoning_tokens)
        except PromptTooLong as exc:
            raise CliError(f"{exc}; --max-reasoning-tokens is {max_reasoning_tokens}") from None


def add_generate_command(sub) -> None:
    """Add its commands to the `gotr1` subcommands."""
    gen = sub.add_parser("generate", help="prompt -> reasoning chain with boxes -> image(s)")
    add_model_argument(gen)
    gen.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    gen.add_argument("--prompts-file", help="text file, one prompt per line")
    gen.add_argument("--num-chains", type=at_least(1), default=1, help="reasoning chains per prompt")
    gen.add_argument("--num-images", type=at_least(1), default=1, help="images per reasoning chain")
    add_sampling_arguments(gen)
    gen.add_argument("--seed", type=seed_type, default=0)
    gen.add_argument("--batch-size", type=at_least(1), default=4, help="prompts sampled together")
    gen.add_argument(
        "--dtype", default=None, choices=DTYPES, help="float32 / bfloat16 / float16 (default: bf16 on GPU, fp32 on CPU)"
    )
    gen.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    gen.add_argument(
        "--out",
        default=None,
        help="output folder (default: a new outputs/generate/<time>); an "
        "existing one must be empty, or hold an earlier generate output and --overwrite",
    )
    gen.add_argument("--overwrite", action="store_true", help="replace an earlier gotr1 generate output in --out")
    gen.set_defaults(func=cmd_generate)
