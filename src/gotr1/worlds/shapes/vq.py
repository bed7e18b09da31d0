"""The shapes world's image tokenizer: transformers' JanusVQVAE at a small size, trained here.

Training quantises the way Janus does (see `gotr1.model.image_tokens`), so training, encoding and
transformers' decoding agree.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import JanusVQVAE, JanusVQVAEConfig

from ...model.image_tokens import quantize, to_tensor
from ...progress import progress

log = logging.getLogger(__name__)


@dataclass
class VQSpec:
    image_size: int = 64
    channel_multiplier: tuple[int, ...] = (1, 1, 2, 2)  # 3 halvings: 64 px -> 8 x 8 codes
    base_channels: int = 32
    latent_channels: int = 64
    codebook_size: int = 1024
    embed_dim: int = 16
    num_res_blocks: int = 1

    @property
    def grid(self) -> int:
        return self.image_size // 2 ** (len(self.channel_multiplier) - 1)

    def config(self, projection_dim: int = 64) -> JanusVQVAEConfig:
        return JanusVQVAEConfig(
            embed_dim=self.embed_dim,
            num_embeddings=self.codebook_size,
            latent_channels=self.latent_channels,
            base_channels=self.base_channels,
            channel_multiplier=list(self.channel_multiplier),
            num_res_blocks=self.num_res_blocks,
            num_patches=self.grid,
            projection_dim=projection_dim,
            image_token_embed_dim=projection_dim,
        )


def reconstruct(vq: JanusVQVAE, pixels: torch.Tensor):
    """Straight-through quantisation and decoding; returns (pixels, commitment + codebook loss, codes)."""
    z, zq, codes = quantize(vq, pixels)
    vq_loss = F.mse_loss(zq, z.detach()) + 0.25 * F.mse_loss(z, zq.detach())
    zq = z + (zq - z).detach()
    decoded = vq.decoder(vq.post_quant_conv(zq.permute(0, 3, 1, 2)))
    return decoded, vq_loss, codes


def train_vq(
    sample_images,
    spec: VQSpec,
    *,
    steps: int,
    batch_size: int = 32,
    crop: int | None = 32,
    lr: float = 2e-3,
    foreground_weight: float = 4.0,
    init: JanusVQVAE | None = None,
    reseed_dead_codes: bool = True,
    seed: int = 0,
    log_every: int = 100,
) -> tuple[JanusVQVAE, dict]:
    """Train (or, from `init`, continue training) the VQ.

    `sample_images(n, rng)` returns n PIL images. Random crops cut the cost (4x at 32 of 64 px) but the
    attention blocks at the bottleneck then see a smaller context than at full size, so the recipe
    finishes with full-size images. Dead codes are re-seeded from encoder outputs early on so the
    codebook stays in use.
    """
    torch.manual_seed(seed)
    rng = random.Random(seed)
    if init is None:
        vq = JanusVQVAE(spec.config()).train()
        with torch.no_grad():
            vq.quantize.embedding.weight.normal_()
    else:
        vq = init.train()
    opt = torch.optim.AdamW(vq.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    usage = torch.zeros(spec.codebook_size)
    start = time.time()
    bar = progress(steps, "vq", "step")  # done/total, rate and ETA when the output is not a terminal
    for step in range(steps):
        pixels = to_tensor(sample_images(batch_size, rng))
        if crop and crop < spec.image_size:
            x, y = rng.randrange(0, spec.image_size - crop + 1, 8), rng.randrange(0, spec.image_size - crop + 1, 8)
            pixels = pixels[:, :, y : y + crop, x : x + crop]
        decoded, vq_loss, codes = reconstruct(vq, pixels)
        # Shapes cover a small part of each image; weighting their pixels keeps colours exact.
        weight = 1.0 + foreground_weight * (pixels < 0.98).any(1, keepdim=True).float()
        error = (decoded - pixels).abs()
        recon = (weight * (error + error**2)).mean() / weight.mean()
        loss = recon + vq_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        usage *= 0.99
        usage += torch.bincount(codes.flatten(), minlength=spec.codebook_size).float()
        if reseed_dead_codes and step % 50 == 49 and step < steps * 0.8:  # re-seed dead codes
            dead = (usage < 1e-3).nonzero().flatten()
            if len(dead):
                with torch.no_grad():
                    z = F.normalize(
                        vq.quant_conv(vq.encoder(pixels)).permute(0, 2, 3, 1).reshape(-1, spec.embed_dim), dim=-1
                    )
                    pick = z[torch.randint(0, len(z), (len(dead),))]
                    vq.quantize.embedding.weight[dead] = pick + 0.01 * torch.randn_like(pick)
                    usage[dead] = 1.0
        if step % log_every == 0 or step == steps - 1:
            log.info(
                "vq step %d/%d recon %.4f vq %.4f codes in use %d (%.0fs)",
                step + 1,
                steps,
                recon.item(),
                vq_loss.item(),
                int((usage > 1e-3).sum()),
                time.time() - start,
            )
        bar.update(1)
    bar.close()
    vq.eval()
    return vq, {"steps": steps, "seconds": time.time() - start, "final_recon": recon.item()}


@torch.no_grad()
def reconstruction_quality(vq: JanusVQVAE, images: list[Image.Image]) -> dict:
    """PSNR and the share of pixels whose reconstructed palette colour is right (what the grounder sees)."""
    pixels = to_tensor(images)
    decoded, _, _ = reconstruct(vq, pixels)
    mse = F.mse_loss((decoded.clamp(-1, 1) + 1) / 2, (pixels + 1) / 2).item()
    close = ((decoded.clamp(-1, 1) - pixels).abs().amax(1) < 0.25).float().mean().item()
    return {"psnr": 10 * np.log10(1.0 / max(mse, 1e-10)), "pixels_within_32_levels": close}
