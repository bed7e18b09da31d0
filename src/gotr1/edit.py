"""`gotr1 edit`: change what an edit names in a sample's image, keep every other image token.

The source is a `gotr1 generate` sample folder (its record keeps the image tokens: no re-encoding loss) or an
image file (encoded by the model's VQ; give --source-prompt and, for plan and prompt edits, --source-chain).
The edit is an edited chain (--chain FILE), a new prompt (--prompt), or a mask image (--mask PNG, transparent
pixels may change). --redraw samples the whole image from the new plan and keeps only the source's pixels
outside the mask. The output folder holds a sample folder per edited image, `mask.png` (the re-sampled token
cells over the source), `source.png` and `edit.json` (what was edited, from where, with which settings).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .arguments import (
    DTYPES,
    CliError,
    add_model_argument,
    add_sampling_arguments,
    at_least,
    resolve_device,
    sampling_from_args,
    seed_type,
)

log = logging.getLogger("gotr1")

EDIT_OWNS = ("sample_[0-9][0-9]", "mask.png", "source.png", "edit.json")  # what `gotr1 edit` writes in its --out


def _read_text(path: str, flag: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8-sig").strip()
    except FileNotFoundError:
        raise CliError(f"{flag} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{flag} {path}: unreadable ({exc})") from None
    if not text:
        raise CliError(f"{flag} {path}: the file is empty")
    return text


def _open_image(path: str, flag: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except FileNotFoundError:
        raise CliError(f"{flag} {path}: no such file") from None
    except (OSError, UnidentifiedImageError) as exc:
        raise CliError(f"{flag} {path}: not an image ({exc})") from None


def _what(args) -> dict:
    """The edit asked for (checked before any model loads)."""
    if (args.chain is not None) + (args.mask is not None) > 1:
        raise CliError("give one of --chain and --mask (with --prompt, the prompt the edit answers)")
    if args.chain is None and args.mask is None and args.prompt is None:
        raise CliError("say what to edit: --chain FILE (an edited plan), --prompt TEXT or --mask PNG")
    what = {}
    if args.chain is not None:
        what["chain"] = _read_text(args.chain, "--chain")
    if args.prompt is not None:
        if not args.prompt.strip():
            raise CliError("--prompt: an empty prompt")
        what["prompt"] = args.prompt.strip()
    if args.mask is not None:
        what["mask"] = _open_image(args.mask, "--mask")
    return what


def _source(args, bundle):
    from .model.editing import EditError, EditSource

    source = Path(args.source)
    try:
        if source.is_dir():
            return EditSource.from_sample_folder(source, args.image_index, bundle)
        image = _open_image(args.source, "SOURCE")
        if args.source_prompt is None:
            raise CliError("SOURCE is an image: give --source-prompt (and --source-chain for plan and prompt edits)")
        chain = _read_text(args.source_chain, "--source-chain") if args.source_chain else ""
        return EditSource.from_image(bundle, image, args.source_prompt, chain)
    except EditError as exc:
        raise CliError(f"SOURCE {source}: {exc}") from None


def cmd_edit(args) -> int:
    from .outputs import new_run_folder, prepare_output

    if not Path(args.source).exists():
        raise CliError(f"SOURCE {args.source}: no such sample folder or image")
    what = _what(args)
    if Path(args.source).is_file() and "mask" not in what and not args.source_chain:
        raise CliError(
            "SOURCE is an image: a plan or prompt edit needs --source-chain FILE (the plan it was drawn from)"
        )
    out = Path(args.out) if args.out else new_run_folder("outputs/edit")
    output = prepare_output(
        out, owned=EDIT_OWNS, what="gotr1 edit", overwrite=args.overwrite, inputs=[args.model, args.source]
    )
    with output:
        written = _edit_into(args, what, output.work)
    print(f"wrote {written} edited sample(s) under {out}")
    return 0


def _edit_into(args, what: dict, out: Path) -> int:
    from .layout import mask_overlay
    from .model.edit_masks import DEFAULT_EDIT_MARGIN, snapped_record
    from .model.editing import EditError, edit
    from .model.sampler import TwoPhaseSampler
    from .models import load_model
    from .samples import write_sample_folder

    margin = DEFAULT_EDIT_MARGIN if args.edit_margin is None else args.edit_margin
    bundle = load_model(args.model, args.dtype, resolve_device(args.device))
    source = _source(args, bundle)
    sampling = sampling_from_args(args).for_model(bundle)
    sampler = TwoPhaseSampler(bundle)
    try:
        result = edit(
            sampler,
            source,
            num_images=args.num_images,
            seed=args.seed,
            sampling=sampling,
            margin=margin,
            candidates=args.candidates,
            redraw=args.redraw,
            **what,
        )
    except EditError as exc:
        raise CliError(str(exc)) from None
    plan = result.plan
    for typed, drawn in plan.snapped:
        log.info(
            "box (%d,%d),(%d,%d) drawn as (%d,%d),(%d,%d): the model's grid",
            *vars(typed).values(),
            *vars(drawn).values(),
        )
    for warning in plan.warnings:
        log.warning("%s: edit its words too, or the model may follow them", warning)
    side = int(bundle.num_image_tokens**0.5)
    if source.image is not None:
        source.image.save(out / "source.png")
        mask_overlay(source.image, plan.mask.reshape(side, side)).save(out / "mask.png")
    for gen in result.generations:
        write_sample_folder(gen, out / f"sample_{gen.sample_index:02d}")
    asked = {key: value for key, value in what.items() if key != "mask"} | ({"mask": args.mask} if args.mask else {})
    record = {
        "source": str(Path(args.source).resolve()),
        "source_prompt": source.prompt,
        "source_chain": source.chain,
        "edit": asked,
        "prompt": plan.prompt,
        "chain": plan.chain,
        "changes": [change.to_dict() for change in plan.changes],
        "snapped": snapped_record(plan.snapped),
        "warnings": plan.warnings,
        "mask_cells": int(plan.mask.sum()),
        "cells": plan.mask.numel(),
        "full_rerender": plan.full_rerender,
        "edit_margin": margin,
        "redraw": args.redraw,
        "seed": args.seed,
        "sampling": sampling.sample_settings() | {"compile": sampling.compile},
        "model_source": bundle.source,
        **bundle.provenance(),
    }
    (out / "edit.json").write_text(json.dumps(record, indent=2) + "\n")
    return len(result.generations)


def add_edit_command(sub) -> None:
    """Add `gotr1 edit` to the `gotr1` subcommands."""
    ed = sub.add_parser("edit", help="re-draw what an edited plan, prompt or mask names; keep the rest of the image")
    ed.add_argument("source", metavar="SOURCE", help="a gotr1 generate sample folder, or an image file")
    ed.add_argument("--chain", "--plan", dest="chain", help="a text file with the edited chain (plan) to draw")
    ed.add_argument("--prompt", help="a new prompt (alone: the model plans it, keeping what it can in place)")
    ed.add_argument("--mask", help="a PNG the image's size: its fully transparent pixels may change")
    ed.add_argument("--source-prompt", help="for an image SOURCE: the prompt it was drawn for")
    ed.add_argument("--source-chain", help="for an image SOURCE: a text file with the chain it was drawn from")
    ed.add_argument("--image-index", type=at_least(0), default=0, help="which image of a sample folder (image_N.png)")
    ed.add_argument("--num-images", type=at_least(1), default=1, help="edited images to draw")
    ed.add_argument(
        "--edit-margin",
        type=at_least(0),
        default=None,
        help="token cells re-sampled around each changed box (default: the measured best, docs/editing.md)",
    )
    ed.add_argument("--candidates", type=at_least(1), default=8, help="plans written for a prompt edit")
    ed.add_argument(
        "--redraw",
        action="store_true",
        help="sample every image token from the new plan (a full image's cost) and keep the source's pixels "
        "outside the mask: for a new colour where the VQ spreads colour over every token (docs/editing.md)",
    )
    add_model_argument(ed)
    add_sampling_arguments(ed)
    ed.add_argument("--seed", type=seed_type, default=0)
    ed.add_argument("--dtype", default=None, choices=DTYPES, help="float32 / bfloat16 / float16")
    ed.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    ed.add_argument("--out", default=None, help="output folder (default: a new outputs/edit/<time>)")
    ed.add_argument("--overwrite", action="store_true", help="replace an earlier gotr1 edit output in --out")
    ed.set_defaults(func=cmd_edit)
