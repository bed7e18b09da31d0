"""Runs know what made them: comparing the settings a run folder recorded with the ones asked for now.

A run folder (generate, eval, train) records its model fingerprint, dtype, device class and every setting
that changes its outputs; continuing it with any other value would mix outputs of two settings in one
folder, so resuming compares the two records key by key and names the first difference.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

_MISSING = object()


def differences(
    recorded: Mapping[str, Any], now: Mapping[str, Any], prefix: str = ""
) -> Iterator[tuple[str, Any, Any]]:
    """(dotted key, recorded value, value now) for every leaf that differs; a key missing on one side is
    reported with None there (unless the other side is None: a setting added later at its null default).
    Both sides are compared as JSON holds them (tuples as lists)."""
    if not prefix:
        recorded, now = _plain(recorded), _plain(now)
    for key in sorted(set(recorded) | set(now), key=str):
        old, new = recorded.get(key, _MISSING), now.get(key, _MISSING)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            yield from differences(old, new, f"{prefix}{key}.")
        elif (old is _MISSING and new is None) or (old is None and new is _MISSING):
            continue  # a setting recorded by a later version at its null default: nothing differs
        elif old != new and not (_is_number(old) and _is_number(new) and float(old) == float(new)):
            yield f"{prefix}{key}", None if old is _MISSING else old, None if new is _MISSING else new


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def describe(key: str, old: Any, new: Any) -> str:
    """One difference as a user reads it: ``grpo.learning_rate: 1e-05 in the run, now 2e-05``."""
    return f"{key}: {old!r} in the run, now {new!r}"
