"""Worlds and benchmarks by name: what training, rewards and evaluation look up, so core code never names one.

A *suite* (the shapes world, T2I-CompBench, GenEval, yours) says what it offers: prompt sets to train on
(``<suite>:<set>`` in a recipe), exact reward components (``source: <suite>`` in a reward config), a
benchmark for ``gotr1 eval <suite>``, and an evaluation to run during training. Suites are found through the
``gotr1.suites`` entry-point group (a new one is one module plus one line in its package's metadata) or
registered at run time with :func:`register`.

Plugins are loaded by need. An entry point may name a :class:`LazySuite`: a light declaration of the suite's
name, the checkpoints it ships and where the full :class:`Suite` lives. Finding a model by name
(:func:`shipped_models`) and listing suites (:func:`names`) read only those; a suite's rewards, prompts and
benchmark data are imported on the first :func:`get` of that suite. An entry point that names a full
:class:`Suite` still works (it is imported when entry points are read).
"""

from __future__ import annotations

import importlib
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
    # evaluation of the policy during training: (bundle, num_prompts, sampling: SamplingConfig) -> summary.
    check_training: Callable[[str, int], None] | None = None
    training_evaluation: Callable[..., dict[str, Any]] | None = None
    # A typed prompt as the suite's rewards want it; None when the text is not in the suite's language.
    read_prompt: Callable[[str], Any | None] | None = None
    # Checkpoints shipped in the package, by the name `--model` takes (gotr1.models).
    models: Mapping[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class LazySuite:
    """A suite as the registry first meets it: its name, the checkpoints it ships, and where the rest lives
    (`target`: ``"module:attribute"`` of its :class:`Suite`, imported on the first ``get(name)``). Its module
    must stay light: no rewards, prompts or benchmark data."""

    name: str
    target: str
    description: str = ""
    # Checkpoints shipped in the package, by the name `--model` takes (gotr1.models).
    models: Mapping[str, Path] = field(default_factory=dict)

    def load(self) -> Suite:
        module, _, attribute = self.target.partition(":")
        suite = getattr(importlib.import_module(module), attribute)
        if not isinstance(suite, Suite):
            raise TypeError(f"{self.target} is a {type(suite).__name__}, not a gotr1.registry.Suite")
        return suite


_SUITES: dict[str, Suite] = {}  # registered, or loaded in full
_DECLARED: dict[str, LazySuite] = {}  # from entry points, not loaded in full yet
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
        if point.name in _SUITES or point.name in _DECLARED:
            continue
        try:
            found = point.load()
        except Exception as exc:  # a broken plug-in must not take the others down
            log.warning("suite %r (%s) cannot be loaded: %s", point.name, point.value, exc)
            continue
        if isinstance(found, LazySuite):
            _DECLARED[point.name] = found
        elif isinstance(found, Suite):
            _SUITES[point.name] = found
        else:
            kind = type(found).__name__
            log.warning("suite %r (%s) is a %s, not a Suite or LazySuite", point.name, point.value, kind)


def names() -> list[str]:
    """Every suite's name (imports no suite in full)."""
    _load_entry_points()
    return sorted(set(_SUITES) | set(_DECLARED))


def shipped_models() -> dict[str, tuple[str, Path]]:
    """Every checkpoint a suite ships: model name -> (suite name, folder), from the light declarations (a
    suite registered or loaded in full answers for itself)."""
    _load_entry_points()
    found: dict[str, tuple[str, Path]] = {}
    for name in names():
        suite = _SUITES.get(name) or _DECLARED[name]
        for model, path in suite.models.items():
            found[model] = (name, Path(path))
    return found


def get(name: str) -> Suite:
    """The suite called `name`, loaded in full; UnknownSuite (one line, listing the known ones) otherwise,
    or when its plug-in cannot be loaded."""
    _load_entry_points()
    if name in _SUITES:
        return _SUITES[name]
    declared = _DECLARED.get(name)
    if declared is None:
        known = ", ".join(names()) or "none (is gotr1 installed? pip install -e .)"
        raise UnknownSuite(f"unknown suite {name!r}; known: {known}")
    try:
        suite = declared.load()
    except Exception as exc:
        del _DECLARED[name]  # listed no more: it cannot be used
        log.warning("suite %r (%s) cannot be loaded: %s", name, declared.target, exc)
        raise UnknownSuite(f"suite {name!r} ({declared.target}) cannot be loaded: {exc}") from exc
    _SUITES[name] = suite
    del _DECLARED[name]
    return suite


def split_prompt_spec(spec: str) -> tuple[Suite, str] | None:
    """`<suite>:<set>` -> (suite, set) when `<suite>` is a registered suite; None for anything else
    (e.g. a prompt file path)."""
    name, sep, prompt_set = spec.partition(":")
    if not sep:
        return None
    return (get(name), prompt_set) if name in names() else None
