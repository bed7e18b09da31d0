"""Worlds and benchmarks by name: what training, rewards and evaluation look up, so core code never names one.

A *suite* (the shapes world, T2I-CompBench, GenEval, yours) says what it offers: prompt sets to train on
(``<suite>:<set>`` in a recipe), exact reward components (``source: <suite>`` in a reward config), a
benchmark for ``gotr1 eval <suite>``, and an evaluation to run during training. Suites are found through the
``gotr1.suites`` entry-point group (a new one is one module plus one line in its package's metadata) or
registered at run time with :func:`register`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "gotr1.suites"


@dataclass(frozen=True)
class Suite:
    """What a world or benchmark offers to the rest of gotr1 (each part optional)."""

    name: str
    description: str = ""
    # Prompt sets for training: (set name, prompts per step) -> source(step, rng) -> prompts.
    prompt_sets: tuple[str, ...] = ()
    prompt_source: Callable[[str, int], Callable[..., list[Any]]] | None = None
    # Reward components by name (r_sem, r_spa, r_ri, r_pi, ...) -> factory of a Reward.
    reward_components: Mapping[str, Callable[[], Any]] = field(default_factory=dict)
    # The benchmark behind `gotr1 eval <name>`.
    benchmark: Callable[[], Any] | None = None
    # Training hooks: a check of a recipe's prompt set against its evaluation (ValueError), and an
    # evaluation of the policy during training: (bundle, num_prompts, cfg_weight, max_reasoning_tokens) -> summary.
    check_training: Callable[[str, int], None] | None = None
    training_evaluation: Callable[..., dict[str, Any]] | None = None
    # A typed prompt as the suite's rewards want it; None when the text is not in the suite's language.
    read_prompt: Callable[[str], Any | None] | None = None
    # Checkpoints shipped in the package, by the name `--model` takes (gotr1.models).
    models: Mapping[str, Path] = field(default_factory=dict)


_SUITES: dict[str, Suite] = {}
_LOADED = False


class UnknownSuite(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def register(suite: Suite) -> Suite:
    """Add (or replace) a suite at run time."""
    _SUITES[suite.name] = suite
    return suite


def _load_entry_points() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in _SUITES:
            continue
        try:
            suite = point.load()
        except Exception as exc:  # a broken plug-in must not take the others down
            log.warning("suite %r (%s) cannot be loaded: %s", point.name, point.value, exc)
            continue
        _SUITES.setdefault(point.name, suite)


def names() -> list[str]:
    _load_entry_points()
    return sorted(_SUITES)


def get(name: str) -> Suite:
    """The suite called `name`; UnknownSuite (one line, listing the known ones) otherwise."""
    _load_entry_points()
    if name not in _SUITES:
        known = ", ".join(sorted(_SUITES)) or "none (is gotr1 installed? pip install -e .)"
        raise UnknownSuite(f"unknown suite {name!r}; known: {known}")
    return _SUITES[name]


def split_prompt_spec(spec: str) -> tuple[Suite, str] | None:
    """`<suite>:<set>` -> (suite, set) when `<suite>` is a registered suite; None for anything else
    (e.g. a prompt file path)."""
    name, sep, prompt_set = spec.partition(":")
    if not sep:
        return None
    _load_entry_points()
    return (_SUITES[name], prompt_set) if name in _SUITES else None
