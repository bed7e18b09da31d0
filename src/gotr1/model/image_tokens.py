"""Images <-> Janus image tokens, the way Janus' VQ does it.

Janus' VQ (like LlamaGen's) looks codes up in an l2-normalised codebook and decodes
`post_quant_conv(normalize(codebook)[code])`; transformers' decoder does exactly that, but its encoder
path quantises without normalising. These functions quantise the original way (cosine nearest
neighbour on normalised vectors), so encoding and transformers' decoding agree.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """uint8 RGB images -> [B, 3, H, W] floats in [-1, 1], the VQ's pixel range."""
    array = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0


def quantize(vq, pixels: torch.Tensor):
    """(normalised latents, their codebook vectors, codes), each [B, h, w, ...]."""
    z = vq.quant_conv(vq.encoder(pixels))  # [B, C, h, w]
    z = F.normalize(z.permute(0, 2, 3, 1), dim=-1)  # [B, h, w, C]
    codebook = F.normalize(vq.quantize.embedding.weight, dim=-1)
    codes = torch.argmax(z @ codebook.t(), dim=-1)  # cosine nearest neighbour
    zq = codebook[codes]
    return z, zq, codes


@torch.no_grad()
def encode_codes(vq, images: list[Image.Image], batch_size: int = 64) -> torch.Tensor:
    """[B, grid * grid] codes for PIL images, row-major (the order image tokens are generated in)."""
    out = []
    for i in range(0, len(images), batch_size):
        _, _, codes = quantize(vq, to_tensor(images[i : i + batch_size]).to(vq.device, vq.dtype))
        out.append(codes.flatten(1).cpu())
    return torch.cat(out)


@torch.no_grad()
def decode_codes(vq, codes: torch.Tensor) -> list[Image.Image]:
    """Codes [B, grid * grid] -> PIL images, through transformers' own decoder."""
    pixels = vq.decode(codes.to(vq.device)).float().cpu()
    array = ((pixels.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).to(torch.uint8).numpy()
    return [Image.fromarray(a) for a in array]


def set_image_grid(model, num_tokens: int) -> None:
    """Make a Janus model sample and decode `num_tokens` image tokens (a square grid) instead of its own
    count: benchmarks that time fewer decode steps than a whole image. The sampler and transformers'
    `generate` read the count from the vision config, the VQ decoder checks its quantiser's grid."""
    side = int(num_tokens**0.5)
    if num_tokens < 1 or side * side != num_tokens:
        raise ValueError(f"image tokens must be a square number (the grid is square), got {num_tokens}")
    model.config.vq_config.num_patches = side
    model.model.vision_model.config.num_image_tokens = num_tokens
    model.model.vqmodel.quantize.quant_state_dims = [side, side]
