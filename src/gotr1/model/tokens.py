"""Special tokens, the user-turn template and tokenizer preparation.

GoT-R1 talks to Janus-Pro in DeepSeek's SFT chat format with an empty system prompt and adds four
layout tokens to the tokenizer. The ids of the pad and image tokens differ between checkpoints
(100002 for Janus-Pro-1B, 100015 for -7B), so they are always read from the tokenizer, never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import GenerationConfig

from ..chain import BEGIN_OF_IMAGE, LAYOUT_TOKENS

PAD_TOKEN = "<｜▁pad▁｜>"
IMAGE_PLACEHOLDER = "<image_placeholder>"
END_OF_IMAGE = "<end_of_image>"

INSTRUCTION = "Follow the caption to generate an image through a chain of thought process: {prompt}"
USER_ROLE = "<|User|>"
ASSISTANT_ROLE = "<|Assistant|>"


def format_user_turn(prompt: str, *, instruction: str = INSTRUCTION) -> str:
    """The text the model sees before it starts its reasoning chain."""
    content = instruction.format(prompt=prompt.strip()).strip()
    return f"{USER_ROLE}: {content}\n\n{ASSISTANT_ROLE}:"


@dataclass(frozen=True)
class SpecialTokenIds:
    """The ids the sampler needs, read from a tokenizer."""

    bos: int
    pad: int
    begin_of_image: int
    eos: int | None = None

    @classmethod
    def from_tokenizer(cls, tokenizer) -> SpecialTokenIds:
        vocab = tokenizer.get_vocab()
        boi = vocab.get(BEGIN_OF_IMAGE)
        if boi is None:
            raise ValueError(f"tokenizer has no {BEGIN_OF_IMAGE!r} token; is this a Janus tokenizer?")
        # Janus uses a dedicated pad token; its tokenizer's pad_token may be unset or differ.
        pad = vocab.get(PAD_TOKEN, tokenizer.pad_token_id)
        if pad is None:
            raise ValueError(f"tokenizer has neither {PAD_TOKEN!r} nor a pad_token")
        if tokenizer.bos_token_id is None:
            raise ValueError("tokenizer has no bos_token")
        return cls(bos=tokenizer.bos_token_id, pad=pad, begin_of_image=boi, eos=tokenizer.eos_token_id)


def prepare_tokenizer(tokenizer) -> list[int]:
    """Add what the GoT-R1 processor adds, in the same order, so token ids match its checkpoints.

    DeepSeek's processor adds `<image_placeholder>` (special) when missing; GoT-R1 then adds the four
    layout tokens as ordinary tokens. Returns the ids of the layout tokens.
    """
    vocab = tokenizer.get_vocab()
    if IMAGE_PLACEHOLDER not in vocab:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": [IMAGE_PLACEHOLDER]}, replace_extra_special_tokens=False
        )
    missing = [t for t in LAYOUT_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing)
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in LAYOUT_TOKENS]


def encode_prompt(tokenizer, prompt: str, bos_id: int, *, template: bool = True) -> list[int]:
    """Token ids of one prompt, always starting with exactly one BOS."""
    text = format_user_turn(prompt) if template else prompt
    # verbose=False: no "Token indices sequence length is longer than the specified maximum" line; gotr1
    # checks a prompt's length against the model's real context itself (and says so in one line).
    ids = tokenizer.encode(text, add_special_tokens=False, verbose=False)
    return [bos_id, *ids]


def janus_generation_config(
    ids: SpecialTokenIds, num_image_tokens: int, guidance_scale: float | None = None
) -> GenerationConfig:
    """What transformers' own `generate(generation_mode="image")` reads from a Janus checkpoint.

    guidance_scale: the checkpoint's preferred CFG weight, if it states one.
    """
    return GenerationConfig(
        bos_token_id=ids.bos,
        eos_token_id=ids.eos,
        pad_token_id=ids.pad,
        max_new_tokens=num_image_tokens,
        guidance_scale=guidance_scale,
        generation_kwargs={"boi_token_id": ids.begin_of_image},
    )
