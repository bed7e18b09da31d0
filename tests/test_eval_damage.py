"""Damaged eval outputs are found, not trusted: a resumed run re-makes a truncated or deleted image, scoring
names the images it could not score (one line, no traceback, never "missing 0"), and scoring some categories
keeps the others' scores."""

import hashlib
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gotr1.cli import main

FAST = ["--model", "tiny-random", "--max-reasoning-tokens", "12"]
SAMPLE = ["eval", "shapes", *FAST, "--categories", "val/shape,val/color", "--limit", "2"]
SHAPE = "val/shape/samples/000000.png"
COLOR = "val/color/samples/000001.png"


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    """A shapes run of two categories, two images each, scored (the shapes scorer is free)."""
    out = tmp_path_factory.mktemp("damage") / "run"
    assert main([*SAMPLE, "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(sampled, tmp_path):
    """A copy of the sampled run for one test to damage."""
    copy = tmp_path / "run"
    shutil.copytree(sampled, copy)
    return copy


def _truncate(path: Path) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return data


def _resume(run: Path, caplog) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gotr1"):
        assert main([*SAMPLE, "--out", str(run)]) == 0
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_truncated_image_is_made_again_on_resume(run, caplog, capsys):
    original = _truncate(run / SHAPE)
    warnings = _resume(run, caplog)
    assert (run / SHAPE).read_bytes() == original  # the same sample again (it depends only on prompt and seed)
    assert "1 image(s) sampled, 3 already there" in capsys.readouterr().out
    assert any(SHAPE in w and "damaged" in w for w in warnings), warnings
    assert any(w.startswith("1 damaged or missing image(s)") and SHAPE in w for w in warnings), warnings


def test_a_deleted_image_is_made_again_on_resume_and_its_record_holds_its_hash(run, caplog, capsys):
    original = (run / COLOR).read_bytes()
    (run / COLOR).unlink()
    warnings = _resume(run, caplog)
    assert (run / COLOR).read_bytes() == original
    assert "1 image(s) sampled, 3 already there" in capsys.readouterr().out
    assert any(COLOR in w and "missing" in w for w in warnings), warnings
    record = json.loads((run / "val/color/plans/000001.json").read_text())
    assert record["image_sha256"] == hashlib.sha256(original).hexdigest()
    assert record["image_bytes"] == len(original)


def test_score_names_a_truncated_and_a_deleted_image_without_a_traceback(run):
    _truncate(run / SHAPE)
    (run / COLOR).unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "gotr1.cli", "eval", "score", str(run)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("gotr1: error")]
    assert len(errors) == 1, proc.stderr
    assert "2 image(s) of the run not scored" in errors[0]
    assert f"1 missing ({COLOR})" in errors[0] and f"1 damaged ({SHAPE})" in errors[0]
    # the table still shows the scores, each category marked incomplete, and never "missing 0"
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.startswith("val/")}
    for category in ("val/shape", "val/color"):
        assert rows[category][1].endswith("*") and rows[category][2:4] == ["2", "1"], proc.stdout
    assert f"* val/shape incomplete: 1 damaged ({SHAPE})" in proc.stdout
    assert f"* val/color incomplete: 1 missing ({COLOR})" in proc.stdout
    # the full lists are in the results, and each unscored image has its line with the reason
    summary = json.loads((run / "results" / "shapes.json").read_text())["summary"]
    assert summary["categories"]["val/shape"]["damaged_images"] == [SHAPE]
    assert summary["categories"]["val/color"]["missing_images"] == [COLOR]
    assert summary["categories"]["val/color"]["scored"] == 1 and summary["incomplete"] == ["val/shape", "val/color"]
    lines = {s["path"]: s for s in map(json.loads, (run / "scores" / "shapes.jsonl").read_text().splitlines())}
    assert lines[SHAPE]["score"] is None and lines[SHAPE]["reason"].startswith("image damaged")
    assert lines[COLOR]["score"] is None and lines[COLOR]["reason"].startswith("image missing")


def test_scoring_some_categories_keeps_the_others_scores(run):
    scores, results = run / "scores" / "shapes.jsonl", run / "results" / "shapes.json"
    before = scores.read_bytes().splitlines(keepends=True)
    shape_lines = [line for line in before if b'"category": "val/shape"' in line]
    assert len(shape_lines) == 2
    shape_summary = json.loads(results.read_text())["summary"]["categories"]["val/shape"]
    assert main(["eval", "score", str(run), "--categories", "val/color"]) == 0
    after = scores.read_bytes().splitlines(keepends=True)
    assert [line for line in after if b'"category": "val/shape"' in line] == shape_lines  # byte for byte
    assert len(after) == 4
    summary = json.loads(results.read_text())["summary"]["categories"]
    assert set(summary) == {"val/shape", "val/color"} and summary["val/shape"] == shape_summary
