"""The recipe that makes the shapes world's default model, from nothing, on a CPU.

1. `build_tokenizers`: train the small VQ image tokenizer on rendered scenes and the BPE text tokenizer.
2. `pretrain`: render (prompt, ground-truth chain, image) triples, encode the images to VQ codes, and
   SFT a small Janus (transformers' classes) on prompt -> chain -> image tokens.
Both write safetensors; the result loads with `gotr1.model.loading.load_janus`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import torch
from transformers import JanusVQVAE

from ...model.loading import plain_file_modes
from .grammar import ShapesGrammar
from .render import try_layout_scene
from .text_tokenizer import build_text_tokenizer
from .vq import VQSpec, reconstruction_quality, train_vq

log = logging.getLogger(__name__)


def scene_sampler(grammar: ShapesGrammar, split: str = "train", pool_size: int = 20000):
    """`sample(n, rng) -> n images` of random scenes from the split's prompts."""
    pool = grammar.prompts(split, pool_size)

    def sample(n: int, rng: random.Random):
        images = []
        while len(images) < n:
            scene = try_layout_scene(rng.choice(pool).meaning, rng)
            if scene is not None:
                images.append(scene.image())
        return images

    return sample


def build_tokenizers(
    out_dir: str | Path,
    *,
    seed: int = 0,
    vq_steps: int = 5000,
    vq_full_steps: int = 1500,
    init_vq: str | Path | None = None,
) -> dict:
    """Train the VQ (crops, then full images) and the text tokenizer; write them under out_dir.

    init_vq: continue from a saved VQ and run only the full-image phase.
    """
    out = Path(out_dir)
    grammar = ShapesGrammar(seed)
    start = time.time()
    tokenizer = build_text_tokenizer(grammar)
    tokenizer.save_pretrained(out / "tokenizer")
    sample = scene_sampler(grammar)
    info = {}
    if init_vq is None:
        vq, info["crops"] = train_vq(sample, VQSpec(), steps=vq_steps, seed=seed)
    else:
        vq = load_vq(init_vq)
    vq, info["full"] = train_vq(
        sample,
        VQSpec(),
        steps=vq_full_steps,
        batch_size=16,
        crop=None,
        lr=1e-3,
        init=vq,
        reseed_dead_codes=False,
        seed=seed + 1,
    )
    vq.save_pretrained(out / "vq")
    plain_file_modes(out / "vq")  # safetensors writes its weights 0600
    quality = reconstruction_quality(vq, sample(256, random.Random(seed + 1)))
    quality["constraints_hold_after_reconstruction"] = reconstruction_accuracy(vq, grammar, seed=seed)
    report = {"vq": info, "reconstruction": quality, "text_vocab": len(tokenizer), "seconds": time.time() - start}
    (out / "tokenizers.json").write_text(json.dumps(report, indent=2))
    log.info("tokenizers written to %s: %s", out, report)
    return report


def reconstruction_accuracy(vq: JanusVQVAE, grammar: ShapesGrammar, n: int = 300, seed: int = 0) -> float:
    """Share of validation scenes whose VQ reconstruction still satisfies every prompt constraint.

    The ceiling for any model that generates through this tokenizer.
    """
    from ...model.image_tokens import decode_codes, encode_codes
    from .rewards import all_constraints_hold

    rng = random.Random(f"recon-{seed}")
    prompts, images = [], []
    for prompt in grammar.prompts("val", n):
        scene = try_layout_scene(prompt.meaning, rng)
        if scene is not None:
            images.append(scene.image())
            prompts.append(prompt)
    reconstructed = decode_codes(vq, encode_codes(vq, images))
    return sum(all_constraints_hold(p, im) for p, im in zip(prompts, reconstructed)) / len(prompts)


def load_vq(directory: str | Path) -> JanusVQVAE:
    return JanusVQVAE.from_pretrained(str(directory)).eval()


SHAPES_GUIDANCE = 3.0  # the CFG weight the shapes model is evaluated (and best) at; saved as its preference
SHAPES_MODEL = dict(
    hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=4, intermediate_size=512, max_position_embeddings=1024
)


def shapes_janus(tokenizer, vq: JanusVQVAE, *, seed: int = 0, **sizes):
    """A fresh Janus sized for the shapes world, with the trained VQ inside and frozen."""
    import torch.nn.functional as F

    from ...model.tiny import TinyJanusSpec, build_tiny_janus

    vq_config = vq.config
    spec = TinyJanusSpec(
        **{**SHAPES_MODEL, **sizes},
        image_size=vq_config.num_patches * 2 ** (len(vq_config.channel_multiplier) - 1),
        vq_channels=vq_config.base_channels,
        vq_channel_multiplier=tuple(vq_config.channel_multiplier),
        vq_codebook_size=vq_config.num_embeddings,
        vq_embed_dim=vq_config.embed_dim,
        vq_latent_channels=vq_config.latent_channels,
        vq_res_blocks=vq_config.num_res_blocks,
    )
    model, tokenizer = build_tiny_janus(tokenizer, spec, seed=seed)
    model.model.vqmodel.load_state_dict(vq.state_dict())
    with torch.no_grad():  # image-token inputs start from the codes' own (normalised) vectors
        model.model.generation_embeddings.weight.copy_(F.normalize(vq.quantize.embedding.weight, dim=-1))
    return model, tokenizer


def sft_records(grammar: ShapesGrammar, tokenizer, vq: JanusVQVAE, n: int, *, seed: int = 0):
    """n (prompt, ground-truth chain, image codes) records from training prompts."""
    from ...model.image_tokens import encode_codes
    from ...model.tokens import SpecialTokenIds, encode_prompt
    from ...train.sft import SFTRecord

    ids = SpecialTokenIds.from_tokenizer(tokenizer)
    rng = random.Random(f"sft-{seed}")
    pool = grammar.prompts("train", max(2000, n // 4))
    prompts, chains, images = [], [], []
    while len(prompts) < n:
        prompt = rng.choice(pool)
        scene = try_layout_scene(prompt.meaning, rng)
        if scene is None:
            continue
        prompts.append(prompt.text)
        chains.append(scene.chain())
        images.append(scene.image())
    codes = encode_codes(vq, images)
    return [
        SFTRecord(
            encode_prompt(tokenizer, p, ids.bos),
            tokenizer.encode(c, add_special_tokens=False) + [ids.begin_of_image],
            code.tolist(),
        )
        for p, c, code in zip(prompts, chains, codes)
    ]


def export_sft_records(out_dir: str | Path, n: int, *, seed: int = 0, split: str = "train") -> Path:
    """Rendered (prompt, ground-truth chain, image) records as the JSON-lines + PNG files that
    `gotr1 train sft` reads; returns the path of records.jsonl."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"export-{seed}")
    pool = ShapesGrammar(seed).prompts(split, max(2000, n // 4))
    with open(out / "records.jsonl", "w") as records:
        written = 0
        while written < n:
            prompt = rng.choice(pool)
            scene = try_layout_scene(prompt.meaning, rng)
            if scene is None:
                continue
            name = f"images/{written:06d}.png"
            scene.image().save(out / name)
            records.write(json.dumps({"prompt": prompt.text, "chain": scene.chain(), "image": name}) + "\n")
            written += 1
    return out / "records.jsonl"


def load_tokenizers(directory: str | Path):
    """(text tokenizer, VQ) from `build_tokenizers` output (tokenizer/ and vq/) or from a shapes
    checkpoint (its tokenizer and its frozen VQ), so a new model can share a shipped model's codes."""
    from transformers import AutoTokenizer

    directory = Path(directory)
    if (directory / "vq").is_dir() and (directory / "tokenizer").is_dir():
        return AutoTokenizer.from_pretrained(str(directory / "tokenizer")), load_vq(directory / "vq")
    if (directory / "config.json").is_file():
        from ...model.loading import load_janus

        bundle = load_janus(directory, device="cpu", dtype="float32")
        return bundle.tokenizer, bundle.model.model.vqmodel.eval()
    raise FileNotFoundError(
        f"{directory}: expected vq/ and tokenizer/ from `gotr1 shapes build-tokenizer`, or a shapes checkpoint"
    )


def pretrain(
    tokenizers_dir: str | Path,
    out_dir: str | Path,
    *,
    examples: int = 20000,
    seed: int = 0,
    sft=None,
    model_sizes: dict | None = None,
    device: str = "cpu",
) -> dict:
    """SFT a shapes-world Janus on rendered ground truth and save it (safetensors) to out_dir."""
    from ...model.loading import JanusBundle
    from ...model.tokens import SpecialTokenIds
    from ...train.sft import SFTConfig, train_sft

    sft = sft or SFTConfig()
    start = time.time()
    tokenizer, vq = load_tokenizers(tokenizers_dir)
    grammar = ShapesGrammar(seed)
    records = sft_records(grammar, tokenizer, vq, examples, seed=seed)
    log.info("built %d SFT records in %.0fs", len(records), time.time() - start)
    model, tokenizer = shapes_janus(tokenizer, vq, seed=seed, **(model_sizes or {}))
    ids = SpecialTokenIds.from_tokenizer(tokenizer)
    summary = train_sft(model.to(device), records, sft, pad=ids.pad)
    model.to("cpu")
    model.generation_config.guidance_scale = SHAPES_GUIDANCE
    bundle = JanusBundle(model, tokenizer, ids, source="shapes")
    bundle.save(out_dir)
    report = {
        "examples": len(records),
        "model_sizes": {**SHAPES_MODEL, **(model_sizes or {})},
        "mixed_precision": sft.mixed_precision,
        "device": str(device),
        "sft": summary,
        "seconds": time.time() - start,
    }
    (Path(out_dir) / "pretrain.json").write_text(json.dumps(report, indent=2))
    return report
