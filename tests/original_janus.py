"""An independent, small re-implementation of DeepSeek's original Janus module tree (test oracle).

Written from the published architecture (the GoT-R1 / Janus release: `MultiModalityCausalLM` with a
LlamaForCausalLM, a LlamaGen-style VQ-16 tokenizer, a SigLIP ViT, MLP aligners and a two-layer
generation head), with the original parameter names, so that a checkpoint saved from it has exactly
the key layout of the released GoT-R1 checkpoints. It shares no code with `gotr1.model`: the parity
tests load its checkpoints through our converter and compare numbers against its own forward passes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

from gotr1.model.reference import ReferenceParts


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class Res(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = _group_norm(cin), nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2, self.conv2 = _group_norm(cout), nn.Conv2d(cout, cout, 3, 1, 1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class Attn(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.norm = _group_norm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        b, c, h, w = x.shape
        n = self.norm(x)
        q = self.q(n).flatten(2).transpose(1, 2)  # b, hw, c
        k = self.k(n).flatten(2)  # b, c, hw
        v = self.v(n).flatten(2)
        att = torch.softmax(q @ k / c**0.5, dim=-1)  # b, hw(q), hw(k)
        out = (v @ att.transpose(1, 2)).view(b, c, h, w)
        return x + self.proj_out(out)


class Resample(nn.Module):
    def __init__(self, c: int, up: bool):
        super().__init__()
        self.up = up
        self.conv = nn.Conv2d(c, c, 3, 1 if up else 2, 1 if up else 0)

    def forward(self, x):
        if self.up:
            return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Coder(nn.Module):
    """Encoder (down=True) or decoder of the LlamaGen VQ, with `conv_blocks[i].res/attn/...` naming."""

    def __init__(self, ch: int, mult: list[int], n_res: int, z: int, down: bool):
        super().__init__()
        levels = len(mult)
        self.down = down
        self.conv_blocks = nn.ModuleList()
        if down:
            self.conv_in = nn.Conv2d(3, ch, 3, 1, 1)
            cin = ch
            for i, m in enumerate(mult):
                blk = nn.Module()
                blk.res, blk.attn = nn.ModuleList(), nn.ModuleList()
                for _ in range(n_res):
                    blk.res.append(Res(cin, ch * m))
                    cin = ch * m
                    if i == levels - 1:
                        blk.attn.append(Attn(cin))
                if i != levels - 1:
                    blk.downsample = Resample(cin, up=False)
                self.conv_blocks.append(blk)
            self.mid = nn.ModuleList([Res(cin, cin), Attn(cin), Res(cin, cin)])
            self.norm_out, self.conv_out = _group_norm(cin), nn.Conv2d(cin, z, 3, 1, 1)
        else:
            cin = ch * mult[-1]
            self.conv_in = nn.Conv2d(z, cin, 3, 1, 1)
            self.mid = nn.ModuleList([Res(cin, cin), Attn(cin), Res(cin, cin)])
            for i in reversed(range(levels)):
                blk = nn.Module()
                blk.res, blk.attn = nn.ModuleList(), nn.ModuleList()
                for _ in range(n_res + 1):
                    blk.res.append(Res(cin, ch * mult[i]))
                    cin = ch * mult[i]
                    if i == levels - 1:
                        blk.attn.append(Attn(cin))
                if i != 0:
                    blk.upsample = Resample(cin, up=True)
                self.conv_blocks.append(blk)
            self.norm_out, self.conv_out = _group_norm(cin), nn.Conv2d(cin, 3, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        if not self.down:
            for m in self.mid:
                h = m(h)
        for _i, blk in enumerate(self.conv_blocks):
            for j, res in enumerate(blk.res):
                h = res(h)
                if len(blk.attn):
                    h = blk.attn[j](h)
            if hasattr(blk, "downsample"):
                h = blk.downsample(h)
            if hasattr(blk, "upsample"):
                h = blk.upsample(h)
        if self.down:
            for m in self.mid:
                h = m(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Quantizer(nn.Module):
    def __init__(self, n: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n, dim)
        self.register_buffer("codebook_used", torch.zeros(65536))


class OriginalVQ(nn.Module):
    def __init__(self, ch=32, mult=(1, 1, 2), n_res=1, z=32, codebook=64, dim=8):
        super().__init__()
        self.encoder = Coder(ch, list(mult), n_res, z, down=True)
        self.decoder = Coder(ch, list(mult), n_res, z, down=False)
        self.quantize = Quantizer(codebook, dim)
        self.quant_conv = nn.Conv2d(z, dim, 1)
        self.post_quant_conv = nn.Conv2d(dim, z, 1)

    def decode_code(self, codes: torch.Tensor, grid: int) -> torch.Tensor:
        table = F.normalize(self.quantize.embedding.weight, p=2, dim=-1)  # codebook is l2-normalised
        q = table[codes].view(codes.shape[0], grid, grid, -1).permute(0, 3, 1, 2)
        return self.decoder(self.post_quant_conv(q))


class Block(nn.Module):
    def __init__(self, d: int, heads: int, mlp: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv, self.attn.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Module()
        self.mlp.fc1, self.mlp.fc2 = nn.Linear(d, mlp), nn.Linear(mlp, d)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.attn.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + self.attn.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class ViT(nn.Module):
    def __init__(self, d=64, heads=16, depth=1, patch=2, grid=4, mlp=128):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, d, patch, patch)
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, heads, mlp) for _ in range(depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.attn_pool = nn.Module()  # present in the release, unused by Janus
        self.attn_pool.latent = nn.Parameter(torch.zeros(1, 1, d))
        self.attn_pool.q, self.attn_pool.kv = nn.Linear(d, d), nn.Linear(d, 2 * d)

    def forward(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def _mlp(din: int, dout: int) -> nn.Module:
    m = nn.Module()
    m.layers = nn.Sequential(nn.Linear(din, dout), nn.GELU(), nn.Linear(dout, dout))
    return m


class GenHead(nn.Module):
    def __init__(self, d: int, inner: int, codebook: int):
        super().__init__()
        self.output_mlp_projector = nn.Linear(d, inner)
        self.vision_activation = nn.GELU()
        self.vision_head = nn.Linear(inner, codebook)

    def forward(self, x):
        return self.vision_head(self.vision_activation(self.output_mlp_projector(x)))


class OriginalJanus(nn.Module):
    """MultiModalityCausalLM's module tree at toy sizes."""

    def __init__(
        self, vocab_size: int, hidden=64, layers=2, heads=4, kv_heads=2, inter=128, grid=4, ids: dict | None = None
    ):
        super().__init__()
        self.grid = grid
        self.language_config = dict(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=inter,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            max_position_embeddings=2048,
            torch_dtype="float32",
            **(ids or {}),
        )
        self.language_model = LlamaForCausalLM(LlamaConfig(**self.language_config, tie_word_embeddings=False))
        self.vision_model = nn.Module()
        self.vision_model.vision_tower = ViT(grid=grid)
        self.aligner = _mlp(64, hidden)
        self.gen_vision_model = OriginalVQ()
        self.gen_aligner = _mlp(8, hidden)
        self.gen_head = GenHead(hidden, hidden, 64)
        self.gen_embed = nn.Embedding(64, 8)

    def parts(self) -> ReferenceParts:
        lm = self.language_model
        return ReferenceParts(
            embed_tokens=lm.get_input_embeddings(),
            backbone=lm.model,
            lm_head=lm.lm_head,
            gen_head=self.gen_head,
            gen_embed=lambda ids: self.gen_aligner.layers(self.gen_embed(ids)),
            decode=lambda codes: self.gen_vision_model.decode_code(codes, self.grid),
        )

    def config_json(self) -> dict:
        return {
            "model_type": "multi_modality",
            "architectures": ["MultiModalityCausalLM"],
            "language_config": self.language_config,
            "vision_config": {
                "cls": "CLIPVisionTower",
                "model_type": "vision",
                "params": {
                    "image_size": self.grid * 2,
                    "model_name": "siglip_large_patch16_384",
                    "select_feature": "same",
                    "select_layer": -1,
                },
            },
            "aligner_config": {
                "cls": "MlpProjector",
                "model_type": "aligner",
                "params": {"depth": 2, "input_dim": 64, "n_embed": 64, "projector_type": "mlp_gelu"},
            },
            "gen_vision_config": {
                "cls": "VQ-16",
                "model_type": "gen_vision",
                "params": {"image_token_size": 64, "n_embed": 8},
            },
            "gen_aligner_config": {
                "cls": "MlpProjector",
                "model_type": "gen_aligner",
                "params": {"depth": 2, "input_dim": 8, "n_embed": 64, "projector_type": "mlp_gelu"},
            },
            "gen_head_config": {
                "cls": "vision_head",
                "model_type": "gen_head",
                "params": {"image_token_embed": 64, "image_token_size": 64, "n_embed": 64},
            },
            "torch_dtype": "float32",
        }

    def save_checkpoint(self, directory: Path, tokenizer) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
        (directory / "config.json").write_text(json.dumps(self.config_json(), indent=2))
        tokenizer.save_pretrained(directory)
        return directory
