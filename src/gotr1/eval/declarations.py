"""The paper's benchmarks as the registry first meets them (entry points ``gotr1.suites: t2i-compbench`` and
``geneval``): names only, so that listing suites or finding a model reads no prompt file and imports no
scorer; :mod:`.t2i_compbench` and :mod:`.geneval` are loaded on ``registry.get(name)``."""

from __future__ import annotations

from ..registry import LazySuite

T2I_COMPBENCH = LazySuite(
    name="t2i-compbench",
    target="gotr1.eval.t2i_compbench:SUITE",
    description="T2I-CompBench (and ++) validation prompts, official layout",
)
GENEVAL = LazySuite(
    name="geneval",
    target="gotr1.eval.geneval:SUITE",
    description="GenEval's 553 prompts, official layout",
)
