"""Where GRPO's prompts come from: a list, passed over in a fresh deterministic shuffle each epoch.

A step's prompts depend only on the step number, so a resumed run sees exactly the prompts the
uninterrupted run would have seen, and every rank of a distributed run can compute any step's
prompts without talking to the others.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["read_prompt_files", "shuffled_source"]

T = TypeVar("T")


def shuffled_source(items: Sequence[T], prompts_per_step: int, *, seed: int = 0) -> Callable[[int, Any], list[T]]:
    """source(step, rng) -> the step's prompts: consecutive slices of per-epoch permutations."""
    if not items:
        raise ValueError("no prompts to train on")
    n = len(items)

    @lru_cache(maxsize=2)
    def order(epoch: int) -> list[int]:
        return random.Random(f"prompts-{seed}-epoch-{epoch}").sample(range(n), n)

    def source(step: int, rng: Any = None) -> list[T]:
        chosen = []
        for i in range(step * prompts_per_step, (step + 1) * prompts_per_step):
            epoch, index = divmod(i, n)
            chosen.append(items[order(epoch)[index]])
        return chosen

    return source


def read_prompt_files(path: str | Path) -> list[str]:
    """Prompts, one per non-empty line, from a text file or every ``*.txt`` in a directory (sorted;
    duplicates kept once, in first-seen order)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise ValueError(f"{path}: no .txt prompt files in this directory")
    elif path.is_file():
        files = [path]
    else:
        raise ValueError(f"{path}: no such file or directory")
    seen: dict[str, None] = {}
    for file in files:
        try:
            text = file.read_text(encoding="utf-8-sig")  # an editor's byte-order mark is not part of prompt 1
        except UnicodeDecodeError:
            raise ValueError(f"{file}: not a text file (one prompt per line, UTF-8)") from None
        for line in text.splitlines():
            if line.strip():
                seen.setdefault(line.strip(), None)
    if not seen:
        raise ValueError(f"{path}: {'the file is' if path.is_file() else 'its .txt files are'} empty (no prompts)")
    return list(seen)
