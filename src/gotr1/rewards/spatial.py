"""R_spa, prompt -> layout: is the planned arrangement the one the prompt describes?

As in GoT-R1, the judge does not read coordinates: the plan's boxes are drawn with their names on
a blank canvas and the judge looks at that picture (the paper's ablation: 2D-spatial .2674 drawn vs
.2158 as text).
"""

from __future__ import annotations

import math

from PIL import Image

from ..chain import ParsedChain
from ..layout import draw_plan
from .base import RewardResult
from .judge import PATCH_MULTIPLE
from .judged import JudgedReward, Questions


class SpatialReward(JudgedReward):
    """Scores the drawn plan; a chain without any usable box has no layout and scores 0.0."""

    name = "r_spa"

    def canvas_size(self) -> int:
        side = math.sqrt(self.image_pixels)
        return max(PATCH_MULTIPLE, round(side / PATCH_MULTIPLE) * PATCH_MULTIPLE)

    def questions(self, prompt: str, chain: ParsedChain, image: Image.Image | None) -> RewardResult | Questions:
        boxed = [obj for obj in chain.objects if obj.box is not None]
        if not boxed:
            return RewardResult(0.0, reason="no boxes in chain")
        canvas = draw_plan(boxed, self.canvas_size())
        request = self.request(self.prompts.spatial_question(prompt), [canvas])
        return Questions([request], lambda answers: self.score_from(answers[0]))
