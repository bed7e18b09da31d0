"""One teacher-forced forward pass over prompt -> reasoning chain -> image tokens.

SFT trains on it and GRPO re-scores its own samples with it (both through `PolicyScorer`), so the layout of a
sequence is defined once, here: [left pad][prompt][chain ... <begin_of_image>][image codes except the last]. Text tokens
are embedded by the language model's embeddings, image codes by the generation embeddings + aligner.
Chain tokens are predicted by `lm_head` from the position before them; image codes by the generation
head, the first one from `<begin_of_image>`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .attention import attention_backends


@dataclass
class SFTRecord:
    """One training sequence as token lists: what SFT reads from data and GRPO re-scores of its samples."""

    prompt_ids: list[int]
    text_ids: list[int]  # chain tokens ending with <begin_of_image>
    image_ids: list[int]


def unconditional_ids(first_token: int, length: int, pad: int, begin_of_image: int) -> list[int]:
    """CFG's unconditional row of a sequence of ``length`` tokens (prompt and chain): its first token, pads,
    and the closing <begin_of_image>, as in the published inference code. SFT trains on it, the sampler
    prefills it."""
    return [first_token] + [pad] * (length - 2) + [begin_of_image]


def unconditional(record: SFTRecord, pad: int) -> SFTRecord:
    """The record as CFG's unconditional row sees it (see :func:`unconditional_ids`)."""
    n = len(record.prompt_ids)
    row = unconditional_ids(record.prompt_ids[0], n + len(record.text_ids), pad, record.text_ids[-1])
    return SFTRecord(row[:n], row[n:], record.image_ids)


@dataclass
class PackedBatch:
    """Left-padded mixed text / image sequences and where each prediction is read."""

    tokens: torch.Tensor  # [B, L] text ids (pad at image and padding positions)
    codes: torch.Tensor  # [B, L] image codes (0 elsewhere)
    is_image: torch.Tensor  # [B, L] bool
    attention_mask: torch.Tensor  # [B, L]
    text_positions: torch.Tensor  # [B, Tmax] position predicting each chain token
    text_targets: torch.Tensor  # [B, Tmax]
    text_mask: torch.Tensor  # [B, Tmax] bool, False past a row's chain
    image_positions: torch.Tensor  # [B, N]
    image_targets: torch.Tensor  # [B, N]

    def to(self, device) -> PackedBatch:
        return PackedBatch(**{k: v.to(device) for k, v in self.__dict__.items()})


def pack(
    prompt_ids: Sequence[Sequence[int]],
    text_ids: Sequence[Sequence[int]],
    image_ids: torch.Tensor | Sequence[Sequence[int]],
    pad: int,
) -> PackedBatch:
    """Build a PackedBatch; every row's chain must end with <begin_of_image>."""
    image_ids = torch.as_tensor(image_ids, dtype=torch.long)
    rows, n_img = image_ids.shape
    lengths = [len(p) + len(t) + n_img - 1 for p, t in zip(prompt_ids, text_ids)]
    width, t_max = max(lengths), max(len(t) for t in text_ids)
    tokens = torch.full((rows, width), pad, dtype=torch.long)
    codes = torch.zeros((rows, width), dtype=torch.long)
    is_image = torch.zeros((rows, width), dtype=torch.bool)
    mask = torch.zeros((rows, width), dtype=torch.long)
    text_pos = torch.zeros((rows, t_max), dtype=torch.long)
    text_tgt = torch.full((rows, t_max), pad, dtype=torch.long)
    text_mask = torch.zeros((rows, t_max), dtype=torch.bool)
    image_pos = torch.zeros((rows, n_img), dtype=torch.long)
    for r, (p, t, length) in enumerate(zip(prompt_ids, text_ids, lengths)):
        o = width - length
        text = torch.as_tensor(list(p) + list(t), dtype=torch.long)
        tokens[r, o : o + len(text)] = text
        img_start = o + len(text)
        codes[r, img_start:] = image_ids[r, :-1]
        is_image[r, img_start:] = True
        mask[r, o:] = 1
        text_pos[r, : len(t)] = torch.arange(len(t)) + o + len(p) - 1
        text_tgt[r, : len(t)] = torch.as_tensor(list(t))
        text_mask[r, : len(t)] = True
        image_pos[r] = torch.arange(n_img) + img_start - 1
    return PackedBatch(tokens, codes, is_image, mask, text_pos, text_tgt, text_mask, image_pos, image_ids)


def forward_packed(model, batch: PackedBatch, *, text: bool = True, image: bool = True):
    """(text logits [B, Tmax, V] or None, image logits [B, N, K] or None) for a PackedBatch."""
    lm = model.model.language_model
    embeds = lm.get_input_embeddings()(batch.tokens)
    image_embeds = model.prepare_embeddings_for_image_generation(batch.codes)
    embeds = torch.where(batch.is_image[..., None], image_embeds.to(embeds.dtype), embeds)
    positions = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)
    with attention_backends(embeds.device):
        hidden = lm(
            inputs_embeds=embeds, attention_mask=batch.attention_mask, position_ids=positions, use_cache=False
        ).last_hidden_state
    rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None]
    text_logits = model.lm_head(hidden[rows, batch.text_positions]) if text else None
    image_logits = model.model.generation_head(hidden[rows, batch.image_positions]) if image else None
    return text_logits, image_logits


class PolicyScorer(torch.nn.Module):
    """The teacher-forced forward as one module: what SFT trains, what GRPO scores its samples with and what
    `accelerator.prepare` wraps (DDP gradient hooks, autocast for mixed precision, FSDP / DeepSpeed ZeRO-3
    parameter gathering: `forward_packed` calls Janus submodules directly, outside any module forward).

    forward(batch, unconditional=None, text=, image=) -> (text logits | None, image logits | None,
    unconditional image logits | None). The unconditional rows (CFG-combined image log-probs) are scored
    in the same forward, so DDP sees exactly one forward per backward.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        # accelerate's DeepSpeed preparation reads `config.hidden_size` to fill "auto" bucket sizes.
        self.config = model.config.text_config

    def forward(
        self, batch: PackedBatch, unconditional: PackedBatch | None = None, *, text: bool = True, image: bool = True
    ):
        text_logits, image_logits = forward_packed(self.model, batch, text=text, image=image)
        uncond = forward_packed(self.model, unconditional, text=False)[1] if unconditional is not None else None
        return text_logits, image_logits, uncond


def scorer(model) -> torch.nn.Module:
    """`model` as a scorer: a Janus model wrapped in a PolicyScorer; a PolicyScorer (prepared or not) as it is."""
    return PolicyScorer(model) if callable(getattr(model, "prepare_embeddings_for_image_generation", None)) else model
