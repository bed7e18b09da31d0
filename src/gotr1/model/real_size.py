"""Janus-Pro-1B / -7B with their published configurations and random weights, built offline.

For benchmarks and memory checks at real scale without downloading a checkpoint: the model is
transformers' `JanusForConditionalGeneration` with the configuration the hub's converted checkpoints
(deepseek-community/Janus-Pro-1B, -7B) carry, so shapes, parameter counts, KV-cache sizes and FLOPs
are the real ones; only the weights (random) and the tokenizer (the project's own) differ.

The tokenizer is `model.tiny`'s byte-level BPE, padded with never-produced filler tokens to the real
vocabulary size (102400), so every id the model can emit decodes and the GoT-R1 layout tokens sit at
the top of the vocabulary. Its special-token ids differ from DeepSeek's (they are read from the
tokenizer, as everywhere in the project).

Weights are created directly in the target dtype on the target device: the model is laid out on the
meta device, allocated with `to_empty` and then initialised by transformers' own `_init_weights`
(seeded), so a 7B model in bfloat16 needs ~15 GiB, never a float32 copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from tokenizers import AddedToken, models
from transformers import JanusConfig, JanusForConditionalGeneration, PreTrainedTokenizerFast

from ..chain import BEGIN_OF_IMAGE, LAYOUT_TOKENS
from .loading import JanusBundle, _resolve_dtype
from .tiny import BOS_TOKEN, EOS_TOKEN, build_tiny_tokenizer, janus_config
from .tokens import PAD_TOKEN, SpecialTokenIds, janus_generation_config

# deepseek-ai/Janus-Pro-{1B,7B} config.json: language_config.vocab_size (DeepSeek-LLM's 102400 rows;
# the tokenizer itself has ~100k tokens, the rest are padding rows).
REAL_VOCAB_SIZE = 102400
# transformers' convert_janus_weights_to_hf.py sets generation_config.guidance_scale = 5 on the converted checkpoints.
PUBLISHED_CFG_WEIGHT = 5.0
# GroupNorm(32) in the VQ model needs channel counts that are multiples of 32.
_MIN_VQ_CHANNELS = 32


@dataclass(frozen=True)
class JanusProSize:
    """What distinguishes the two Janus-Pro sizes: the language model (everything else is shared).

    Numbers from deepseek-ai/Janus-Pro-{1B,7B} config.json `language_config`, which transformers'
    convert_janus_weights_to_hf.py copies into the converted checkpoints' LlamaConfig. The aligner,
    generation aligner and generation head widths (`aligner_config.params.n_embed`,
    `gen_aligner_config.params.n_embed`, `gen_head_config.params.{n_embed,image_token_embed}`) equal
    the language model's hidden size in both releases.
    """

    name: str
    hub_id: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    num_kv_heads: int | None = None  # None: as many as attention heads (no GQA in DeepSeek-LLM)
    vocab_size: int = REAL_VOCAB_SIZE
    max_position_embeddings: int = 16384  # language_config.max_position_embeddings

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


JANUS_PRO_SIZES: dict[str, JanusProSize] = {
    "janus-pro-1b": JanusProSize(
        name="janus-pro-1b",
        hub_id="deepseek-community/Janus-Pro-1B",
        hidden_size=2048,
        num_layers=24,
        num_heads=16,
        intermediate_size=5632,
    ),
    "janus-pro-7b": JanusProSize(
        name="janus-pro-7b",
        hub_id="deepseek-community/Janus-Pro-7B",
        hidden_size=4096,
        num_layers=30,
        num_heads=32,
        intermediate_size=11008,
    ),
}

# Shared by both sizes. Vision: SigLIP-L/16 at 384 px = transformers' JanusVisionConfig defaults (documented
# against deepseek-community/Janus-Pro-1B); the conversion script sets only image_size (384, from
# vision_config.params.image_size), projection_dim and depth (aligner_config.params: n_embed, depth 2).
VISION = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=384,
    patch_size=16,  # 384 / 16 = 24 x 24 = 576 patches, which is also the VQ token grid
    mlp_ratio=4.0,
    layer_norm_eps=1e-6,
    depth=2,
)
# VQ: LlamaGen's VQ-16 (`gen_vision_config.cls`), = JanusVQVAEConfig defaults: base 128 channels,
# multipliers (1, 1, 2, 2, 4) (four halvings: 384 px -> 24 x 24 = 576 tokens), 256 latent channels,
# 2 res blocks; embed_dim 8 (gen_vision_config.params.n_embed) and 16384 codes (image_token_size);
# generation aligner depth 2 (gen_aligner_config.params.depth).
VQ = dict(
    embed_dim=8,
    num_embeddings=16384,
    latent_channels=256,
    base_channels=128,
    channel_multiplier=[1, 1, 2, 2, 4],
    num_res_blocks=2,
    num_hidden_layers=2,
)
# LlamaConfig defaults, which the conversion script leaves in place (it copies only the keys above):
# DeepSeek-LLM's rope theta 10000, RMSNorm eps 1e-6, SiLU MLP, no biases.
TEXT_DEFAULTS = dict(
    hidden_act="silu",
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    attention_bias=False,
    mlp_bias=False,
)


def sizes() -> list[str]:
    return sorted(JANUS_PRO_SIZES)


def _size(size: str) -> JanusProSize:
    try:
        return JANUS_PRO_SIZES[size.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown Janus-Pro size {size!r}; use one of: {', '.join(sizes())}") from None


def build_real_size_tokenizer(vocab_size: int = REAL_VOCAB_SIZE):
    """The project's byte-level BPE tokenizer padded to `vocab_size` tokens, GoT-R1's layout tokens last.

    Filler tokens `<|reserved_N|>` are in the BPE vocabulary without merges, so encoding never produces
    them but every id below `vocab_size` decodes. Built at the `tokenizers` level (adding 100k tokens
    through transformers would take seconds); takes well under a second.
    """
    base = build_tiny_tokenizer(add_layout_tokens=False)
    backend = base.backend_tokenizer
    bpe = json.loads(backend.to_str())["model"]
    vocab = dict(bpe["vocab"])
    fill_to = vocab_size - len(LAYOUT_TOKENS)
    if fill_to < len(vocab):
        raise ValueError(f"vocab_size {vocab_size} is too small for the base tokenizer ({len(vocab)} tokens)")
    vocab.update({f"<|reserved_{i}|>": i for i in range(len(vocab), fill_to)})
    backend.model = models.BPE(vocab=vocab, merges=[tuple(m) for m in bpe["merges"]])
    # As `prepare_tokenizer` adds them: ordinary (non-special) added tokens, after the vocabulary.
    backend.add_tokens([AddedToken(t, special=False, normalized=True) for t in LAYOUT_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=16384,  # the released tokenizers' model_max_length
    )
    return tokenizer


def _special_ids(tokenizer) -> SpecialTokenIds:
    """`SpecialTokenIds.from_tokenizer` without its `get_vocab()` (a 0.2 s dict of 100k entries)."""
    pad, boi = tokenizer.convert_tokens_to_ids([PAD_TOKEN, BEGIN_OF_IMAGE])
    return SpecialTokenIds(bos=tokenizer.bos_token_id, pad=pad, begin_of_image=boi, eos=tokenizer.eos_token_id)


def real_size_config(size: str, tokenizer=None, *, layers: int | None = None, shrink: int = 1) -> JanusConfig:
    """The published JanusConfig of `size`, with the special-token ids of `tokenizer`.

    layers: depth of the language model (default: the published depth).
    shrink: divide every width (language model, vision tower, VQ channels, aligners, heads) by this
        factor, keeping head sizes, depths, vocabulary, codebook and the 24 x 24 image grid: a small
        model with the real structure, for tests. VQ channels stay >= 32 (GroupNorm).
    """
    spec = _size(size)
    tokenizer = tokenizer if tokenizer is not None else build_real_size_tokenizer()
    if layers is not None and layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    heads = (spec.num_heads, VISION["num_attention_heads"])
    if shrink < 1 or any(h % shrink for h in heads):
        raise ValueError(f"shrink must divide the head counts {heads} of {spec.name}, got {shrink}")
    ids = _special_ids(tokenizer)
    hidden = spec.hidden_size // shrink
    n_heads = spec.num_heads // shrink
    text_config = dict(
        vocab_size=spec.vocab_size,
        hidden_size=hidden,
        intermediate_size=spec.intermediate_size // shrink,
        num_hidden_layers=layers or spec.num_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=(spec.num_kv_heads or spec.num_heads) // shrink,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_position_embeddings,
        **TEXT_DEFAULTS,
    )
    vision_config = dict(VISION)
    vision_config.update(
        hidden_size=VISION["hidden_size"] // shrink,
        num_attention_heads=VISION["num_attention_heads"] // shrink,
        projection_dim=hidden,
        num_image_tokens=(VISION["image_size"] // VISION["patch_size"]) ** 2,
    )
    vq_config = dict(VQ)
    vq_config.update(
        base_channels=max(_MIN_VQ_CHANNELS, VQ["base_channels"] // shrink),
        latent_channels=max(_MIN_VQ_CHANNELS, VQ["latent_channels"] // shrink),
        projection_dim=hidden,
        image_token_embed_dim=hidden,
    )
    return janus_config(tokenizer, ids, text_config, vision_config, vq_config)


def _layout(config: JanusConfig, dtype: torch.dtype) -> JanusForConditionalGeneration:
    """The model on the meta device, its tensors already in `dtype`: no memory, well under a second."""
    with torch.device("meta"):
        return JanusForConditionalGeneration._from_config(config, dtype=dtype)


def _allocate(model: torch.nn.Module, device: torch.device) -> None:
    """Give a meta model uninitialised storage on `device`, in the dtypes it was laid out with."""
    model.to_empty(device=device)


def _initialize(model: JanusForConditionalGeneration, seed: int) -> None:
    """transformers' own init (normal(0, 0.02) weights, unit norms, RoPE and position buffers), seeded."""
    device = next(model.parameters()).device
    devices = []  # fork_rng saves and restores the CPU generator always, a CUDA one only when named
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model.initialize_weights()


def build_random_janus(
    size: str,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    layers: int | None = None,
    shrink: int = 1,
    tokenizer=None,
) -> JanusBundle:
    """Janus-Pro-1B or -7B (`size` "janus-pro-1b" | "janus-pro-7b") with random weights, in eval mode.

    dtype: as `load_janus` takes it (default bfloat16 on CUDA, float32 elsewhere).
    device: default CUDA when available, else CPU; "meta" lays the model out without memory (shapes
        and parameter counts only).
    layers / shrink: see `real_size_config`.
    """
    spec = _size(size)
    tokenizer = tokenizer if tokenizer is not None else build_real_size_tokenizer()
    target = (
        torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    torch_dtype = _resolve_dtype(dtype, target)
    config = real_size_config(spec.name, tokenizer, layers=layers, shrink=shrink)
    model = _layout(config, torch_dtype)
    if target.type != "meta":
        _allocate(model, target)
        _initialize(model, seed)
    ids = _special_ids(tokenizer)
    model.generation_config = janus_generation_config(ids, config.vision_config.num_image_tokens, PUBLISHED_CFG_WEIGHT)
    return JanusBundle(model=model.eval(), tokenizer=tokenizer, ids=ids, source=f"random:{spec.name}", layout="random")


def parameter_counts(model: JanusForConditionalGeneration) -> dict[str, int]:
    """Parameters per part of a Janus model, and their total.

    language_model: token embeddings, decoder layers, final norm; lm_head: the text output projection;
    vision: the understanding encoder (SigLIP) and its aligner; vq: the image tokenizer (encoder,
    codebook, decoder); generation: image-token embeddings, generation aligner and head.
    """
    inner = model.model
    parts = {
        "language_model": [inner.language_model],
        "lm_head": [model.lm_head],
        "vision": [inner.vision_model, inner.aligner],
        "vq": [inner.vqmodel],
        "generation": [inner.generation_embeddings, inner.generation_aligner, inner.generation_head],
    }
    counts = {name: sum(p.numel() for m in modules for p in m.parameters()) for name, modules in parts.items()}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
