"""Benchmarks: sampling in the official layouts of T2I-CompBench and GenEval (and the worlds' own),
scoring with faithful re-implementations of the official metrics or with the project's judge, and a report.
"""

from pathlib import Path

DATA = Path(__file__).parent / "data"  # benchmark prompt files (MIT, licenses beside them)
