"""Progress of long work: tqdm's bar on a terminal, a log line at a steady pace anywhere else.

tqdm draws nothing when its stream is not a terminal (and a forced bar is garbage in a log file), so a piped
`gotr1 eval` would say nothing for an hour. :func:`progress` keeps tqdm where it belongs and otherwise logs
``desc: done/total unit (pct), rate, ETA`` through :mod:`logging` every ``interval`` seconds (default 30, or
the environment's ``GOTR1_PROGRESS_SECONDS``), plus a line when the work starts and one when it ends::

    with progress(len(jobs), "t2i-compbench", "img", initial=already_done) as bar:
        for batch in batches:
            ...
            bar.update(len(batch))
            bar.set_postfix(loss=f"{loss:.3f}")

The object also works without ``with`` (call :meth:`Progress.close`), like a tqdm bar.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import IO, Any

ENV_SECONDS = "GOTR1_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0

_log = logging.getLogger("gotr1.progress")
_clock = time.monotonic  # tests move it by hand


def interval_seconds() -> float:
    """Seconds between progress lines: ``GOTR1_PROGRESS_SECONDS`` when it is a number >= 0, else 30."""
    raw = os.environ.get(ENV_SECONDS, "").strip()
    if not raw:
        return DEFAULT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        _log.warning("%s=%r is not a number of seconds >= 0; using %g", ENV_SECONDS, raw, DEFAULT_SECONDS)
        return DEFAULT_SECONDS
    return seconds


def _is_terminal(stream: IO[str] | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def format_duration(seconds: float) -> str:
    """12s, 3m05s, 1h02m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_rate(per_second: float, unit: str) -> str:
    """2.50 img/s when at least one a second, else 4.0 s/img."""
    if per_second >= 1:
        return f"{per_second:.2f} {unit}/s"
    return f"{1 / per_second:.1f} s/{unit}"


class Progress:
    """Progress of `total` units of work (None: unknown), `initial` of them done before this run.

    On a terminal (`stream`, default stderr, is a TTY): tqdm's bar (``mode == "tqdm"``). Elsewhere (``"log"``): a
    line through `logger` (default ``gotr1.progress``, INFO) when the work starts, every `interval` seconds while
    it runs (default ``GOTR1_PROGRESS_SECONDS`` or 30; checked at each update) and when it ends.
    `enabled=False` (``"off"``): silent (e.g. on every process but the main one). Use as a context manager, or
    call ``close()``."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        *,
        initial: int = 0,
        enabled: bool = True,
        stream: IO[str] | None = None,
        interval: float | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.initial = self.done = initial
        self.interval = interval_seconds() if interval is None else interval
        self.logger = logger or _log
        self.postfix: dict[str, Any] = {}
        self._bar = None
        self._closed = False
        self._start = self._last = _clock()
        stream = sys.stderr if stream is None else stream
        if not enabled:
            self.mode = "off"
        elif _is_terminal(stream):
            from tqdm.auto import tqdm

            self.mode = "tqdm"
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=stream, dynamic_ncols=True)
        else:
            self.mode = "log"
            already = f" ({initial} already done)" if initial else ""
            size = f"{total} {unit}" if total is not None else f"an unknown number of {unit}"
            self.logger.info("%s: starting, %s%s", desc, size, already)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "log" and self.done != self.total and _clock() - self._last >= self.interval:
            self._emit()  # (the last unit's line is the final one, from close)

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        """As tqdm's: values shown after the counts (``key=value``); kept for the next line in log mode."""
        values = dict(ordered_dict or {}, **kwargs)
        self.postfix = values
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=refresh)

    def line(self, final: bool = False) -> str:
        """The log line as it stands: counts, percent, rate of this run's work, ETA (or the time taken)."""
        elapsed = _clock() - self._start
        parts = [f"{self.done}/{self.total} {self.unit}" if self.total is not None else f"{self.done} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        made = self.done - self.initial
        rate = made / elapsed if made > 0 and elapsed > 0 else None
        parts.append(format_rate(rate, self.unit) if rate else f"- {self.unit}/s")
        if final:
            parts.append(f"took {format_duration(elapsed)}")
        elif self.total is not None:
            left = max(0, self.total - self.done)
            parts.append(f"ETA {format_duration(left / rate)}" if rate else "ETA ?")
        text = f"{self.desc}: " + ", ".join(parts)
        if self.postfix:
            text += " | " + " ".join(f"{k}={v}" for k, v in self.postfix.items())
        return text

    def _emit(self, final: bool = False) -> None:
        self._last = _clock()
        self.logger.info("%s", self.line(final=final))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "log":
            self._emit(final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def log_to_stderr() -> None:
    """For a script that sets up no logging of its own: progress lines (and warnings) on stderr."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    if _log.getEffectiveLevel() > logging.INFO:
        _log.setLevel(logging.INFO)


# The usual spelling, like ``tqdm(...)``: ``progress(total, desc, unit, ...)`` builds a :class:`Progress`.
progress = Progress
