"""`gotr1 generate` / `gotr1 convert` end to end on tiny models."""

import json
import logging
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


def test_prompts_file_bom_is_stripped_and_logged_prompts_escape_control_characters(tmp_path, caplog):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes("\ufeffa red circle\na \x1b[31mblue\x1b[0m square\n".encode())
    out = tmp_path / "out"
    argv = ["generate", "--model", "tiny-random", "--prompts-file", str(prompts), "--max-reasoning-tokens", "4"]
    with caplog.at_level(logging.INFO, logger="gotr1"):
        assert main([*argv, "--out", str(out)]) == 0
    assert json.loads((out / "generate.json").read_text())["prompts"][0] == "a red circle"
    assert (out / "0000_a_red_circle").is_dir()
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "gotr1")
    assert "\x1b" not in logged and "a \\x1b[31mblue\\x1b[0m square: " in logged, logged


def test_a_too_long_prompt_is_one_gotr1_line_without_transformers_warning(tmp_path, capsys, monkeypatch):
    from transformers import tokenization_utils_base

    warned = []  # transformers' own logger writes past pytest's capture: watch the call itself
    monkeypatch.setattr(tokenization_utils_base.logger, "warning", lambda message, *a, **k: warned.append(message))
    rc = main(["generate", "--model", "tiny-random", "--prompt", "circle " * 3000, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "tokens with the chat template" in err
    assert not [w for w in warned if "Token indices sequence length" in str(w)], warned
