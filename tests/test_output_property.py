"""A property of the output policy (issue 21): random sequences of commands — eval and generate with
``--overwrite`` or without, with changed settings, killed with SIGKILL at random moments, with the user's
files added and gotr1's images damaged between them — never delete or change a file gotr1 did not write, and
never leave an eval run folder (or its staging folder) whose images come from two different settings.

Every command is a real process (so a kill is a real kill -9); the default run is one short sequence, the
slow one several longer ones.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gotr1.eval.sampling import run_id
from gotr1.outputs import staging_folder

TINY = ["--model", "tiny-random", "--max-reasoning-tokens", "8"]
EVAL_SETTINGS = (["--cfg", "5"], ["--cfg", "2"], ["--cfg", "2", "--text-temperature", "0.5"])


def _gotr1(argv: list[str], cwd: Path, kill_after: float | None) -> tuple[int, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gotr1", *argv],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONWARNINGS": "ignore"},
    )
    if kill_after is not None:
        try:
            process.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
    _, err = process.communicate(timeout=600)
    return process.returncode, err


def _settings_ids(folder: Path) -> set[str]:
    """The settings ids of every official image's record in an eval run folder."""
    ids = set()
    for record in folder.rglob("plans/*.json"):
        data = json.loads(record.read_text())
        if (folder / data["image"]).exists():
            ids.add(data.get("run_id"))
    return ids


def _check_run_folder(folder: Path) -> None:
    if not (folder / "run.json").is_file():
        return
    recorded = json.loads((folder / "run.json").read_text())
    identity = {k: v for k, v in recorded.items() if k not in ("categories", "updated")}
    ids = _settings_ids(folder)
    assert ids <= {run_id(identity)}, f"{folder}: images of settings {ids}, run.json says {run_id(identity)}"


def _sequence(root: Path, rng: random.Random, steps: int) -> list[str]:
    run, gen = root / "r", root / "g"
    user: dict[Path, bytes] = {}
    log = []
    for step in range(steps):
        op = rng.choice(("eval", "eval", "eval", "generate", "user", "damage"))
        if op in ("eval", "generate"):
            if op == "eval":
                argv = ["eval", "shapes", *TINY, "--limit", "2", "--categories", "val/color,val/shape", "--out", "r"]
                argv += [*rng.choice(EVAL_SETTINGS), "--batch-size", "1"]
            else:
                argv = ["generate", *TINY, "--prompt", "a red circle", "--num-chains", "3", "--out", "g"]
                argv += ["--seed", str(rng.randrange(3)), "--batch-size", "1"]
            if rng.random() < 0.6:
                argv.append("--overwrite")
            kill_after = rng.uniform(1.0, 9.0) if rng.random() < 0.5 else None
            rc, err = _gotr1(argv, root, kill_after)
            log.append(f"{step}: {' '.join(argv)} kill_after={kill_after} -> {rc}")
            assert "Traceback" not in err, "\n".join(log) + "\n" + err
            errors = [line for line in err.splitlines() if line.startswith("gotr1: error:")]
            assert rc in (0, 2, -signal.SIGKILL), "\n".join(log) + "\n" + err
            assert rc != 2 or len(errors) == 1, "\n".join(log) + "\n" + err
        elif op == "user":
            folder = rng.choice([p for p in (run, gen, *run.glob("val/*"), *gen.glob("*_*")) if p.is_dir()] or [root])
            path = folder / f"user-{step}.md"
            user[path] = f"the user's note {step}".encode()
            path.write_bytes(user[path])
            log.append(f"{step}: user wrote {path.relative_to(root)}")
        else:
            images = sorted(run.rglob("samples/*.png"))
            if images:
                image = rng.choice(images)
                if rng.random() < 0.5:
                    image.write_bytes(image.read_bytes()[:40])
                else:
                    image.unlink()
                log.append(f"{step}: damaged {image.relative_to(root)}")
        for path, content in user.items():
            assert path.is_file() and path.read_bytes() == content, "\n".join(log) + f"\nlost {path}"
        _check_run_folder(run)
        _check_run_folder(staging_folder(run))
    return log


def test_random_commands_with_kills_never_lose_a_users_file_or_mix_settings(tmp_path):
    _sequence(tmp_path, random.Random(109), steps=9)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_longer_random_sequences(tmp_path, seed):
    _sequence(tmp_path, random.Random(1000 + seed), steps=20)
