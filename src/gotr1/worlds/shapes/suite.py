"""The shapes world as gotr1's registry sees it (entry point ``gotr1.suites: shapes``)."""

from __future__ import annotations

from ...registry import Suite
from .benchmark import ShapesBenchmark, training_evaluation
from .grammar import ShapesGrammar
from .rl import COMPONENTS, PROMPT_SETS, check_clear_of_evaluation, prompt_source

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
)
