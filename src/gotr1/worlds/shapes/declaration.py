"""The shapes world as the registry first meets it (entry point ``gotr1.suites: shapes``): its name and the
checkpoints it ships. Light on purpose: finding ``--model shapes-grpo`` imports this, not the world's
grammar, rewards or benchmark (those are in :mod:`.suite`, loaded on ``registry.get("shapes")``)."""

from __future__ import annotations

from pathlib import Path

from ...registry import LazySuite

# The shipped checkpoints: the SFT model (gotr1 shapes pretrain) and GoT-R1 from it by GRPO
# (configs/shapes_grpo_shipped.yaml); each folder's recipe.json says how it was made.
MODELS = Path(__file__).parent / "models"

DECLARATION = LazySuite(
    name="shapes",
    target="gotr1.worlds.shapes.suite:SUITE",
    description="the built-in shapes world: grammar prompts, exact rewards, exact benchmark",
    models={name: MODELS / name for name in ("shapes-grpo", "shapes-sft")},
)

# Region-preserving edits against full re-renders (`gotr1 eval shapes-edit`): a benchmark of this world's.
EDIT_DECLARATION = LazySuite(
    name="shapes-edit",
    target="gotr1.worlds.shapes.edit_benchmark:SUITE",
    description="edits in the shapes world: region-preserving against full re-render, scored exactly",
)
