"""Edit an image without losing the rest: re-sample only the image tokens an edit concerns, keep every other one.

An edit starts from a source (a sample's prompt, chain and image tokens; a picture is encoded by the model's VQ)
and says what changes in one of three ways, each giving a token mask (`edit_masks`):
- a new chain (an edited plan): its boxes snapped to the coordinates the model writes (`chain.snap_chain`), then
  the cells under the old and new boxes of every object that changed;
- a new prompt: the model writes candidate chains for it and the one that keeps the most unchanged objects where
  they were is used, then as a new chain;
- a mask image (fully transparent pixels may change): its cells; the chain is sampled from the prompt.
Then `TwoPhaseSampler.generate(..., source_image_ids=..., edit_masks=...)` samples the masked tokens only, or,
with `redraw`, every token (a full image's cost), keeping the source's pixels outside the mask: what a VQ that
spreads colour over every token needs for a new colour (docs/editing.md).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from ..chain import Box, relation_contradictions, snap_chain
from .edit_masks import DEFAULT_EDIT_MARGIN, ObjectChange, keep_score, mask_from_image, plan_changes, plan_edit_mask
from .image_tokens import encode_codes
from .sampler import Generation, SamplingConfig, TwoPhaseSampler

log = logging.getLogger(__name__)


class EditError(ValueError):
    """An edit that cannot be made as asked (one line naming what is wrong)."""


@dataclass
class EditSource:
    """What an edit starts from: the prompt and chain that made the image, and its image tokens."""

    prompt: str
    chain: str
    image_ids: torch.Tensor  # [N] VQ codes, row-major
    image: Image.Image | None = None

    @classmethod
    def from_generation(cls, gen: Generation, image_index: int = 0) -> EditSource:
        image = gen.images[image_index] if gen.images else None
        return cls(gen.prompt, gen.chain, gen.image_ids[image_index].clone(), image)

    @classmethod
    def from_sample_folder(cls, folder: str | Path, image_index: int = 0, bundle=None) -> EditSource:
        """A `gotr1 generate` or `gotr1 edit` sample folder: its chain.json keeps the image tokens (no re-encoding
        loss). A redrawn edit's image is no token grid's decoding: with `bundle` it is encoded by the VQ."""
        record_path = Path(folder) / "chain.json"
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EditError(f"{folder}: not a gotr1 sample folder (no chain.json)") from None
        except (OSError, ValueError) as exc:
            raise EditError(f"{record_path}: unreadable ({exc})") from None
        image_path = Path(folder) / f"image_{image_index}.png"
        image = Image.open(image_path).convert("RGB") if image_path.is_file() else None
        tokens = record.get("image_tokens")
        if tokens and image_index < len(tokens):
            return cls(record["prompt"], record["chain"], torch.tensor(tokens[image_index], dtype=torch.long), image)
        why = "a redrawn edit" if record.get("redrawn") else "sampled before gotr1 kept them"
        if bundle is None or image is None:
            raise EditError(f"{record_path}: keeps no image tokens for image {image_index} ({why})")
        log.info("%s: no image tokens (%s); %s is encoded by the model's VQ", record_path, why, image_path.name)
        return cls.from_image(bundle, image, record["prompt"], record["chain"])

    @classmethod
    def from_image(cls, bundle, image: Image.Image, prompt: str, chain: str) -> EditSource:
        """A picture: encoded by the model's VQ (at the model's image size)."""
        size = bundle.image_size
        if image.size != (size, size):
            raise EditError(f"the image is {image.size[0]}x{image.size[1]}; the model draws {size}x{size}")
        codes = encode_codes(bundle.model.model.vqmodel, [image.convert("RGB")])[0]
        return cls(prompt, chain, codes, image.convert("RGB"))


@dataclass
class EditPlan:
    """What an edit re-samples: for which prompt, with which chain, and where."""

    prompt: str
    chain: str | None  # the chain every edited image draws (None: each samples its own, for a mask edit)
    mask: torch.Tensor  # [N] bool: the token cells re-sampled
    changes: list[ObjectChange]  # what the plan changed (empty for a mask edit)
    snapped: list[tuple[Box, Box]] = field(default_factory=list)  # (typed, drawn) boxes moved onto the model's grid
    warnings: list[str] = field(default_factory=list)  # e.g. words the edited boxes now contradict

    @property
    def full_rerender(self) -> bool:
        """The mask covers every cell: nothing of the source is kept."""
        return bool(self.mask.all())


@dataclass
class EditResult:
    plan: EditPlan
    generations: list[Generation]  # the edited samples (each with `edit_mask`)


def prepare_edit(
    sampler: TwoPhaseSampler,
    source: EditSource,
    *,
    chain: str | None = None,
    prompt: str | None = None,
    mask: Image.Image | None = None,
    seed: int = 0,
    sampling: SamplingConfig | None = None,
    margin: int = DEFAULT_EDIT_MARGIN,
    candidates: int = 8,
) -> EditPlan:
    """Decide what an edit re-samples. Give `chain` (an edited plan), `prompt` (a new prompt; with `chain` too,
    the prompt the new plan answers) or `mask` (with an optional new prompt). A prompt edit samples `candidates`
    chains for the new prompt and keeps the one that leaves most of the old plan in place."""
    if (chain is not None) + (mask is not None) > 1 or (chain is None and mask is None and prompt is None):
        raise EditError("say what to edit: a new chain, a new prompt, or a mask (one of chain and mask)")
    side = int(sampler.bundle.num_image_tokens**0.5)
    new_prompt = prompt if prompt is not None else source.prompt
    # Both plans on the model's coordinates: a source chain typed in round numbers compares like the edited one.
    source_chain = snap_chain(source.chain, sampler.bundle.image_size)[0]
    if mask is not None:
        if source.image is None:
            raise EditError("a mask edit needs the source image (its size is the mask's)")
        try:
            cells = mask_from_image(mask, side, source.image.size)
        except ValueError as exc:
            raise EditError(f"mask: {exc}") from None
        plan = EditPlan(new_prompt, None, cells, [])
    else:
        snapped = []
        if chain is None:  # a prompt edit: the candidate plan that keeps the most of the old one
            written = sampler.generate([new_prompt], sampling, num_generations=candidates, seed=seed, chains_only=True)
            chain = max(written, key=lambda g: keep_score(source_chain, g.chain)).chain
        else:  # typed boxes onto the coordinates the model writes (round numbers it never saw draw nothing)
            chain, snapped = snap_chain(chain, sampler.bundle.image_size)
        cells = plan_edit_mask(source_chain, chain, side, margin)
        plan = EditPlan(
            new_prompt, chain, cells, plan_changes(source_chain, chain), snapped, relation_contradictions(chain)
        )
    if not bool(plan.mask.any()):
        raise EditError("nothing to edit: the new plan places the same objects in the same boxes, or the mask is empty")
    if plan.full_rerender:
        log.warning("the edit covers every token cell: this is a full re-render, nothing of the source is kept")
    return plan


def edit(
    sampler: TwoPhaseSampler,
    source: EditSource,
    *,
    num_images: int = 1,
    seed: int = 0,
    sampling: SamplingConfig | None = None,
    redraw: bool = False,
    **what,
) -> EditResult:
    """Re-sample what the edit concerns (`prepare_edit`'s chain= | prompt= | mask=, margin, candidates), keep the
    source's other tokens: `num_images` edited images, image i seeded like sample i of `seed`. `redraw`: sample
    every token from the new plan (a full image's cost) and keep only the source's pixels outside the mask."""
    plan = prepare_edit(sampler, source, seed=seed, sampling=sampling, **what)
    generations = sampler.generate(
        [plan.prompt],
        sampling,
        chains=None if plan.chain is None else [[plan.chain] * num_images],
        num_generations=num_images,
        seed=seed,
        source_image_ids=[source.image_ids],
        edit_masks=[plan.mask],
        redraw=redraw,
    )
    return EditResult(plan, generations)
