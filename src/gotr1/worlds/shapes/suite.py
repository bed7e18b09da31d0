"""The shapes world as gotr1's registry sees it, in full (``registry.get("shapes")``; the entry point
``gotr1.suites: shapes`` names the light :mod:`.declaration`)."""

from __future__ import annotations

from ...registry import Suite
from .benchmark import ShapesBenchmark, training_evaluation
from .declaration import DECLARATION
from .grammar import ShapesGrammar
from .parse import read_prompt
from .rl import COMPONENTS, PROMPT_SETS, check_clear_of_evaluation, prompt_source

SUITE = Suite(
    name=DECLARATION.name,
    description=DECLARATION.description,
    prompt_sets=PROMPT_SETS,
    prompt_source=lambda prompt_set, prompts_per_step: prompt_source(
        ShapesGrammar(), prompts_per_step, split=prompt_set
    ),
    reward_components=COMPONENTS,
    benchmark=ShapesBenchmark,
    check_training=check_clear_of_evaluation,
    training_evaluation=training_evaluation,
    read_prompt=read_prompt,
    models=DECLARATION.models,
)
