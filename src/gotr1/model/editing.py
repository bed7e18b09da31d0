"""Edit an image without losing the rest: re-sample only the image tokens an edit concerns, keep every other one.

An edit starts from a source (a sample's prompt, chain and image tokens; a picture is encoded by the model's VQ)
and says what changes in one of three ways, each giving a token mask (`edit_masks`):
- a new chain (an edited plan): the cells under the old and new boxes of every object that changed;
- a new prompt: the model writes candidate chains for it and the one that keeps the most unchanged objects where
  they were is used, then as a new chain;
- a mask image (fully transparent pixels may change): its cells; the chain is sampled from the prompt.
Then `TwoPhaseSampler.generate(..., source_image_ids=..., edit_masks=...)` samples the masked tokens only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

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
    def from_sample_folder(cls, folder: str | Path, image_index: int = 0) -> EditSource:
        """A `gotr1 generate` sample folder: its chain.json keeps the image tokens (no re-encoding loss)."""
        record_path = Path(folder) / "chain.json"
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EditError(f"{folder}: not a gotr1 sample folder (no chain.json)") from None
        except (OSError, ValueError) as exc:
            raise EditError(f"{record_path}: unreadable ({exc})") from None
        tokens = record.get("image_tokens")
        if not tokens or image_index >= len(tokens):
            raise EditError(
                f"{record_path}: keeps no image tokens for image {image_index} (sampled before gotr1 kept them)"
            )
        image_path = Path(folder) / f"image_{image_index}.png"
        image = Image.open(image_path).convert("RGB") if image_path.is_file() else None
        return cls(record["prompt"], record["chain"], torch.tensor(tokens[image_index], dtype=torch.long), image)

    @classmethod
    def from_image(cls, bundle, image: Image.Image, prompt: str, chain: str) -> EditSource:
        """A picture: encoded by the model's VQ (at the model's image size)."""
        size = bundle.image_size
        if image.size != (size, size):
            raise EditError(f"the image is {image.size[0]}x{image.size[1]}; the model draws {size}x{size}")
        codes = encode_codes(bundle.model.model.vqmodel, [image.convert("RGB")])[0]
        return cls(prompt, chain, codes, image.convert("RGB"))


@dataclass
class EditResult:
    generations: list[Generation]  # the edited samples (each with `edit_mask`)
    mask: torch.Tensor  # [N] bool: the token cells that were re-sampled
    chain: str | None  # the chain drawn (None: sampled per image, for a mask edit)
    changes: list[ObjectChange]  # what the plan changed (empty for a mask edit)
    full_rerender: bool  # the mask covers every cell: nothing of the source is kept


def edit(
    sampler: TwoPhaseSampler,
    source: EditSource,
    *,
    chain: str | None = None,
    prompt: str | None = None,
    mask: Image.Image | None = None,
    num_images: int = 1,
    seed: int = 0,
    sampling: SamplingConfig | None = None,
    margin: int = DEFAULT_EDIT_MARGIN,
    candidates: int = 8,
) -> EditResult:
    """Re-sample what the edit concerns, keep the source's other tokens. Give `chain` (an edited plan), `prompt`
    (a new prompt; with `chain` too, the prompt the new plan answers) or `mask` (with an optional new prompt)."""
    if (chain is not None) + (mask is not None) > 1 or (chain is None and mask is None and prompt is None):
        raise EditError("say what to edit: a new chain, a new prompt, or a mask (one of chain and mask)")
    bundle = sampler.bundle
    side = int(bundle.num_image_tokens**0.5)
    new_prompt = prompt if prompt is not None else source.prompt
    sampling = sampling or SamplingConfig()
    changes: list[ObjectChange] = []
    if mask is not None:
        if source.image is None:
            raise EditError("a mask edit needs the source image (its size is the mask's)")
        cells = mask_from_image(mask, side, source.image.size)
        chains = None
        chain_used = None
    else:
        if chain is None:  # a prompt edit: the candidate plan that keeps the most of the old one
            written = sampler.generate([new_prompt], sampling, num_generations=candidates, seed=seed, chains_only=True)
            chain = max(written, key=lambda g: keep_score(source.chain, g.chain)).chain
        changes = plan_changes(source.chain, chain)
        cells = plan_edit_mask(source.chain, chain, side, margin)
        chains = [[chain] * num_images]
        chain_used = chain
    if not bool(cells.any()):
        raise EditError("nothing to edit: the new plan places the same objects in the same boxes, or the mask is empty")
    full = bool(cells.all())
    if full:
        log.warning("the edit covers every token cell: this is a full re-render, nothing of the source is kept")
    generations = sampler.generate(
        [new_prompt],
        sampling,
        chains=chains,
        num_generations=num_images,
        seed=seed,
        source_image_ids=[source.image_ids],
        edit_masks=[cells],
    )
    return EditResult(generations, cells, chain_used, changes, full)
