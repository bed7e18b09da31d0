"""R_PI, prompt -> image: does the generated image show exactly what the prompt asks for?"""

from __future__ import annotations

from PIL import Image

from ..chain import ParsedChain
from .base import RewardResult
from .judge import judge_view
from .judged import JudgedReward, Questions


class ImagePromptReward(JudgedReward):
    """A strict compositional check of the image against the prompt; no image: missing (None)."""

    name = "r_pi"

    def questions(self, prompt: str, chain: ParsedChain, image: Image.Image | None) -> RewardResult | Questions:
        if image is None:
            return RewardResult(None, reason="missing image")
        request = self.request(self.prompts.image_question(prompt), [judge_view(image, self.image_pixels)])
        return Questions([request], lambda answers: self.score_from(answers[0]))
