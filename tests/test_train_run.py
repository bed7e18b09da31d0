"""`gotr1 train grpo --config`: the shipped recipe parses, and a minimal run goes end to end."""

import json
from pathlib import Path

import pytest

from gotr1.cli import main
from gotr1.config import load_config
from gotr1.models import builtin_model
from gotr1.train.run import GRPORun

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_shapes_recipe_parses():
    run = load_config(ROOT / "configs" / "shapes_grpo.yaml", GRPORun)
    assert run.reward.combine == "product" and run.grpo.num_generations == 8 and run.grpo.lora_r is None
    assert run.prompts == "shapes:heldout-pairs"


@pytest.mark.skipif(builtin_model() is None, reason="no shipped model")
def test_minimal_grpo_run_writes_metrics_eval_and_weights(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"""
output_dir: {tmp_path / "out"}
prompts: shapes:train
eval_prompts: 2
save_every: 1
keep_last: 1
sample_grid_every: 2
grpo:
  steps: 2
  prompts_per_step: 1
  num_generations: 2
  learning_rate: 1.0e-5
  lora_r: 4
sampling:
  max_reasoning_tokens: 120
  cfg_weight: 3.0
""")
    assert main(["train", "grpo", "--config", str(config)]) == 0
    out = tmp_path / "out"
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
    summary = json.loads((out / "summary.json").read_text())
    assert [e["step"] for e in summary["evaluations"]] == [0, 2]
    assert (out / "final" / "model.safetensors").is_file() and (out / "reward_curve.png").is_file()
    assert [p.name for p in (out / "checkpoints").glob("checkpoint-*")] == ["checkpoint-000002"]
    assert (out / "samples" / "step_000002.png").is_file()
    # --resume continues from checkpoint-000002 with the step budget raised by an override (the cosine schedule
    # follows it, so the change must be allowed)
    resume = ["--resume", "--allow-change", "grpo.steps", "grpo.steps=3"]
    assert main(["train", "grpo", "--config", str(config), *resume]) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_overrides_set_recipe_keys_typed_like_the_file():
    run = load_config(
        ROOT / "configs" / "shapes_grpo.yaml",
        GRPORun,
        ["grpo.lora_r=16", "grpo.lora_target_modules=.*q_proj$", "grpo.loss_type=dapo", "log_with=[tensorboard]"]
        + ["max_minutes=null", "grpo.beta=2e-2", "reward.components=[r_sem, r_pi]", "grpo.lora_r=null"],
    )
    assert run.grpo.lora_r is None and run.grpo.lora_target_modules == ".*q_proj$" and run.grpo.loss_type == "dapo"
    assert run.log_with == ["tensorboard"] and run.max_minutes is None and run.grpo.beta == 0.02
    assert run.reward.components == ["r_sem", "r_pi"] and run.grpo.steps == 400  # the file's other settings kept


@pytest.mark.parametrize(
    "override, message",
    [
        ("grpo.stepz=3", "override grpo.stepz=3: unknown key"),
        ("grpo.loss_type=ppo", "override grpo.loss_type=ppo: must be one of"),
        ("grpo.num_generations=1", "override grpo.num_generations=1: must be >= 2"),
    ],
)
def test_a_bad_override_is_a_one_line_error_naming_it(tmp_path, capsys, override, message):
    config = tmp_path / "run.yaml"
    config.write_text(f"output_dir: {tmp_path / 'out'}\n")
    assert main(["train", "grpo", "--config", str(config), override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{config}: {message}" in err[0]
    assert not (tmp_path / "out").exists()


def test_bad_recipe_is_a_one_line_error(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("grpo:\n  stepz: 3\n")
    assert main(["train", "grpo", "--config", str(config)]) == 2
    assert "bad.yaml:2: grpo.stepz: unknown key" in capsys.readouterr().err


@pytest.mark.parametrize(
    "body, message",
    [
        ("prompts: shapes:tset\n", "prompts: unknown shapes prompt set 'tset'"),
        ("prompts: shapes:heldout-pairs\neval_prompts: 5000\n", "eval_prompts: 5000 would overlap the RL prompts"),
    ],
)
def test_bad_shapes_prompt_settings_are_one_line_errors(tmp_path, capsys, body, message):
    config = tmp_path / "run.yaml"
    config.write_text(f"output_dir: {tmp_path / 'out'}\n" + body)
    assert main(["train", "grpo", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.skipif(builtin_model() is None, reason="no shipped model")
def test_grpo_with_judge_rewards_over_http_and_a_judge_outage(tmp_path, capsys):
    from .judge_servers import fake_judge_server

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle to the left of a blue square\ntwo green squares\n")
    config = tmp_path / "run.yaml"
    with fake_judge_server() as server:
        config.write_text(f"""
output_dir: {tmp_path / "out"}
prompts: {prompts}
save_every: 1
reward:
  source: judge
  combine: product
  judge:
    openai: {{base_urls: [{server.url}], model: fake, backoff_s: 0.01, max_retries: 1}}
grpo:
  steps: 2
  prompts_per_step: 1
  num_generations: 2
  learning_rate: 1.0e-5
  lora_r: 4
sampling:
  max_reasoning_tokens: 120
  cfg_weight: 3.0
""")
        assert main(["train", "grpo", "--config", str(config)]) == 0
        asked = sum(server.stats()["attempts"].values())
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["evaluations"] == []  # text prompts: no shapes evaluation
    judge_stats = summary["rewards"]["judges"]["fake"]
    assert judge_stats["answered"] == judge_stats["requests"] == asked >= 4  # R_sem + R_PI at least, 2 x 2 samples
    assert summary["rewards"]["samples"] == 4
    # The judge is gone now: the run stops with a one-line error after saving a checkpoint.
    config.write_text(config.read_text().replace("steps: 2", "steps: 4"))
    assert main(["train", "grpo", "--config", str(config), "--resume", "--allow-change", "grpo.steps"]) == 2
    assert "samples have no reward" in capsys.readouterr().err
    assert (out / "checkpoints" / "checkpoint-000002").is_dir()
