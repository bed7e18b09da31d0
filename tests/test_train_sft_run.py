"""`gotr1 train sft --config`: jsonl + image files, tokenised by the model's own VQ."""

import json
import random

import pytest

from gotr1.cli import main
from gotr1.worlds.shapes.grammar import ShapesGrammar
from gotr1.worlds.shapes.render import layout_scene


def _dataset(tmp_path, n=4):
    rng = random.Random(0)
    lines = []
    for i, prompt in enumerate(ShapesGrammar().prompts("train", n)):
        scene = layout_scene(prompt.meaning, rng, image_size=32)
        scene.image().save(tmp_path / f"img{i}.png")  # 32 px: resized to the model's 16 px on load
        lines.append(json.dumps({"prompt": prompt.text, "chain": scene.chain(), "image": f"img{i}.png"}))
    lines.append(json.dumps({"prompt": "a red circle", "chain": "A red circle.", "image_tokens": [0] * 16}))
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "data.jsonl"


def test_sft_run_trains_and_writes_a_loadable_model(tmp_path):
    data = _dataset(tmp_path)
    config = tmp_path / "sft.yaml"
    config.write_text(
        f"model: tiny-random\ndata: {data.name}\noutput_dir: {tmp_path / 'out'}\n"
        "sft:\n  steps: 3\n  batch_size: 2\n  log_every: 1\n"
    )
    assert main(["train", "sft", "--config", str(config)]) == 0
    report = json.loads((tmp_path / "out" / "sft.json").read_text())
    assert report["records"] == 5 and report["steps_done"] == 3
    assert (tmp_path / "out" / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"prompt": "x", "image": "a.png"}', "data.jsonl:1: missing or empty 'chain'"),
        ('{"prompt": "x", "chain": "y", "image": "nope.png"}', "data.jsonl:1: image 'nope.png' not found"),
        ('{"prompt": "x", "chain": "y", "image_tokens": [1, 2]}', "data.jsonl:1: image_tokens must be 16 integers"),
        ("not json", "data.jsonl:1: invalid JSON"),
    ],
)
def test_bad_records_are_one_line_errors(tmp_path, capsys, line, message):
    (tmp_path / "data.jsonl").write_text(line + "\n")
    config = tmp_path / "sft.yaml"
    config.write_text(f"model: tiny-random\ndata: data.jsonl\noutput_dir: {tmp_path / 'out'}\n")
    assert main(["train", "sft", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_shapes_export_feeds_the_shipped_sft_recipe_in_bf16(tmp_path):
    from pathlib import Path

    from gotr1.config import load_config
    from gotr1.train.run import SFTRun

    recipe = load_config(Path(__file__).resolve().parents[1] / "configs" / "shapes_sft.yaml", SFTRun)
    assert recipe.sft.mixed_precision == "bf16" and recipe.data.endswith("records.jsonl")
    assert main(["shapes", "export-sft", "--out", str(tmp_path / "data"), "--examples", "3"]) == 0
    lines = (tmp_path / "data" / "records.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all((tmp_path / "data" / json.loads(line)["image"]).is_file() for line in lines)
    config = tmp_path / "sft.yaml"
    config.write_text(
        f"model: tiny-random\ndata: data/records.jsonl\noutput_dir: {tmp_path / 'out'}\n"
        "sft:\n  steps: 2\n  batch_size: 2\n  mixed_precision: bf16\n"
    )
    assert main(["train", "sft", "--config", str(config)]) == 0
    report = json.loads((tmp_path / "out" / "sft.json").read_text())
    assert report["records"] == 3 and report["steps_done"] == 2
    assert all(point["image_loss"] == point["image_loss"] for point in report["curve"])  # finite, not NaN
    config.write_text(config.read_text().replace("bf16", "fp8"))
    assert main(["train", "sft", "--config", str(config)]) == 2
