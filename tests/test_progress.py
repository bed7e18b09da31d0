"""gotr1.progress: tqdm's bar on a terminal, steady log lines (done/total, rate, ETA) anywhere else."""

from __future__ import annotations

import io
import logging
import re

import pytest

from gotr1 import progress as progress_module
from gotr1.progress import progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    """A monotonic clock the test moves by hand."""
    now = [1000.0]
    monkeypatch.setattr(progress_module, "_clock", lambda: now[0])
    return now


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gotr1.progress"]


def test_not_a_terminal_logs_done_total_rate_and_eta(caplog, clock):
    caplog.set_level(logging.INFO, logger="gotr1.progress")
    stream = io.StringIO()  # a pipe or a log file: not a TTY
    with progress(10, "eval", "img", stream=stream, interval=5) as bar:
        assert bar.mode == "log"
        for _ in range(4):
            clock[0] += 2.0  # 2 s per image
            bar.update(1)
        bar.set_postfix(reward="0.500")
        for _ in range(6):
            clock[0] += 2.0
            bar.update(1)
    assert stream.getvalue() == ""  # no bar drawn into the file
    lines = _lines(caplog)
    assert lines[0] == "eval: starting, 10 img"
    # a line every 5 s (at 6 s, 12 s, 18 s of work), then the final one
    assert lines[1] == "eval: 3/10 img (30%), 2.0 s/img, ETA 14s"
    assert lines[2] == "eval: 6/10 img (60%), 2.0 s/img, ETA 8s | reward=0.500"
    assert lines[3] == "eval: 9/10 img (90%), 2.0 s/img, ETA 2s | reward=0.500"
    assert lines[4] == "eval: 10/10 img (100%), 2.0 s/img, took 20s | reward=0.500"
    assert len(lines) == 5


def test_resumed_work_counts_only_this_runs_rate(caplog, clock):
    caplog.set_level(logging.INFO, logger="gotr1.progress")
    with progress(1000, "t2i", "img", initial=400, stream=io.StringIO(), interval=0) as bar:
        clock[0] += 10.0
        bar.update(50)  # 5 img/s over this run, 550 left -> 110 s
    lines = _lines(caplog)
    assert lines[0] == "t2i: starting, 1000 img (400 already done)"
    assert lines[1] == "t2i: 450/1000 img (45%), 5.00 img/s, ETA 1m50s"


def test_tiny_interval_from_the_environment(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="gotr1.progress")
    monkeypatch.setenv("GOTR1_PROGRESS_SECONDS", "0")
    with progress(3, "sft", "step", stream=io.StringIO()) as bar:
        for _ in range(3):
            bar.update(1)
    lines = _lines(caplog)
    assert len(lines) == 1 + 2 + 1  # start, each step but the last, final
    for line in lines[1:-1]:
        assert re.fullmatch(r"sft: \d/3 step \(\d+%\), (\S+ step/s|\S+ s/step|- step/s), ETA \S+", line), line
    assert re.fullmatch(r"sft: 3/3 step \(100%\), .*, took \S+", lines[-1])


@pytest.mark.parametrize("raw", ["", "abc", "-1", "nan"])
def test_interval_default_and_bad_values(monkeypatch, raw, caplog):
    monkeypatch.setenv("GOTR1_PROGRESS_SECONDS", raw)
    assert progress_module.interval_seconds() == 30.0
    assert bool(raw) == any("GOTR1_PROGRESS_SECONDS" in r.getMessage() for r in caplog.records)


def test_default_interval_is_steady_not_every_update(caplog, clock, monkeypatch):
    monkeypatch.delenv("GOTR1_PROGRESS_SECONDS", raising=False)
    caplog.set_level(logging.INFO, logger="gotr1.progress")
    with progress(100, "score", "img", stream=io.StringIO()) as bar:
        for _ in range(100):
            clock[0] += 1.0
            bar.update(1)
    lines = _lines(caplog)
    assert len(lines) == 1 + 3 + 1  # at 30, 60, 90 s, plus start and end


def test_unknown_total(caplog, clock):
    caplog.set_level(logging.INFO, logger="gotr1.progress")
    with progress(None, "scan", "file", stream=io.StringIO(), interval=0) as bar:
        clock[0] += 1.0
        bar.update(4)
    assert _lines(caplog) == [
        "scan: starting, an unknown number of file",
        "scan: 4 file, 4.00 file/s",
        "scan: 4 file, 4.00 file/s, took 1s",
    ]


def test_a_terminal_gets_tqdms_bar_and_no_log_lines(caplog):
    caplog.set_level(logging.INFO, logger="gotr1.progress")
    terminal = FakeTerminal()
    with progress(5, "eval", "img", stream=terminal, interval=0) as bar:
        assert bar.mode == "tqdm"
        from tqdm.auto import tqdm

        assert isinstance(bar._bar, tqdm)
        bar.update(2)
        bar.set_postfix(loss="1.0", refresh=False)
        bar.update(3)
    drawn = terminal.getvalue()
    assert "eval" in drawn and "5/5" in drawn and "\r" in drawn
    assert _lines(caplog) == []


def test_disabled_is_silent(caplog):
    caplog.set_level(logging.INFO, logger="gotr1.progress")
    for stream in (io.StringIO(), FakeTerminal()):
        with progress(5, "eval", "img", stream=stream, enabled=False, interval=0) as bar:
            assert bar.mode == "off"
            bar.update(5)
        assert stream.getvalue() == ""
    assert _lines(caplog) == []


def test_close_without_with_and_twice(caplog):
    caplog.set_level(logging.INFO, logger="gotr1.progress")
    bar = progress(2, "x", stream=io.StringIO(), interval=1e9)
    bar.update(2)
    bar.close()
    bar.close()
    assert len(_lines(caplog)) == 2  # start and one final line


def test_piped_gotr1_eval_logs_its_sampling_progress(tmp_path):
    """The reason for all this: `gotr1 eval` with its output in a pipe or a file says how far it is."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "gotr1", "eval", "t2i-compbench", "--model", "tiny-random"]
    command += ["--max-reasoning-tokens", "8", "--categories", "color", "--limit", "3", "--batch-size", "1"]
    command += ["--images-per-prompt", "1"]
    command += ["--out", str(tmp_path / "run")]
    env = os.environ | {"GOTR1_PROGRESS_SECONDS": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "t2i-compbench: starting, 3 img" in done.stderr
    for k in (1, 2):  # (3/3 is the final line's)
        assert re.search(rf"t2i-compbench: {k}/3 img \(\d+%\), \S+ (img/s|s/img), ETA \S+", done.stderr), done.stderr
    assert re.search(r"t2i-compbench: 3/3 img \(100%\), \S+ (img/s|s/img), took \S+", done.stderr), done.stderr
    assert "\r" not in done.stderr  # no bar drawn into the pipe
