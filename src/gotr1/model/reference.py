"""The published GoT-R1 inference algorithm, followed literally: one prompt, one chain at a time.

It is the yardstick for the batched sampler: parity tests compare against it (on transformers'
Janus modules and on the original DeepSeek module tree alike, through `ReferenceParts`), and the
sampler benchmark measures speed-ups over it. No prefix sharing, no batching of chains, no masks:
text tokens one by one with `lm_head`, then 2 x parallel_size rows (conditional / unconditional
interleaved) re-prefilled from scratch for the image tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .compat import cache_kwargs, returned_cache


@dataclass
class ReferenceParts:
    """The six pieces of a Janus model the algorithm touches."""

    embed_tokens: Callable[[torch.Tensor], torch.Tensor]
    backbone: Callable  # LlamaModel-like: (inputs_embeds=, past_key_values=, use_cache=) -> .last_hidden_state
    lm_head: Callable[[torch.Tensor], torch.Tensor]
    gen_head: Callable[[torch.Tensor], torch.Tensor]
    gen_embed: Callable[[torch.Tensor], torch.Tensor]  # image token ids -> input embeddings
    decode: Callable[[torch.Tensor], torch.Tensor]  # [B, N] codes -> [B, C, H, W] pixels in [-1, 1]

    @classmethod
    def from_janus(cls, model) -> ReferenceParts:
        lm = model.model.language_model
        return cls(
            embed_tokens=lm.get_input_embeddings(),
            backbone=lm,
            lm_head=model.lm_head,
            gen_head=model.model.generation_head,
            gen_embed=model.prepare_embeddings_for_image_generation,
            decode=model.model.vqmodel.decode,
        )


def _pick(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    if temperature <= 0:
        return torch.argmax(logits, dim=-1, keepdim=True)
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


@torch.inference_mode()
def reference_generate(
    parts: ReferenceParts,
    prompt_ids: list[int],
    *,
    begin_of_image: int,
    pad: int,
    num_image_tokens: int,
    cfg_weight: float = 5.0,
    text_temperature: float = 1.0,
    image_temperature: float = 1.0,
    parallel_size: int = 1,
    max_text_tokens: int = 600,
    generator: torch.Generator | None = None,
    record_logits: bool = False,
    decode: bool = True,
) -> dict:
    """Chain then `parallel_size` images for one prompt. Temperature 0 means greedy.

    Returns text_ids (ending with <begin_of_image>), image_ids [P, N], pixels uint8 [P, H, W, C] (when `decode`), and,
    with record_logits, text_logits [Lt, V] and image_logits [P, N, K] (CFG-combined).
    """
    device = next(iter(parts.lm_head.parameters())).device if hasattr(parts.lm_head, "parameters") else "cpu"
    input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    embeds = parts.embed_tokens(input_ids)
    past, generated, text_logits = None, [], []
    token = None
    while (token is None or token != begin_of_image) and len(generated) < max_text_tokens:
        out = parts.backbone(inputs_embeds=embeds, use_cache=True, **cache_kwargs(parts.backbone, past))
        logits = parts.lm_head(out.last_hidden_state[:, -1, :])
        if record_logits:
            text_logits.append(logits[0].float())
        nxt = _pick(logits, text_temperature, generator)
        token = int(nxt)
        generated.append(token)
        embeds = parts.embed_tokens(nxt)
        past = returned_cache(out)
    if not generated or generated[-1] != begin_of_image:
        generated.append(begin_of_image)

    full = torch.tensor([*prompt_ids, *generated], dtype=torch.long, device=device)
    use_cfg = cfg_weight > 1
    rows = parallel_size * (2 if use_cfg else 1)
    tokens = full.repeat(rows, 1)
    if use_cfg:
        tokens[1::2, 1:-1] = pad  # unconditional rows: all but the first and last token masked
    embeds = parts.embed_tokens(tokens)
    past = None
    image_ids = torch.zeros((parallel_size, num_image_tokens), dtype=torch.long, device=device)
    image_logits = []
    for i in range(num_image_tokens):
        out = parts.backbone(inputs_embeds=embeds, use_cache=True, **cache_kwargs(parts.backbone, past))
        logits = parts.gen_head(out.last_hidden_state[:, -1, :]).float()
        if use_cfg:
            logits = logits[1::2] + cfg_weight * (logits[0::2] - logits[1::2])
        if record_logits:
            image_logits.append(logits)
        nxt = _pick(logits, image_temperature, generator)
        image_ids[:, i] = nxt.squeeze(-1)
        if use_cfg:
            nxt = torch.cat([nxt, nxt], dim=1).view(-1, 1)
        embeds = parts.gen_embed(nxt)
        past = returned_cache(out)
    result = {"text_ids": torch.tensor(generated), "image_ids": image_ids.cpu()}
    if decode:  # False: tokens only (benchmarks that decode fewer image tokens than the VQ takes)
        pixels = parts.decode(image_ids).permute(0, 2, 3, 1).float().cpu().numpy()
        result["pixels"] = np.clip((pixels + 1) / 2 * 255, 0, 255).astype(np.uint8)
    if record_logits:
        result["text_logits"] = torch.stack(text_logits).cpu() if text_logits else torch.empty(0)
        result["image_logits"] = torch.stack(image_logits, 1).cpu()
    return result
