"""The shapes world as gotr1's registry sees it (entry point ``gotr1.suites: shapes``)."""

from __future__ import annotations

from pathlib import Path

from ...registry import Suite
from .benchmark import ShapesBenchmark, training_evaluation
from .grammar import ShapesGrammar
from .parse import read_prompt
from .rl import COMPONENTS, PROMPT_SETS, check_clear_of_evaluation, prompt_source

# The shipped checkpoints: the SFT model (gotr1 shapes pretrain) and GoT-R1 from it by GRPO
# (configs/shapes_grpo_shipped.yaml); each folder's recipe.json says how it was made.
MODELS = Path(__file__).parent / "models"

SUITE = Suite(
    name="shapes",
    description="the built-in shapes world: grammar prompts, exact rewards, exact benchmark",
    prompt_sets=PROMPT_SETS,
    prompt_source=lambda prompt_set, prompts_per_step: prompt_source(
        ShapesGrammar(), prompts_per_step, split=prompt_set
    ),
    reward_components=COMPONENTS,
    benchmark=ShapesBenchmark,
    check_training=check_clear_of_evaluation,
    training_evaluation=training_evaluation,
    read_prompt=read_prompt,
    models={name: MODELS / name for name in ("shapes-grpo", "shapes-sft")},
)
