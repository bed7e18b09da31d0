"""The shapes world's text tokenizer: byte-level BPE trained on its own prompts and chains.

Byte-level so decoding gives back the exact text (chains are parsed from decoded text); trained on
the world's language so words and grid numbers are single tokens and sequences stay short.
"""

from __future__ import annotations

import random

from ...chain import BEGIN_OF_IMAGE, LAYOUT_TOKENS
from ...model.tiny import BOS_TOKEN, EOS_TOKEN, train_byte_level_bpe
from ...model.tokens import END_OF_IMAGE, IMAGE_PLACEHOLDER, PAD_TOKEN, format_user_turn, prepare_tokenizer
from .grammar import ShapesGrammar
from .render import try_layout_scene


def corpus(grammar: ShapesGrammar, n: int = 4000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for split in ("train", "heldout"):
        for prompt in grammar.prompts(split, n // 2):
            texts.append(format_user_turn(prompt.text))
            scene = try_layout_scene(prompt.meaning, rng)
            if scene is not None:
                texts.append(scene.chain())
    texts += [f"({i},{j})" for i in range(0, 1001) for j in (i, 1000 - i)]  # every grid number
    return texts


def build_text_tokenizer(grammar: ShapesGrammar, vocab_size: int = 1400):
    from transformers import PreTrainedTokenizerFast

    specials = [BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, IMAGE_PLACEHOLDER, BEGIN_OF_IMAGE, END_OF_IMAGE, *LAYOUT_TOKENS]
    # ByteLevel's regex splits digits from words, so every grid number is a token of its own, never glued to a bracket.
    tok = train_byte_level_bpe(corpus(grammar), vocab_size, specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN, model_max_length=1024
    )
    # The layout tokens were registered as specials of the BPE model; make them known to
    # transformers as ordinary added tokens, as GoT-R1 does.
    prepare_tokenizer(tokenizer)
    return tokenizer
