"""Tiny Janus models and tokenizers built offline, for tests, benchmarks and the no-download default.

They use transformers' own Janus classes with small configs, so every code path (loader, sampler,
trainer) is the one real checkpoints take; only the sizes differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    JanusConfig,
    JanusForConditionalGeneration,
    PreTrainedTokenizerFast,
)

from ..chain import BEGIN_OF_IMAGE
from .tokens import (
    END_OF_IMAGE,
    IMAGE_PLACEHOLDER,
    PAD_TOKEN,
    SpecialTokenIds,
    janus_generation_config,
    prepare_tokenizer,
)

BOS_TOKEN = "<｜begin▁of▁sentence｜>"
EOS_TOKEN = "<｜end▁of▁sentence｜>"

_DEFAULT_CORPUS = (
    "Follow the caption to generate an image through a chain of thought process: ",
    "<|User|>: <|Assistant|>: a red circle to the left of a blue square. ",
    "A small green triangle is above a large yellow star, and two purple hearts sit below it. ",
    "The scene shows (0,0),(1000,1000) (12,345),(678,901) boxes 0 1 2 3 4 5 6 7 8 9 , . ( ) ",
    "A vibrant still life painting featuring a bouquet of red tulips in a yellow vase. ",
)


def train_byte_level_bpe(texts: list[str], vocab_size: int, specials: list[str]) -> Tokenizer:
    """A byte-level BPE (any text encodes, and decodes back exactly) trained on `texts`, `specials` its first
    ids. Its pre-tokenizer's regex splits digits from letters, so numbers never merge into words."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def build_tiny_tokenizer(
    corpus: tuple[str, ...] | list[str] = _DEFAULT_CORPUS, vocab_size: int = 320, *, add_layout_tokens: bool = True
):
    """A byte-level BPE tokenizer with Janus' special tokens (and GoT-R1's layout tokens).

    Byte-level, so it encodes any text (digits, punctuation, unicode) like DeepSeek's tokenizer does.
    Without layout tokens it looks like a released checkpoint's tokenizer before GoT-R1's additions.
    """
    specials = [BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, IMAGE_PLACEHOLDER, BEGIN_OF_IMAGE, END_OF_IMAGE]
    tok = train_byte_level_bpe(list(corpus) * 4, vocab_size, specials)
    bos_id = tok.token_to_id(BOS_TOKEN)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A $B", special_tokens=[(BOS_TOKEN, bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=4096,
    )
    if add_layout_tokens:
        prepare_tokenizer(tokenizer)
    return tokenizer


@dataclass
class TinyJanusSpec:
    """Sizes of a tiny Janus; the defaults make a model of ~0.5M parameters with 4x4 image tokens."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    image_size: int = 16  # pixels of a generated image
    vq_channels: int = 32  # GroupNorm(32) needs multiples of 32
    vq_channel_multiplier: tuple[int, ...] = (1, 1, 2)  # len-1 halvings: 16 px -> 4x4 tokens
    vq_codebook_size: int = 64
    vq_embed_dim: int = 8
    vq_latent_channels: int = 32
    vq_res_blocks: int = 1
    vision_hidden: int = 32
    vision_layers: int = 1
    vision_heads: int = 2
    max_position_embeddings: int = 2048

    @property
    def image_grid(self) -> int:
        return self.image_size // 2 ** (len(self.vq_channel_multiplier) - 1)


def janus_config(tokenizer, ids: SpecialTokenIds, text: dict, vision: dict, vq: dict) -> JanusConfig:
    """A JanusConfig around a Llama language model (`text`: its sizes) with `ids` as its special tokens,
    `tokenizer`'s image placeholder, and an lm_head kept apart from the embeddings, as the released
    checkpoints store it."""
    text_config = dict(
        model_type="llama",
        **text,
        bos_token_id=ids.bos,
        eos_token_id=ids.eos,
        pad_token_id=ids.pad,
        tie_word_embeddings=False,
    )
    return JanusConfig(
        text_config=text_config,
        vision_config=vision,
        vq_config=vq,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER),
        tie_word_embeddings=False,
    )


def tiny_janus_config(tokenizer, spec: TinyJanusSpec | None = None) -> JanusConfig:
    spec = spec or TinyJanusSpec()
    ids = SpecialTokenIds.from_tokenizer(tokenizer)
    vocab_size = len(tokenizer)
    grid = spec.image_grid
    # The vision tower's patch grid must equal the VQ token grid: transformers derives the image-token
    # grid (vq_config.num_patches) from vision image_size // patch_size.
    vision_patch = 2
    text_config = dict(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
    )
    vision_config = dict(
        hidden_size=spec.vision_hidden,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads,
        image_size=grid * vision_patch,
        patch_size=vision_patch,
        projection_dim=spec.hidden_size,
        depth=2,
        num_image_tokens=grid * grid,
    )
    vq_config = dict(
        embed_dim=spec.vq_embed_dim,
        num_embeddings=spec.vq_codebook_size,
        latent_channels=spec.vq_latent_channels,
        base_channels=spec.vq_channels,
        channel_multiplier=list(spec.vq_channel_multiplier),
        num_res_blocks=spec.vq_res_blocks,
        projection_dim=spec.hidden_size,
        image_token_embed_dim=spec.hidden_size,
        num_hidden_layers=2,
    )
    return janus_config(tokenizer, ids, text_config, vision_config, vq_config)


def build_tiny_janus(tokenizer=None, spec: TinyJanusSpec | None = None, seed: int = 0):
    """A randomly initialised tiny Janus (float32, eval mode) and its tokenizer."""
    tokenizer = tokenizer if tokenizer is not None else build_tiny_tokenizer()
    config = tiny_janus_config(tokenizer, spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = JanusForConditionalGeneration(config)
    ids = SpecialTokenIds.from_tokenizer(tokenizer)
    model.generation_config = janus_generation_config(ids, config.vision_config.num_image_tokens)
    return model.eval(), tokenizer
