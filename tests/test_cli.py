"""`gotr1 generate` / `gotr1 convert` end to end on tiny models."""

import json
import subprocess
import sys

from gotr1.cli import main


def test_generate_writes_image_chain_and_plan(tiny_bundle, tmp_path):
    ckpt = tiny_bundle.save(tmp_path / "ckpt")
    out = tmp_path / "out"
    rc = main(
        [
            "generate",
            "--model",
            str(ckpt),
            "--prompt",
            "a red circle to the left of a blue square",
            "--prompt",
            "a green star",
            "--num-chains",
            "2",
            "--num-images",
            "2",
            "--cfg",
            "3",
            "--seed",
            "5",
            "--max-reasoning-tokens",
            "12",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    samples = sorted(out.glob("*/sample_*"))
    assert len(samples) == 4
    first = samples[0]
    for name in ("chain.txt", "chain.json", "image_0.png", "image_1.png", "plan_0.png", "plan_1.png"):
        assert (first / name).is_file(), name
    record = json.loads((first / "chain.json").read_text())
    assert record["prompt"] == "a red circle to the left of a blue square"
    assert record["chain"] == (first / "chain.txt").read_text().rstrip("\n")
    assert {"objects", "problems", "seed", "hit_token_cap"} <= set(record)
    assert record["images"][1] == {"image": "image_1.png", "plan": "plan_1.png"}


def test_generate_is_reproducible_with_a_seed(tiny_bundle, tmp_path):
    ckpt = tiny_bundle.save(tmp_path / "ckpt")
    args = ["generate", "--model", str(ckpt), "--prompt", "a blue square", "--max-reasoning-tokens", "8"]
    main(args + ["--out", str(tmp_path / "a")])
    main(args + ["--out", str(tmp_path / "b")])
    (a,), (b,) = list((tmp_path / "a").glob("*/sample_00")), list((tmp_path / "b").glob("*/sample_00"))
    assert (a / "chain.txt").read_text() == (b / "chain.txt").read_text()
    assert (a / "image_0.png").read_bytes() == (b / "image_0.png").read_bytes()


def test_bad_model_path_is_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "gotr1.cli", "generate", "--model", str(tmp_path / "nope"), "--prompt", "x"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"gotr1: error: {tmp_path / 'nope'}: no such checkpoint directory"]


def test_missing_prompt_is_an_error(capsys):
    assert main(["generate", "--model", "tiny-random"]) == 2
    assert "at least one --prompt" in capsys.readouterr().err


def test_convert_command(tiny_bundle, tmp_path):
    ckpt = tiny_bundle.save(tmp_path / "ckpt")
    assert main(["convert", str(ckpt), str(tmp_path / "converted")]) == 0
    assert (tmp_path / "converted" / "model.safetensors").is_file()
