"""R_sem, prompt -> reasoning: does the chain plan everything the prompt asks for, faithfully?"""

from __future__ import annotations

from PIL import Image

from ..chain import ParsedChain
from .base import RewardResult
from .judged import JudgedReward, Questions


class SemanticReward(JudgedReward):
    """The judge reads the prompt and the chain as prose with its object list (text only).

    A chain with neither text nor objects scores 0.0 without asking; a chain that is malformed
    is judged on what :func:`gotr1.chain.parse_chain` recovers.
    """

    name = "r_sem"

    def questions(self, prompt: str, chain: ParsedChain, image: Image.Image | None) -> RewardResult | Questions:
        names = [obj.name for obj in chain.objects if obj.name.strip()]
        if not chain.text.strip() and not names:
            return RewardResult(0.0, reason="empty chain")
        text = self.prompts.semantic_question(prompt, chain.text.strip(), names)
        return Questions([self.request(text)], lambda answers: self.score_from(answers[0]))
