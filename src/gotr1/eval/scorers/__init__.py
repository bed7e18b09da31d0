"""Scorers by benchmark: name -> factory(ScorerOptions) -> Scorer. Models load lazily, when a category needs
them; a scorer that cannot load its model raises ScorerError with one line naming it.

- ``official``: faithful re-implementations of the official metrics on models transformers loads (every
  substitution of a model named in the scorer's notes);
- ``judge``: the project's VLM judge, one question per image;
- ``detector``: fully offline, the YOLO detector the project fetches from PyPI plus a colour classifier; an
  approximation, labelled so wherever it appears.
"""

from __future__ import annotations

from collections.abc import Callable

from ..benchmark import ScorerOptions
from ..records import Scorer

Factory = Callable[[ScorerOptions], Scorer]


def _t2i_official(options: ScorerOptions) -> Scorer:
    from .t2i_official import T2IOfficialScorer

    return T2IOfficialScorer.from_options(options)


def _geneval_official(options: ScorerOptions) -> Scorer:
    from .geneval_official import GenEvalOfficialScorer

    return GenEvalOfficialScorer.from_options(options)


def _judge(benchmark: str) -> Factory:
    def build(options: ScorerOptions) -> Scorer:
        from .judge import JudgeScorer

        return JudgeScorer.from_options(benchmark, options)

    return build


def _detector(benchmark: str) -> Factory:
    def build(options: ScorerOptions) -> Scorer:
        from .detector import DetectorScorer

        return DetectorScorer.from_options(benchmark, options)

    return build


# The models each scorer lets `--scorer-model ROLE=ID` replace (ScorerOptions.models keys it reads).
MODEL_ROLES: dict[tuple[str, str], tuple[str, ...]] = {
    ("t2i-compbench", "official"): ("blip", "clip", "detector", "depth"),
    ("geneval", "official"): ("detector", "clip"),
    ("t2i-compbench", "detector"): ("detector",),
    ("geneval", "detector"): ("detector",),
}


def model_roles(benchmark: str, scorer: str) -> tuple[str, ...]:
    """The model roles of `scorer` on `benchmark` (none for a scorer that loads no replaceable model)."""
    return MODEL_ROLES.get((benchmark, scorer), ())


def t2i_compbench_scorers() -> dict[str, Factory]:
    return {"official": _t2i_official, "judge": _judge("t2i-compbench"), "detector": _detector("t2i-compbench")}


def geneval_scorers() -> dict[str, Factory]:
    return {"official": _geneval_official, "judge": _judge("geneval"), "detector": _detector("geneval")}
