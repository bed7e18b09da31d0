"""The machinery shared by the judge-scored rewards: plan questions, ask once per batch, read.

A reward plans, per sample, either a result it can give without the judge (an empty chain, a
missing image) or some questions plus how to turn their answers into a result. All questions of
the batch go to the judge in one ``ask`` call, so an OpenAI-compatible backend runs them
concurrently and a local one batches them.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..chain import ParsedChain, parse_chain
from .base import Reward, RewardResult, prompt_text
from .judge import DEFAULT_JUDGE_PIXELS, Judge, JudgeAnswer, JudgeRequest
from .parsing import read_score
from .prompts import SCORE_SCHEMA, JudgePrompts

__all__ = ["JudgedReward", "Questions"]


@dataclass
class Questions:
    """What one sample asks, and how its answers become a result."""

    requests: list[JudgeRequest]
    conclude: Callable[[list[JudgeAnswer]], RewardResult]


class JudgedReward(Reward):
    """Base of the four judge rewards; subclasses implement :meth:`questions`."""

    def __init__(
        self,
        judge: Judge,
        *,
        prompts: JudgePrompts | None = None,
        image_pixels: int = DEFAULT_JUDGE_PIXELS,
        max_tokens: int = 256,
    ) -> None:
        self.judge = judge
        self.prompts = prompts or JudgePrompts()
        self.image_pixels = image_pixels
        self.max_tokens = max_tokens

    def __repr__(self) -> str:
        return f"{type(self).__name__}(judge={self.judge!r})"

    @abstractmethod
    def questions(self, prompt: str, chain: ParsedChain, image: Image.Image | None) -> RewardResult | Questions:
        """A result without asking, or the questions to ask about one sample."""

    def evaluate_batch(
        self, prompts: Sequence[Any], chains: Sequence[str], images: Sequence[Image.Image | None]
    ) -> list[RewardResult]:
        plans = [self.questions(prompt_text(p), parse_chain(c), i) for p, c, i in zip(prompts, chains, images)]
        requests = [r for plan in plans if isinstance(plan, Questions) for r in plan.requests]
        answers = iter(self.judge.ask(requests) if requests else [])
        results = []
        for plan in plans:
            if isinstance(plan, Questions):
                plan = plan.conclude([next(answers) for _ in plan.requests])
            results.append(plan)
        return results

    # --- helpers for subclasses -----------------------------------------------------------------

    def request(
        self, text: str, images: Sequence[Image.Image] = (), schema: dict | None = SCORE_SCHEMA
    ) -> JudgeRequest:
        return JudgeRequest(text, tuple(images), system=self.prompts.system, max_tokens=self.max_tokens, schema=schema)

    def failed(self, answer: JudgeAnswer) -> RewardResult | None:
        """A missing result if the judge did not answer, else None."""
        if answer.ok:
            return None
        return RewardResult(None, reason=f"judge failed: {answer.error}", raw=[])

    def unreadable(self, answer: JudgeAnswer, why: str) -> RewardResult:
        self.judge.stats.unreadable += 1
        return RewardResult(None, reason=f"judge answer unreadable: {why}", raw=[answer.text or ""])

    def score_from(self, answer: JudgeAnswer) -> RewardResult:
        """The 0..10 score in one answer, normalised; missing when absent."""
        failed = self.failed(answer)
        if failed is not None:
            return failed
        reading = read_score(answer.text)
        if reading.value is None:
            return self.unreadable(answer, reading.error or "no score")
        details = {}
        if reading.clamped:
            self.judge.stats.clamped += 1
            details["clamped"] = True
        return RewardResult(reading.value, reason="judged", raw=[answer.text or ""], details=details)
