"""DeepSeek's original Janus layout (used by the GoT-R1 release) -> transformers' Janus layout.

The original checkpoints (`config.json` with `model_type: multi_modality`) name presets rather than
sizes, and their module tree differs from transformers'. This module

* maps every original weight name to its transformers name (an explicit rule table, below);
* splits the vision tower's fused `qkv` projections into q/k/v;
* drops the two tensors transformers has no place for (the SigLIP attention-pooling head, which Janus
  never uses, and the VQ quantizer's codebook-usage counter);
* reads every width, depth, channel count and codebook size from the tensor shapes, using the preset
  name only for what no shape tells (the number of vision attention heads), so shrunken or custom
  checkpoints convert too.

Anything it cannot place is an error that lists the names: never silently random weights.

Key map (original -> transformers; `{i}`/`{j}` are indices carried over):

    language_model.model.*                         -> model.language_model.*
    language_model.lm_head.weight                  -> lm_head.weight
    gen_embed.weight                               -> model.generation_embeddings.weight
    gen_aligner.layers.0.*                         -> model.generation_aligner.fc1.*
    gen_aligner.layers.{2k}.*  (k >= 1)            -> model.generation_aligner.hidden_layers.{k-1}.*
    gen_head.output_mlp_projector.*                -> model.generation_head.proj_out.*
    gen_head.vision_head.*                         -> model.generation_head.vision_head.*
    gen_vision_model.quantize.embedding.weight     -> model.vqmodel.quantize.embedding.weight
    gen_vision_model.quantize.codebook_used        -> (dropped: usage statistics)
    gen_vision_model.{quant_conv,post_quant_conv}.* -> model.vqmodel.{same}.*
    gen_vision_model.{encoder,decoder}.{conv_in,norm_out,conv_out}.* -> model.vqmodel.{same}.*
    gen_vision_model.encoder.conv_blocks.{i}.res.{j}.*   -> model.vqmodel.encoder.down.{i}.block.{j}.*
    gen_vision_model.encoder.conv_blocks.{i}.attn.{j}.*  -> model.vqmodel.encoder.down.{i}.attn.{j}.*
    gen_vision_model.encoder.conv_blocks.{i}.downsample.* -> model.vqmodel.encoder.down.{i}.downsample.*
    gen_vision_model.decoder.conv_blocks.{i}.res.{j}.*   -> model.vqmodel.decoder.up.{i}.block.{j}.*
    gen_vision_model.decoder.conv_blocks.{i}.attn.{j}.*  -> model.vqmodel.decoder.up.{i}.attn.{j}.*
    gen_vision_model.decoder.conv_blocks.{i}.upsample.*  -> model.vqmodel.decoder.up.{i}.upsample.*
    gen_vision_model.{encoder,decoder}.mid.{0,1,2}.*     -> model.vqmodel.{same}.mid.{block_1,attn_1,block_2}.*
    vision_model.vision_tower.patch_embed.proj.*   -> model.vision_model.embeddings.patch_embedding.*
    vision_model.vision_tower.pos_embed [1,N,D]    -> model.vision_model.embeddings.position_embedding.weight [N,D]
    vision_model.vision_tower.blocks.{i}.norm1.*   -> model.vision_model.encoder.layers.{i}.layer_norm1.*
    vision_model.vision_tower.blocks.{i}.norm2.*   -> model.vision_model.encoder.layers.{i}.layer_norm2.*
    vision_model.vision_tower.blocks.{i}.attn.qkv.* -> ...layers.{i}.self_attn.{q_proj,k_proj,v_proj}.* (split in 3)
    vision_model.vision_tower.blocks.{i}.attn.proj.* -> ...layers.{i}.self_attn.projection_layer.*
    vision_model.vision_tower.blocks.{i}.mlp.{fc1,fc2}.* -> ...layers.{i}.mlp.{fc1,fc2}.*
    vision_model.vision_tower.norm.*               -> model.vision_model.post_layernorm.*
    vision_model.vision_tower.attn_pool.*          -> (dropped: Janus takes features before pooling)
    aligner.layers.0.*                             -> model.aligner.fc1.*
    aligner.layers.{2k}.*  (k >= 1)                -> model.aligner.hidden_layers.{k-1}.*
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from transformers import JanusConfig

# Attention heads of the SigLIP presets Janus names in `vision_config.params.model_name`.
VISION_PRESET_HEADS = {
    "siglip_large_patch16_384": 16,
    "siglip_so400m_patch14_384": 16,
    "siglip_base_patch16_224": 12,
}

_DROPPED = (
    re.compile(r"^gen_vision_model\.quantize\.codebook_used$"),
    re.compile(r"^vision_model\.vision_tower\.attn_pool\."),
)

_VQ_MID = {"0": "block_1", "1": "attn_1", "2": "block_2"}


def _mlp_layer(prefix_to: str, index: str) -> str:
    """Original MLP projectors are Sequential(Linear, GELU, Linear, ...): even indices are Linears."""
    i = int(index)
    if i % 2:
        raise KeyError(index)
    return f"{prefix_to}.fc1" if i == 0 else f"{prefix_to}.hidden_layers.{i // 2 - 1}"


def _vq_key(rest: str) -> str:
    part, _, tail = rest.partition(".")
    if part in ("quant_conv", "post_quant_conv") or rest == "quantize.embedding.weight":
        return f"model.vqmodel.{rest}"
    if part not in ("encoder", "decoder"):
        raise KeyError(rest)
    stage = {"encoder": "down", "decoder": "up"}[part]
    m = re.match(r"conv_blocks\.(\d+)\.(res|attn|downsample|upsample)\.(.+)$", tail)
    if m:
        level, kind, leaf = m.groups()
        kind = {"res": "block"}.get(kind, kind)
        return f"model.vqmodel.{part}.{stage}.{level}.{kind}.{leaf}"
    m = re.match(r"mid\.([012])\.(.+)$", tail)
    if m:
        return f"model.vqmodel.{part}.mid.{_VQ_MID[m.group(1)]}.{m.group(2)}"
    if tail.split(".")[0] in ("conv_in", "norm_out", "conv_out"):
        return f"model.vqmodel.{rest}"
    raise KeyError(rest)


def _vision_key(rest: str) -> str:
    base = "model.vision_model"
    if rest == "pos_embed":
        return f"{base}.embeddings.position_embedding.weight"
    if rest.startswith("patch_embed.proj."):
        return f"{base}.embeddings.patch_embedding.{rest.removeprefix('patch_embed.proj.')}"
    if rest.startswith("norm."):
        return f"{base}.post_layernorm.{rest.removeprefix('norm.')}"
    m = re.match(r"blocks\.(\d+)\.(.+)$", rest)
    if not m:
        raise KeyError(rest)
    layer, leaf = m.groups()
    leaf = re.sub(r"^norm([12])\.", r"layer_norm\1.", leaf)
    leaf = re.sub(r"^attn\.proj\.", "self_attn.projection_layer.", leaf)
    leaf = re.sub(r"^attn\.qkv\.", "self_attn.qkv.", leaf)
    if not re.match(r"(layer_norm[12]|self_attn\.(projection_layer|qkv)|mlp\.fc[12])\.(weight|bias)$", leaf):
        raise KeyError(rest)
    return f"{base}.encoder.layers.{layer}.{leaf}"


def map_original_key(key: str) -> str | None:
    """The transformers name of one original weight; None for tensors transformers has no place for.

    Fused vision `qkv` keys map to a `...self_attn.qkv.*` name that `convert_original_state_dict` splits.
    Raises KeyError for names outside the original layout.
    """
    if any(p.search(key) for p in _DROPPED):
        return None
    try:
        if key.startswith("language_model.model."):
            return "model.language_model." + key.removeprefix("language_model.model.")
        if key == "language_model.lm_head.weight":
            return "lm_head.weight"
        if key == "gen_embed.weight":
            return "model.generation_embeddings.weight"
        m = re.match(r"(gen_aligner|aligner)\.layers\.(\d+)\.(weight|bias)$", key)
        if m:
            target = {"gen_aligner": "model.generation_aligner", "aligner": "model.aligner"}[m.group(1)]
            return f"{_mlp_layer(target, m.group(2))}.{m.group(3)}"
        m = re.match(r"gen_head\.(output_mlp_projector|vision_head)\.(weight|bias)$", key)
        if m:
            leaf = {"output_mlp_projector": "proj_out", "vision_head": "vision_head"}[m.group(1)]
            return f"model.generation_head.{leaf}.{m.group(2)}"
        if key.startswith("gen_vision_model."):
            return _vq_key(key.removeprefix("gen_vision_model."))
        if key.startswith("vision_model.vision_tower."):
            return _vision_key(key.removeprefix("vision_model.vision_tower."))
    except KeyError:
        pass
    raise KeyError(key)


def convert_original_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and split / reshape where needed) every tensor; unknown names are one error listing all."""
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, tensor in state_dict.items():
        try:
            new_key = map_original_key(key)
        except KeyError:
            unknown.append(key)
            continue
        if new_key is None:
            continue
        if ".self_attn.qkv." in new_key:
            q, k, v = torch.chunk(tensor, 3, dim=0)
            for name, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                converted[new_key.replace(".qkv.", f".{name}.")] = part.contiguous()
        elif new_key.endswith("position_embedding.weight"):
            converted[new_key] = tensor.reshape(tensor.shape[-2], tensor.shape[-1])
        else:
            converted[new_key] = tensor
    if unknown:
        raise ValueError(
            f"{len(unknown)} weight(s) are not part of the original Janus layout: {', '.join(sorted(unknown)[:20])}"
            + (" ..." if len(unknown) > 20 else "")
        )
    return converted


def _count(shapes: Mapping[str, tuple[int, ...]], pattern: str) -> int:
    rx = re.compile(pattern)
    found = {m.group(1) for k in shapes if (m := rx.match(k))}
    return len(found)


def _linear_depth(shapes, prefix: str) -> int:
    return _count(shapes, rf"{re.escape(prefix)}\.layers\.(\d+)\.weight$")


def _require(shapes, key: str) -> tuple[int, ...]:
    if key not in shapes:
        raise ValueError(f"checkpoint is missing {key!r}, which the original Janus layout requires")
    return tuple(shapes[key])


def infer_transformers_config(
    original: Mapping,
    shapes: Mapping[str, tuple[int, ...]],
    *,
    image_token_id: int,
    pad_token_id: int | None = None,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
) -> JanusConfig:
    """A JanusConfig for an original-layout checkpoint, sizes read from tensor shapes.

    `original` is the checkpoint's config.json; `shapes` maps original weight names to shapes.
    """
    lang = dict(original.get("language_config") or {})
    # Text model.
    vocab, hidden = _require(shapes, "language_model.model.embed_tokens.weight")
    n_layers = _count(shapes, r"language_model\.model\.layers\.(\d+)\.")
    intermediate = _require(shapes, "language_model.model.layers.0.mlp.gate_proj.weight")[0]
    n_heads = int(lang.get("num_attention_heads", 0)) or None
    if n_heads is None:
        raise ValueError("config.json: language_config.num_attention_heads is required (no shape tells it)")
    head_dim = int(lang.get("head_dim") or hidden // n_heads)
    kv_heads = _require(shapes, "language_model.model.layers.0.self_attn.k_proj.weight")[0] // head_dim
    text_config = {k: v for k, v in lang.items() if k in _LLAMA_KEYS}
    text_config.update(
        model_type="llama",
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        tie_word_embeddings=False,
    )
    for name, value in (("pad_token_id", pad_token_id), ("bos_token_id", bos_token_id), ("eos_token_id", eos_token_id)):
        if value is not None:
            text_config[name] = value

    # Vision (understanding) tower: SigLIP ViT.
    vparams = dict((original.get("vision_config") or {}).get("params") or {})
    v_hidden, _, patch, _ = _require(shapes, "vision_model.vision_tower.patch_embed.proj.weight")
    n_pos = _require(shapes, "vision_model.vision_tower.pos_embed")[-2]
    grid = int(round(n_pos**0.5))
    if grid * grid != n_pos:
        raise ValueError(f"vision pos_embed has {n_pos} positions, not a square grid")
    v_heads = vparams.get("num_heads") or VISION_PRESET_HEADS.get(str(vparams.get("model_name", "")))
    if not v_heads:
        raise ValueError(
            f"config.json: vision_config.params.model_name {vparams.get('model_name')!r} is not a known preset; "
            "set vision_config.params.num_heads"
        )
    v_mlp = _require(shapes, "vision_model.vision_tower.blocks.0.mlp.fc1.weight")[0]
    aligner_out = _require(shapes, "aligner.layers.0.weight")[0]
    vision_config = dict(
        hidden_size=v_hidden,
        num_hidden_layers=_count(shapes, r"vision_model\.vision_tower\.blocks\.(\d+)\."),
        num_attention_heads=int(v_heads),
        image_size=grid * patch,
        patch_size=patch,
        mlp_ratio=v_mlp / v_hidden,
        projection_dim=aligner_out,
        depth=_linear_depth(shapes, "aligner"),
        num_image_tokens=grid * grid,
    )

    # Generation side: VQ tokenizer, generation embeddings / aligner / head.
    codebook, embed_dim = _require(shapes, "gen_vision_model.quantize.embedding.weight")
    base = _require(shapes, "gen_vision_model.encoder.conv_in.weight")[0]
    in_channels = _require(shapes, "gen_vision_model.encoder.conv_in.weight")[1]
    latent = _require(shapes, "gen_vision_model.quant_conv.weight")[1]
    n_levels = _count(shapes, r"gen_vision_model\.encoder\.conv_blocks\.(\d+)\.")
    multipliers = []
    for level in range(n_levels):
        out_ch = _require(shapes, f"gen_vision_model.encoder.conv_blocks.{level}.res.0.conv1.weight")[0]
        if out_ch % base:
            raise ValueError(f"VQ level {level} has {out_ch} channels, not a multiple of {base}")
        multipliers.append(out_ch // base)
    n_res = _count(shapes, r"gen_vision_model\.encoder\.conv_blocks\.0\.res\.(\d+)\.")
    proj_out_rows, proj_in = _require(shapes, "gen_head.output_mlp_projector.weight")
    aligner_rows = _require(shapes, "gen_aligner.layers.0.weight")[0]
    if proj_out_rows != aligner_rows:
        raise ValueError(
            f"generation head width {proj_out_rows} differs from generation aligner width {aligner_rows}; "
            "transformers' Janus stores both as vq_config.projection_dim"
        )
    head_rows = _require(shapes, "gen_head.vision_head.weight")[0]
    gen_embed_rows = _require(shapes, "gen_embed.weight")[0]
    if not head_rows == gen_embed_rows == codebook:
        raise ValueError(f"codebook sizes disagree: VQ {codebook}, gen_embed {gen_embed_rows}, gen_head {head_rows}")
    vq_config = dict(
        embed_dim=embed_dim,
        num_embeddings=codebook,
        latent_channels=latent,
        in_channels=in_channels,
        out_channels=_require(shapes, "gen_vision_model.decoder.conv_out.weight")[0],
        base_channels=base,
        channel_multiplier=multipliers,
        num_res_blocks=n_res,
        projection_dim=aligner_rows,
        image_token_embed_dim=proj_in,
        num_hidden_layers=_linear_depth(shapes, "gen_aligner"),
    )
    return JanusConfig(
        text_config=text_config,
        vision_config=vision_config,
        vq_config=vq_config,
        image_token_id=image_token_id,
        tie_word_embeddings=False,
    )


_LLAMA_KEYS = {
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "attention_bias",
    "mlp_bias",
    "initializer_range",
    "pretraining_tp",
}
