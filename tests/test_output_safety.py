"""Runs never overwrite or mix earlier results: GRPO resume after a crash and past a damaged checkpoint, fresh
runs refused in an earlier run's folder, and --overwrite / new folders for generate and convert."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from gotr1.cli import main
from gotr1.models import builtin_model

needs_model = pytest.mark.skipif(builtin_model() is None, reason="no shipped model")

RECIPE = """
output_dir: {out}
prompts: shapes:train
eval_prompts: 2
save_every: 2
keep_last: 2
grpo:
  steps: {steps}
  prompts_per_step: 1
  num_generations: 2
  learning_rate: 1.0e-5
  lora_r: 4
sampling:
  max_reasoning_tokens: 120
  cfg_weight: 3.0
"""


def _steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


@needs_model
def test_resume_after_a_crash_and_past_a_damaged_checkpoint_repeats_no_step(tmp_path, caplog):
    out = tmp_path / "out"
    config = tmp_path / "run.yaml"
    config.write_text(RECIPE.format(out=out, steps=4))
    assert main(["train", "grpo", "--config", str(config)]) == 0
    assert _steps(out / "metrics.jsonl") == [1, 2, 3, 4]
    # as if killed after step 4's metrics but while its checkpoint was being written: the newest is damaged
    (out / "checkpoints" / "checkpoint-000004" / "trainable.safetensors").write_bytes(b"\x00" * 10)
    for name in ("final", "summary.json"):  # the killed run never got this far
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    config.write_text(RECIPE.format(out=out, steps=5))
    # one more step changes the cosine schedule, so the resume must say so (and it is recorded)
    assert main(["train", "grpo", "--config", str(config), "--resume", "--allow-change", "grpo.steps"]) == 0
    assert "checkpoint-000004 is unreadable" in caplog.text and "resuming from" in caplog.text
    changes = json.loads((out / "config.json").read_text())["changes"]
    assert changes == [{"key": "grpo.steps", "from": 4, "to": 5, "step": 2}]
    assert _steps(out / "metrics.jsonl") == [1, 2, 3, 4, 5]  # steps 3 and 4 done again, logged once
    summary = json.loads((out / "summary.json").read_text())
    assert [e["step"] for e in summary["evaluations"]] == [0, 5]  # step 0's evaluation survives the resume
    assert _steps(out / "evaluations.jsonl") == [0, 5]


@needs_model
def test_a_fresh_run_is_refused_in_an_earlier_runs_folder_unless_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    config = tmp_path / "run.yaml"
    config.write_text(RECIPE.format(out=out, steps=2))
    assert main(["train", "grpo", "--config", str(config)]) == 0
    earlier = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "grpo", "--config", str(config)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == earlier
    assert main(["train", "grpo", "--config", str(config), "--overwrite"]) == 0
    assert _steps(out / "metrics.jsonl") == [1, 2]  # the earlier run's lines are gone, not appended to


def test_generate_never_meets_an_earlier_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["generate", "--model", "tiny-random", "--prompt", "a red circle", "--max-reasoning-tokens", "8"]
    assert main(args) == 0 and main(args) == 0
    runs = sorted((tmp_path / "outputs" / "generate").iterdir())
    assert len(runs) == 2  # the default --out is a new folder each time
    assert all((run / "generate.json").is_file() for run in runs)
    out = tmp_path / "mine"
    assert main([*args, "--out", str(out), "--num-chains", "3"]) == 0
    assert main([*args, "--out", str(out)]) == 2
    assert main([*args, "--out", str(out), "--overwrite"]) == 0
    assert len(list(out.glob("*/sample_*"))) == 1  # the earlier run's three samples are gone, not mixed in


def test_convert_overwrites_only_an_earlier_checkpoint(tmp_path, tiny_bundle, capsys):
    src = tiny_bundle.save(tmp_path / "src")
    dst = tmp_path / "dst"
    assert main(["convert", str(src), str(dst)]) == 0
    assert main(["convert", str(src), str(dst)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", str(src), str(dst), "--overwrite"]) == 0
    weights = dst / "model.safetensors"
    assert weights.stat().st_mode & 0o777 == 0o666 & ~_umask()  # readable like every other file


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
