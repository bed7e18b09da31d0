"""GoT-R1's rewards: the four judge-scored components, their combiners, and the judges behind them.

- :mod:`.judge` the judge interface; :mod:`.openai_judge` (vLLM and any OpenAI-compatible server),
  :mod:`.local_judge` (a transformers VLM), :mod:`.cache` (answers on disk).
- :mod:`.prompts` what the judge is asked; :mod:`.parsing` reading its answers.
- :mod:`.semantic` R_sem, :mod:`.spatial` R_spa, :mod:`.grounding` R_RI, :mod:`.image_prompt` R_PI.
- :mod:`.combine` product / mean_product / v2 / sum; :mod:`.scoring` the pipeline a trainer calls.
- :mod:`.detector` an offline YOLOv3-tiny grounder (optional extra).
"""

from .base import Reward, RewardResult
from .combine import COMBINERS, combine, mean_product_reward, product_reward
from .config import JudgeSettings, RewardSettings, build_judge, build_reward
from .grounding import GroundingReward, LocatorGroundingReward
from .image_prompt import ImagePromptReward
from .judge import Judge, JudgeAnswer, JudgeRequest, JudgeStats
from .openai_judge import OpenAIJudge, OpenAIJudgeConfig
from .scoring import RewardPipeline, RewardsUnavailable
from .semantic import SemanticReward
from .spatial import SpatialReward

__all__ = [
    "COMBINERS",
    "GroundingReward",
    "ImagePromptReward",
    "Judge",
    "JudgeAnswer",
    "JudgeRequest",
    "JudgeSettings",
    "JudgeStats",
    "LocatorGroundingReward",
    "OpenAIJudge",
    "OpenAIJudgeConfig",
    "Reward",
    "RewardPipeline",
    "RewardResult",
    "RewardSettings",
    "RewardsUnavailable",
    "SemanticReward",
    "SpatialReward",
    "build_judge",
    "build_reward",
    "combine",
    "mean_product_reward",
    "product_reward",
]
