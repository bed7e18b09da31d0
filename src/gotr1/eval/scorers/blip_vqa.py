"""BLIP-VQA's P(yes) as T2I-CompBench's BLIP_vqa.py computes it, on transformers' BLIP.

The official code (BLIP's ``vqa_prob``) differs from what ``BlipForQuestionAnswering.generate`` does in two
places, both reproduced here by driving the model's three parts (vision model, text encoder, text decoder)
directly:

- the question's first token, ``[CLS]``, is replaced by ``[ENC]`` before the text encoder (BLIP's tokenizer
  adds ``[DEC]`` and then ``[ENC]`` after BERT's vocabulary); transformers leaves ``[CLS]`` in place;
- only the answer decoder's first step is read, from ``[DEC]`` (the text config's ``bos_token_id``, which
  transformers also starts from), and the score is ``P(yes) / (P(yes) + P(no))`` of its softmax.

Images are resized to 480 x 480 (bicubic, PIL, as torchvision's ``Resize`` on a PIL image) and normalised with
the CLIP mean/std, as the official test transform does. transformers' conversion script loaded the official
480 px VQA checkpoint into a 384 px BLIP (its position embeddings interpolated down to 24 x 24 patches), so here
they are interpolated back (bicubic, as BLIP's own ``interpolate_pos_embed``) to 30 x 30: close to, but not bit
for bit, the official embeddings. That script also used plain ``bert-base-uncased`` as the tokenizer, which has
no ``[DEC]``/``[ENC]`` tokens, hence the ids from the config (``bos_token_id``) and from BLIP's layout.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from ..records import ScorerError
from .common import CLIP_MEAN, CLIP_STD, ModelWrapper, normalisation

log = logging.getLogger(__name__)

__all__ = ["BlipVqa", "OFFICIAL_IDS"]

# The ids BLIP_vqa.py hard-codes for its (BERT bert-base-uncased + [DEC] + [ENC]) vocabulary of 30524.
OFFICIAL_IDS = {"yes": 2748, "no": 2053, "[DEC]": 30522, "[ENC]": 30523}
_OFFICIAL_VOCAB_SIZE = 30524


class BlipVqa(ModelWrapper):
    """P(yes) of BLIP-VQA for (image, question) pairs, batched over images; each image is encoded once and
    shared by all its questions."""

    DEFAULT_ID = "Salesforce/blip-vqa-capfilt-large"
    WHAT = "BLIP-VQA model"
    NAME = "blip"
    IMAGE_SIZE = 480
    MAX_QUESTION_TOKENS = 35  # the official tokenizer call: truncation=True, max_length=35

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        image_size: int = IMAGE_SIZE,
        batch_size: int = 8,
        model_id: str | None = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, model_id=model_id)
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.mean, self.std = normalisation(getattr(processor, "image_processor", None), CLIP_MEAN, CLIP_STD)
        self.image_size = image_size
        text_config = model.config.text_config
        self.yes_id = self._token_id("yes")
        self.no_id = self._token_id("no")
        self.dec_id = int(text_config.bos_token_id)
        self.enc_id = self._enc_token_id(text_config)
        if int(text_config.vocab_size) == _OFFICIAL_VOCAB_SIZE:
            got = {"yes": self.yes_id, "no": self.no_id, "[DEC]": self.dec_id, "[ENC]": self.enc_id}
            if got != OFFICIAL_IDS:
                raise ScorerError(f"BLIP {self.model_id}: token ids {got} differ from the official {OFFICIAL_IDS}")

    @staticmethod
    def auto_classes() -> tuple[Any, Any]:
        from transformers import AutoProcessor, BlipForQuestionAnswering  # noqa: PLC0415 (heavy import)

        return BlipForQuestionAnswering, AutoProcessor

    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ScorerError(f"BLIP {self.model_id}: the tokenizer has no {token!r} token")
        return int(token_id)

    def _enc_token_id(self, text_config: Any) -> int:
        """``[ENC]`` from the tokenizer when it knows it; else where BLIP's tokenizer puts it, right after
        ``[DEC]`` (its two added tokens, in that order)."""
        token_id = self.tokenizer.convert_tokens_to_ids("[ENC]")
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            token_id = int(text_config.bos_token_id) + 1
        if not 0 <= int(token_id) < int(text_config.vocab_size):
            raise ScorerError(f"BLIP {self.model_id}: no [ENC] token in a vocabulary of {text_config.vocab_size}")
        return int(token_id)

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The official test transform: Resize((480, 480), BICUBIC) on the PIL image, ToTensor, Normalize."""
        size = (self.image_size, self.image_size)
        resized = [im.convert("RGB").resize(size, Image.Resampling.BICUBIC) for im in images]
        return self.normalized(resized, self.mean, self.std)

    def question_inputs(self, questions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids with ``[ENC]`` in place of ``[CLS]``, and the attention mask."""
        encoded = self.tokenizer(
            list(questions),
            padding="longest",
            truncation=True,
            max_length=self.MAX_QUESTION_TOKENS,
            return_tensors="pt",
        )
        input_ids = encoded["input_ids"].clone()
        input_ids[:, 0] = self.enc_id
        return input_ids.to(self.device), encoded["attention_mask"].to(self.device)

    @torch.inference_mode()
    def yes_probabilities(self, images: Sequence[Image.Image], questions: Sequence[Sequence[str]]) -> list[list[float]]:
        """For each image, P(yes) / (P(yes) + P(no)) of each of its questions (already cleaned, e.g.
        ``"a green bench?"``)."""
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images but {len(questions)} question lists")
        out: list[list[float]] = [[] for _ in images]
        vision_size = self.model.config.vision_config.image_size
        for start in range(0, len(images), self.batch_size):
            batch = range(start, min(start + self.batch_size, len(images)))
            pairs = [(i - start, q) for i in batch for q in questions[i]]
            if not pairs:
                continue
            image_embeds = self.model.vision_model(
                pixel_values=self.pixel_values([images[i] for i in batch]),
                interpolate_pos_encoding=self.image_size != vision_size,
            ).last_hidden_state
            owners = torch.tensor([owner for owner, _ in pairs], device=image_embeds.device)
            probabilities = self._first_step_yes(image_embeds.index_select(0, owners), [q for _, q in pairs])
            for (owner, _), p in zip(pairs, probabilities):
                out[start + owner].append(p)
        return out

    def _first_step_yes(self, image_embeds: torch.Tensor, questions: Sequence[str]) -> list[float]:
        input_ids, attention_mask = self.question_inputs(questions)
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        question_states = self.model.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
        ).last_hidden_state
        start_ids = torch.full((len(questions), 1), self.dec_id, dtype=torch.long, device=input_ids.device)
        logits = self.model.text_decoder(
            input_ids=start_ids,
            encoder_hidden_states=question_states,
            encoder_attention_mask=attention_mask,
        ).logits[:, 0, :]
        probs = torch.softmax(logits.float(), dim=-1)
        p_yes, p_no = probs[:, self.yes_id], probs[:, self.no_id]
        return (p_yes / (p_yes + p_no)).tolist()
