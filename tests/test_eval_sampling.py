"""`gotr1 eval` sampling: the official layouts read back by the official scripts' own file-reading rules,
resume after a kill, sharding under `accelerate launch`, and one-line errors that lose nothing."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gotr1.cli import main
from gotr1.eval.rules.geneval import load_metadata
from gotr1.eval.t2i_compbench import read_prompts

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--model", "tiny-random", "--max-reasoning-tokens", "12"]


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under a run except run.json (its timestamp differs between runs)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "run.json"
    }


# --- the official scripts' file-reading rules, written from EVAL_FACTS.md ----------------------------


def official_t2i_read(samples: Path, images_per_prompt: int) -> list[tuple[str, int]]:
    """T2I-CompBench: prompt = name.split('_')[0]; files sorted by the number after the last underscore;
    the 3-in-1 script takes file k as prompt k // 10 (here k // images_per_prompt)."""
    names = sorted(os.listdir(samples), key=lambda n: int(n.rsplit("_", 1)[1].split(".")[0]))
    return [(name.split("_")[0], k // images_per_prompt) for k, name in enumerate(names)]


def official_geneval_read(run: Path) -> list[tuple[dict, list[str]]]:
    """GenEval: all-digit sub-folders; metadata.jsonl read with one json.load; samples/ files matching \\d+\\.png."""
    out = []
    for folder in sorted(p for p in run.iterdir() if p.is_dir() and p.name.isdigit()):
        with open(folder / "metadata.jsonl") as f:
            metadata = json.load(f)
        images = sorted(n for n in os.listdir(folder / "samples") if re.fullmatch(r"\d+\.png", n))
        out.append((metadata, images))
    return out


@pytest.fixture(scope="module")
def t2i_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("t2i") / "run"
    rc = main(
        [
            "eval",
            "t2i-compbench",
            *FAST,
            "--categories",
            "color,spatial",
            "--images-per-prompt",
            "2",
            "--limit",
            "3",
            "--batch-size",
            "4",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    return out


def test_t2i_compbench_layout_reads_back_as_the_official_scripts_read_it(t2i_run):
    for category in ("color", "spatial"):
        prompts = read_prompts(category)[:3]
        samples = t2i_run / category / "samples"
        read = official_t2i_read(samples, 2)
        assert len(read) == 6  # 3 prompts x 2 images, nothing else in samples/
        for prompt_from_name, prompt_index in read:
            assert prompt_from_name == prompts[prompt_index]
        names = sorted(os.listdir(samples))
        assert f"{prompts[0]}_000000.png" in names and f"{prompts[2]}_000005.png" in names
        # our record sits beside the official folder, one per image, with the seed of image k = 42 + k
        for idx in range(6):
            record = json.loads((t2i_run / category / "plans" / f"{idx:06d}.json").read_text())
            assert record["prompt"] == prompts[idx // 2]
            assert record["seed"] == 42 + idx % 2
            assert record["image"] == f"{category}/samples/{prompts[idx // 2]}_{idx:06d}.png"
            assert (t2i_run / record["plan"]).is_file()
    run = json.loads((t2i_run / "run.json").read_text())
    assert run["benchmark"] == "t2i-compbench" and run["categories"] == ["color", "spatial"]
    assert run["sampling"]["max_reasoning_tokens"] == 12 and run["model"] == "tiny-random"


def test_geneval_layout_reads_back_as_the_official_scorer_reads_it(tmp_path):
    out = tmp_path / "run"
    assert main(["eval", "geneval", *FAST, "--images-per-prompt", "2", "--limit", "5", "--out", str(out)]) == 0
    metadata = load_metadata()[:5]
    read = official_geneval_read(out)
    assert [m for m, _ in read] == metadata  # every line, in order, byte-for-byte the same JSON object
    assert all(images == ["0000.png", "0001.png"] for _, images in read)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [f"{i:05d}" for i in range(5)]
    record = json.loads((out / "00003" / "plans" / "0001.json").read_text())
    assert record["prompt"] == metadata[3]["prompt"] and record["seed"] == 43


def test_rerun_skips_finished_images_and_adds_new_categories(t2i_run, capsys):
    before = _files(t2i_run)
    rc = main(
        [
            "eval",
            "t2i-compbench",
            *FAST,
            "--categories",
            "color,spatial",
            "--images-per-prompt",
            "2",
            "--limit",
            "3",
            "--out",
            str(t2i_run),
        ]
    )
    assert rc == 0
    assert "0 image(s) sampled, 12 already there" in capsys.readouterr().out
    assert _files(t2i_run) == before


def test_killed_run_resumes_to_the_same_files_as_an_uninterrupted_one(tmp_path):
    args = ["eval", "geneval", *FAST, "--images-per-prompt", "2", "--limit", "6", "--batch-size", "2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gotr1.cli", *args, "--out", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(list(killed.glob("*/samples/*.png"))) < 4 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(killed.glob("*/samples/*.png")))
    assert 4 <= done_before < 12, "the kill came too late to test resuming"
    resumed = subprocess.run(
        [sys.executable, "-m", "gotr1.cli", *args, "--out", str(killed)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{12 - done_before} image(s) sampled, {done_before} already there" in resumed.stdout
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    assert not list(killed.rglob("*.tmp"))
    assert _files(killed) == _files(tmp_path / "whole")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_under_accelerate_write_the_files_of_one(tmp_path):
    args = [
        "eval",
        "t2i-compbench",
        *FAST,
        "--categories",
        "shape",
        "--images-per-prompt",
        "2",
        "--limit",
        "3",
        "--batch-size",
        "2",
    ]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"),
        "--main_process_port",
        str(_free_port()),
        "-m",
        "gotr1.cli",
        *args,
        "--out",
        str(tmp_path / "two"),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "3 image(s) sampled" in done.stdout  # each process its own half
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert _files(tmp_path / "two") == _files(tmp_path / "one")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "t2i-compbench", "--categories", "colour"], "unknown t2i-compbench category 'colour'"),
        (["eval", "geneval", "--categories", "counting,nope"], "unknown geneval category 'nope'"),
        (["eval", "t2i-compbench", "--images-per-prompt", "0"], "argument --images-per-prompt: must be >= 1"),
        (["eval", "t2i-compbench", "--limit", "0"], "argument --limit: must be >= 1"),
        (["eval", "t2i-compbench", "--batch-size", "0"], "argument --batch-size: must be >= 1"),
        (["eval", "shapes", "--limit", "5000"], "--limit 5000"),
        (["eval", "score", "{tmp}"], "no run.json"),
        (["eval", "report", "{tmp}", "--out", "{tmp}/report"], "not a gotr1 eval run"),
    ],
)
def test_bad_input_is_a_one_line_error(argv, message, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gotr1.cli",
            *argv,
            *(["--out", str(tmp_path / "o")] if argv[1] not in ("score", "report") else []),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("gotr1: error")]
    assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_bad_model_path_is_one_line_error_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gotr1.cli",
            "eval",
            "geneval",
            "--model",
            str(tmp_path / "nope"),
            "--limit",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(tmp_path / "nope") in proc.stderr.strip().splitlines()[-1]
    assert not out.exists()


def test_a_run_with_other_settings_is_refused_and_kept(t2i_run, capsys):
    before = _files(t2i_run)
    rc = main(
        [
            "eval",
            "t2i-compbench",
            *FAST,
            "--categories",
            "color",
            "--images-per-prompt",
            "2",
            "--limit",
            "3",
            "--cfg",
            "2",
            "--out",
            str(t2i_run),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "other settings (sampling" in err and "--overwrite" in err
    assert _files(t2i_run) == before


def test_a_folder_of_foreign_files_is_refused(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["eval", "geneval", *FAST, "--limit", "1", "--out", str(tmp_path)]) == 2
    assert "not a gotr1 eval run" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me" and len(list(tmp_path.iterdir())) == 1


def test_a_foreign_file_in_samples_is_named_before_scoring(t2i_run, capsys):
    stray = t2i_run / "color" / "samples" / "notes.txt"
    stray.write_text("x")
    try:
        assert main(["eval", "score", str(t2i_run), "--scorer", "official"]) == 2
        err = capsys.readouterr().err
        assert "notes.txt" in err and "not an official sample name" in err
        assert not (t2i_run / "scores").exists()
    finally:
        stray.unlink()


def test_unknown_scorer_lists_the_known_ones(t2i_run, capsys):
    assert main(["eval", "score", str(t2i_run), "--scorer", "clipscore"]) == 2
    assert "choose from official, judge, detector" in capsys.readouterr().err
