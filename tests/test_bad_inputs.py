"""Bad input to every command, as a hostile or clumsy user types it: each case exits 2 with one line that
names the culprit, and every file that was there before is byte-identical afterwards.

A case is (id, argv, setup): setup writes files into the case's folder and returns extra argv; `{d}` in
argv is that folder. Cases fail before any model loads, so the table runs in seconds.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from gotr1.cli import main

RECIPE = """\
output_dir: {d}/run
prompts: shapes:train
grpo:
  steps: 2
"""


def recipe(extra: str = "", base: str = RECIPE):
    """setup: a GRPO recipe (the base plus `extra` lines) at {d}/recipe.yaml."""

    def setup(d: Path) -> None:
        (d / "recipe.yaml").write_text(base.format(d=d) + extra)

    return setup


def files(**contents):
    """setup: files (relative path, `__` for `/` -> text or bytes; `{d}` in text is the folder) under the
    case's folder."""

    def setup(d: Path) -> None:
        for name, content in contents.items():
            path = d / name.replace("__", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content if isinstance(content, bytes) else content.replace("{d}", str(d)).encode())

    return setup


def both(*setups):
    def setup(d: Path) -> None:
        for step in setups:
            step(d)

    return setup


def written_by(folder: str, command: str):
    """setup: mark every file now under {d}/folder as written by `command` (gotr1's manifest of its files)."""

    def setup(d: Path) -> None:
        root = d / folder
        written = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        manifest = {"written_by": command, "complete": True, "files": written}
        (root / ".gotr1-output.json").write_text(json.dumps(manifest))

    return setup


def earlier_grpo_run(d: Path) -> None:
    run = d / "run"
    (run / "checkpoints" / "checkpoint-000004").mkdir(parents=True)
    (run / "config.json").write_text('{"model": null}')
    (run / "metrics.jsonl").write_text('{"step": 1}\n')


def sft_records(d: Path) -> None:
    (d / "data.jsonl").write_text(json.dumps({"prompt": "a red circle", "chain": "x", "image_tokens": [1]}) + "\n")


BINARY = bytes(range(256)) * 4
G = ["generate", "--model", "tiny-random"]
P = ["--prompt", "a red circle"]
SFT_RECIPE = "data: data.jsonl\noutput_dir: {d}/sft\nsft:\n  steps: 2\n"

CASES = [
    # --- gotr1 generate: flags -------------------------------------------------------------------------
    ("generate-num-chains-0", [*G, *P, "--num-chains", "0"], None, "--num-chains: must be >= 1"),
    ("generate-num-images-negative", [*G, *P, "--num-images", "-1"], None, "--num-images: must be >= 1"),
    ("generate-cfg-nan", [*G, *P, "--cfg", "nan"], None, "--cfg: expected a finite number"),
    ("generate-cfg-negative", [*G, *P, "--cfg", "-2"], None, "--cfg: must be >= 0.0"),
    ("generate-cfg-word", [*G, *P, "--cfg", "strong"], None, "--cfg: expected a number"),
    ("generate-top-p-2", [*G, *P, "--top-p", "2"], None, "--top-p: must be in (0, 1]"),
    ("generate-top-p-0", [*G, *P, "--top-p", "0"], None, "--top-p: must be in (0, 1]"),
    ("generate-top-k-0", [*G, *P, "--top-k", "0"], None, "--top-k: must be >= 1"),
    ("generate-batch-size-negative", [*G, *P, "--batch-size", "-1"], None, "--batch-size: must be >= 1"),
    (
        "generate-max-reasoning-negative",
        [*G, *P, "--max-reasoning-tokens", "-5"],
        None,
        "--max-reasoning-tokens: must be >= 0",
    ),
    ("generate-seed-negative", [*G, *P, "--seed", "-1"], None, "--seed: must be >= 0"),
    ("generate-temperature-inf", [*G, *P, "--text-temperature", "inf"], None, "--text-temperature: expected a finite"),
    (
        "generate-image-temperature-negative",
        [*G, *P, "--image-temperature", "-0.5"],
        None,
        "--image-temperature: must be >= 0.0",
    ),
    ("generate-dtype-unknown", [*G, *P, "--dtype", "float8"], None, "--dtype: invalid choice: 'float8'"),
    ("generate-device-cuda", [*G, *P, "--device", "cuda"], None, "--device cuda: this machine has no CUDA device"),
    ("generate-device-unknown", [*G, *P, "--device", "banana"], None, "--device 'banana': not a device"),
    ("generate-unknown-flag", [*G, *P, "--temperature", "1"], None, "unrecognized arguments: --temperature"),
    # --- gotr1 generate: files -------------------------------------------------------------------------
    ("generate-no-prompt", [*G], None, "give at least one --prompt"),
    ("generate-empty-prompt", [*G, "--prompt", "  "], None, "--prompt: an empty prompt"),
    ("generate-prompts-file-missing", [*G, "--prompts-file", "{d}/none.txt"], None, "none.txt: no such prompts file"),
    (
        "generate-prompts-file-binary",
        [*G, "--prompts-file", "{d}/bin.txt"],
        files(**{"bin.txt": BINARY}),
        "bin.txt: not a text file",
    ),
    (
        "generate-out-is-a-file",
        [*G, *P, "--out", "{d}/taken"],
        files(taken="mine"),
        "taken: exists and is not a folder",
    ),
    (
        "generate-out-under-a-file",
        [*G, *P, "--out", "{d}/taken/sub"],
        files(taken="mine"),
        "taken/sub: cannot write there",
    ),
    (
        "generate-out-foreign",
        [*G, *P, "--out", "{d}/photos"],
        files(photos__holiday_jpg="jpeg"),
        "photos: holds files that are not gotr1 generate output (holiday_jpg)",
    ),
    (
        "generate-out-earlier-run",
        [*G, *P, "--out", "{d}/gen"],
        both(
            files(**{"gen__generate.json": "{}", "gen__0000_a_red_circle__sample_00__chain.json": "{}"}),
            written_by("gen", "gotr1 generate"),
        ),
        "gen: holds an earlier gotr1 generate; pass --overwrite",
    ),
    (
        "generate-overwrite-foreign",
        [*G, *P, "--out", "{d}/photos", "--overwrite"],
        files(photos__holiday_jpg="jpeg"),
        "holds files that are not gotr1 generate output",
    ),
    ("generate-prompts-file-is-a-folder", [*G, "--prompts-file", "{d}"], None, "no such prompts file"),
    ("generate-model-missing", ["generate", *P, "--model", "{d}/nope"], None, "nope: no such checkpoint directory"),
    (
        "generate-model-not-checkpoint",
        ["generate", *P, "--model", "{d}/plain"],
        files(plain__a_txt="x"),
        "plain: not a checkpoint directory (no config.json)",
    ),
    (
        "generate-prompt-longer-than-context",
        [*G, "--prompt", "circle " * 3000, "--out", "{d}/o"],
        None,
        "tokens with the chat template; the model's context of 2048",
    ),
    # --- gotr1 convert ---------------------------------------------------------------------------------
    (
        "convert-dst-foreign",
        ["convert", "tiny-random", "{d}/dst"],
        files(dst__notes_txt="keep"),
        "dst: holds files that are not gotr1 convert output",
    ),
    (
        "convert-dst-earlier-checkpoint",
        ["convert", "{d}/nope", "{d}/dst"],
        both(files(**{"dst__config.json": "{}", "dst__model.safetensors": b"x"}), written_by("dst", "gotr1 convert")),
        "dst: holds an earlier gotr1 convert; pass --overwrite",
    ),
    ("convert-dtype-unknown", ["convert", "{d}/src", "{d}/dst", "--dtype", "int4"], None, "--dtype: invalid choice"),
    ("convert-src-missing", ["convert", "{d}/nope", "{d}/dst"], None, "nope: no such checkpoint directory"),
    # --- gotr1 reward ----------------------------------------------------------------------------------
    ("reward-dir-missing", ["reward", "{d}/none"], None, "none: no such directory"),
    ("reward-dir-empty", ["reward", "{d}/empty"], files(empty__x_txt="x"), "no chain.json found"),
    (
        "reward-judge-missing",
        ["reward", "{d}/s", "--judge", "{d}/none.yaml"],
        files(**{"s__a__chain.json": "{}"}),
        "none.yaml: no such config file",
    ),
    ("reward-batch-size-0", ["reward", "{d}", "--batch-size", "0"], None, "--batch-size: must be >= 1"),
    (
        "reward-judge-binary",
        ["reward", "{d}/s", "--judge", "{d}/j.yaml"],
        files(**{"j.yaml": BINARY, "s__a__chain.json": '{"prompt": "p", "chain": "c"}'}),
        "j.yaml: not a text file",
    ),
    (
        "reward-judge-duplicate-key",
        ["reward", "{d}/s", "--judge", "{d}/j.yaml"],
        files(**{"j.yaml": "source: judge\ncombine: sum\ncombine: product\n", "s__a__chain.json": "{}"}),
        "j.yaml:3: combine: key given twice",
    ),
    (
        "reward-judge-timeout-nan",
        ["reward", "{d}/s", "--judge", "{d}/j.yaml"],
        files(**{"j.yaml": "judge:\n  openai:\n    timeout_s: .nan\n", "s__a__chain.json": "{}"}),
        "j.yaml:3: judge.openai.timeout_s: expected a finite number",
    ),
    (
        "reward-judge-bad-url",
        ["reward", "{d}/s", "--judge", "{d}/j.yaml"],
        files(**{"j.yaml": "judge:\n  openai:\n    base_urls: [localhost:8000]\n", "s__a__chain.json": "{}"}),
        "judge.openai.base_urls: 'localhost:8000' is not an http(s) URL",
    ),
    (
        "reward-judge-image-pixels",
        ["reward", "{d}/s", "--judge", "{d}/j.yaml"],
        files(**{"j.yaml": "judge:\n  image_pixels: 10\n", "s__a__chain.json": "{}"}),
        "judge.image_pixels: must be >= 784",
    ),
    (
        "reward-missing-fraction",
        ["reward", "{d}/s", "--judge", "{d}/j.yaml"],
        files(**{"j.yaml": "max_missing_fraction: 1.5\n", "s__a__chain.json": "{}"}),
        "j.yaml:1: max_missing_fraction: must be >= 0 and <= 1",
    ),
    (
        "reward-chain-json-list",
        ["reward", "{d}/s", "--judge", "{d}/j.yaml"],
        files(**{"j.yaml": "source: judge\n", "s__a__chain.json": "[1, 2]"}),
        "expected a JSON object, got a list",
    ),
    # --- gotr1 train grpo: the recipe ------------------------------------------------------------------
    ("grpo-config-missing", ["train", "grpo", "--config", "{d}/none.yaml"], None, "none.yaml: no such config file"),
    (
        "grpo-config-binary",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        files(**{"recipe.yaml": BINARY}),
        "recipe.yaml: not a text file",
    ),
    (
        "grpo-steps-negative",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe(base=RECIPE.replace("2", "-3")),
        "recipe.yaml:4: grpo.steps: must be >= 1, got -3",
    ),
    (
        "grpo-beta-negative",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("  beta: -0.1\n"),
        "recipe.yaml:5: grpo.beta: must be >= 0",
    ),
    (
        "grpo-lr-zero",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("  learning_rate: 0\n"),
        "grpo.learning_rate: must be > 0",
    ),
    (
        "grpo-lr-schedule-linear",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("  lr_schedule: linear\n"),
        "recipe.yaml:5: grpo.lr_schedule: must be one of cosine, constant, got 'linear'",
    ),
    (
        "grpo-loss-type-typo",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("  loss_type: dr-grpo\n"),
        "grpo.loss_type: must be one of grpo, dr_grpo, dapo",
    ),
    (
        "grpo-image-logprob-typo",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("  image_logprob: cfgg\n"),
        "grpo.image_logprob: must be one of conditional, cfg",
    ),
    (
        "grpo-micro-batch-0",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("  micro_batch_size: 0\n"),
        "grpo.micro_batch_size: must be >= 1",
    ),
    (
        "grpo-epsilon-2",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("  epsilon: 2\n"),
        "grpo.epsilon: must be >= 0 and <= 1",
    ),
    (
        "grpo-lora-r-0",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("  lora_r: 0\n"),
        "grpo.lora_r: must be >= 1",
    ),
    (
        "grpo-duplicate-key",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("  steps: 5\n"),
        "recipe.yaml:5: grpo.steps: key given twice (line 4 and here)",
    ),
    (
        "grpo-unknown-key",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("  lr: 0.1\n"),
        "recipe.yaml:5: grpo.lr: unknown key",
    ),
    (
        "grpo-wrong-type",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("  beta: high\n"),
        "grpo.beta: expected a number, got 'high'",
    ),
    (
        "grpo-eval-prompts-0",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("eval_prompts: 0\n"),
        "eval_prompts: must be >= 1",
    ),
    (
        "grpo-max-minutes-negative",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("max_minutes: -1\n"),
        "max_minutes: must be > 0",
    ),
    (
        "grpo-combine-unknown",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("reward:\n  source: shapes\n  combine: max\n"),
        "reward.combine: must be one of",
    ),
    (
        "grpo-reward-missing-with-text-prompts",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        both(recipe(base=RECIPE.replace("shapes:train", "prompts.txt")), files(**{"prompts.txt": "a cat\n"})),
        "the shapes reward needs shapes prompts",
    ),
    (
        "grpo-unknown-prompt-set",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe(base=RECIPE.replace("shapes:train", "shapes:tets")),
        "unknown shapes prompt set 'tets'",
    ),
    # --- gotr1 train grpo: the output folder -----------------------------------------------------------
    (
        "grpo-output-earlier-run",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        both(recipe(), earlier_grpo_run, written_by("run", "GRPO run")),
        "run: holds an earlier GRPO run; pass --resume to continue it, pass --overwrite",
    ),
    (
        "grpo-output-foreign",
        ["train", "grpo", "--config", "{d}/recipe.yaml", "--overwrite"],
        both(recipe(), files(run__thesis_tex="draft")),
        "run: holds files that are not GRPO run output (thesis_tex)",
    ),
    (
        "grpo-resume-nothing",
        ["train", "grpo", "--config", "{d}/recipe.yaml", "--resume"],
        recipe(),
        "--resume: no checkpoint under",
    ),
    (
        "grpo-resume-and-overwrite",
        ["train", "grpo", "--config", "{d}/recipe.yaml", "--resume", "--overwrite"],
        recipe(),
        "--resume continues the run in output_dir, --overwrite replaces it",
    ),
    (
        "grpo-resume-other-lora-rank",
        ["train", "grpo", "--config", "{d}/recipe.yaml", "--resume"],
        both(
            recipe("  lora_r: 8\n"),
            earlier_grpo_run,
            files(**{"run__checkpoints__checkpoint-000004__trainer_state.json": '{"config": {"lora_r": 32}}'}),
        ),
        "checkpoint-000004 was trained with grpo.lora_r=32, the recipe says 8",
    ),
    (
        "grpo-invalid-recipe-keeps-earlier-run",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        both(recipe("  beta: -1\n"), earlier_grpo_run),
        "grpo.beta: must be >= 0",
    ),
    (
        "grpo-output-dir-empty-string",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe(base=RECIPE.replace("{d}/run", "''")),
        "output_dir: must name a folder",
    ),
    (
        "grpo-lora-targets-unknown",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("  lora_r: 4\n  lora_target_modules: no_such_layer\n"),
        "grpo.lora_target_modules: peft cannot add LoRA",
    ),
    # --- gotr1 train sft -------------------------------------------------------------------------------
    (
        "sft-data-binary",
        ["train", "sft", "--config", "{d}/sft.yaml"],
        files(**{"sft.yaml": SFT_RECIPE, "data.jsonl": BINARY}),
        "data.jsonl: not a text file",
    ),
    (
        "sft-data-line-not-an-object",
        ["train", "sft", "--config", "{d}/sft.yaml"],
        files(**{"sft.yaml": SFT_RECIPE, "data.jsonl": "[1, 2]\n"}),
        "data.jsonl:1",
    ),
    (
        "sft-batch-size-0",
        ["train", "sft", "--config", "{d}/sft.yaml"],
        files(**{"sft.yaml": SFT_RECIPE + "  batch_size: 0\n"}),
        "sft.yaml:5: sft.batch_size: must be >= 1",
    ),
    (
        "sft-uncond-prob",
        ["train", "sft", "--config", "{d}/sft.yaml"],
        files(**{"sft.yaml": SFT_RECIPE + "  uncond_prob: 1.5\n"}),
        "sft.uncond_prob: must be >= 0 and <= 1",
    ),
    (
        "sft-data-key-missing",
        ["train", "sft", "--config", "{d}/sft.yaml"],
        files(**{"sft.yaml": "output_dir: x\n"}),
        "missing required key 'data'",
    ),
    (
        "sft-output-earlier-run",
        ["train", "sft", "--config", "{d}/sft.yaml"],
        both(files(**{"sft.yaml": SFT_RECIPE, "sft__sft.json": "{}"}), sft_records, written_by("sft", "SFT run")),
        "sft: holds an earlier SFT run; pass --overwrite",
    ),
    (
        "sft-overwrite-bad-data-keeps-the-earlier-run",
        ["train", "sft", "--config", "{d}/sft.yaml", "--overwrite"],
        both(
            files(**{"sft.yaml": SFT_RECIPE, "data.jsonl": BINARY, "sft__sft.json": "{}"}), written_by("sft", "SFT run")
        ),
        "data.jsonl: not a text file",
    ),
    (
        "sft-output-holds-its-data",
        ["train", "sft", "--config", "{d}/sft.yaml", "--overwrite"],
        both(files(**{"sft.yaml": SFT_RECIPE.replace("{d}/sft", "{d}")}), sft_records),
        "contains this command's input",
    ),
    # --- the output policy: inputs checked before an earlier output changes, never an input ------------
    (
        "generate-overwrite-typo-model-keeps-the-earlier-output",
        ["generate", "--model", "{d}/typo", *P, "--out", "{d}/g", "--overwrite"],
        both(
            files(**{"g__generate.json": "{}", "g__0000_a__sample_00__chain.json": "{}"}),
            written_by("g", "gotr1 generate"),
        ),
        "typo: no such checkpoint directory",
    ),
    (
        "convert-into-its-own-source",
        ["convert", "{d}/src", "{d}/src", "--overwrite"],
        files(**{"src__config.json": "{}", "src__model.safetensors": b"x"}),
        "src: is this command's input",
    ),
    (
        "eval-report-foreign-report-html",
        ["eval", "report", "{d}/run", "--out", "{d}/rep", "--overwrite"],
        files(**{"rep__report.html": "<p>mine</p>", "run__run.json": "{}"}),
        "rep: holds files that are not gotr1 eval report output",
    ),
    # --- gotr1 shapes ----------------------------------------------------------------------------------
    (
        "shapes-export-examples-negative",
        ["shapes", "export-sft", "--examples", "-3", "--out", "{d}/x"],
        None,
        "--examples: must be >= 1, got -3",
    ),
    ("shapes-pretrain-examples-0", ["shapes", "pretrain", "--examples", "0"], None, "--examples: must be >= 1"),
    ("shapes-pretrain-lr-0", ["shapes", "pretrain", "--lr", "0"], None, "--lr: must be > 0"),
    (
        "shapes-pretrain-device-cuda",
        ["shapes", "pretrain", "--device", "cuda", "--out", "{d}/m"],
        None,
        "no CUDA device",
    ),
    (
        "shapes-pretrain-no-tokenizers",
        ["shapes", "pretrain", "--tokenizers", "{d}/none", "--out", "{d}/m"],
        None,
        "none",
    ),
    (
        "shapes-export-out-foreign",
        ["shapes", "export-sft", "--examples", "2", "--out", "{d}/x"],
        files(x__mine_txt="mine"),
        "x: holds files that are not SFT export output",
    ),
    (
        "shapes-build-tokenizer-out-earlier",
        ["shapes", "build-tokenizer", "--out", "{d}/t"],
        both(files(**{"t__tokenizers.json": "{}"}), written_by("t", "tokenizer build")),
        "t: holds an earlier tokenizer build; pass --overwrite",
    ),
    # --- gotr1 eval (more in test_eval_sampling.py) ----------------------------------------------------
    ("eval-device-unknown", ["eval", "geneval", "--device", "gpu0", "--out", "{d}/e"], None, "--device 'gpu0'"),
    ("eval-score-a-file", ["eval", "score", "{d}/taken"], files(taken="mine"), "no run.json"),
    (
        "eval-out-is-a-file",
        ["eval", "geneval", "--model", "tiny-random", "--limit", "1", "--out", "{d}/taken"],
        files(taken="mine"),
        "taken: exists and is not a folder",
    ),
]

# Issue 21, item 5: tracebacks and accepted nonsense a tester found. Each is refused before any model loads
# (test_refused_before_the_model_loads below runs them with model loading made to fail).
PROMPTS_RECIPE = RECIPE.replace("shapes:train", "prompts.txt")
TOO_LATE = [
    ("generate-seed-past-int64", [*G, *P, "--seed", str(2**63)], None, f"--seed: must be <= {2**63 - 1}"),
    (
        "generate-seeds-of-the-prompts-past-int64",
        [*G, "--prompt", "a", "--prompt", "b", "--seed", str(2**63 - 1)],
        None,
        "2 seeds from it (one per prompt or image) pass",
    ),
    ("generate-cfg-1e308", [*G, *P, "--cfg", "1e308"], None, "--cfg: must be <= 100.0"),
    ("generate-temperature-1e308", [*G, *P, "--text-temperature", "1e308"], None, "--text-temperature: must be <="),
    (
        "generate-prompts-file-empty",
        [*G, "--prompts-file", "{d}/p.txt"],
        files(**{"p.txt": "\n   \n"}),
        "p.txt: the prompts file holds no prompts",
    ),
    ("serve-port-70000", ["serve", "--model", "tiny-random", "--port", "70000"], None, "--port: must be <= 65535"),
    ("serve-body-limit", ["serve", "--model", "tiny-random", "--max-body-bytes", "10"], None, "--max-body-bytes"),
    ("demo-port-70000", ["demo", "--model", "tiny-random", "--port", "70000"], None, "--port: must be <= 65535"),
    ("demo-port-0", ["demo", "--model", "tiny-random", "--port", "0"], None, "--port 0: the demo needs a fixed port"),
    (
        "serve-host-unresolvable",
        ["serve", "--model", "tiny-random", "--host", "no-such-host.invalid"],
        None,
        "--host no-such-host.invalid: cannot resolve it",
    ),
    (
        "demo-host-unresolvable",
        ["demo", "--model", "tiny-random", "--host", "no-such-host.invalid"],
        None,
        "--host no-such-host.invalid: cannot resolve it",
    ),
    (
        "serve-cfg-1e308",
        ["serve", "--model", "tiny-random", "--cfg", "1e308"],
        None,
        "--cfg: must be <= 100.0",
    ),
    (
        "shapes-pretrain-width-not-split-by-heads",
        ["shapes", "pretrain", "--hidden-size", "130", "--heads", "4", "--out", "{d}/m"],
        None,
        "--hidden-size 130 with --heads 4: the width must split into 4 heads",
    ),
    (
        "shapes-export-seed-past-int64",
        ["shapes", "export-sft", "--seed", str(2**63), "--out", "{d}/x"],
        None,
        "--seed: must be <=",
    ),
    (
        "grpo-lora-targets-invalid-regex",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("  lora_target_modules: 'q_proj|(v_proj'\n"),
        "recipe.yaml:5: grpo.lora_target_modules: not a valid regular expression",
    ),
    (
        "grpo-recipe-empty",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        files(**{"recipe.yaml": ""}),
        "recipe.yaml: the config file is empty",
    ),
    (
        "grpo-recipe-only-comments",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        files(**{"recipe.yaml": "# steps: 5\n\n"}),
        "recipe.yaml: the config file is empty",
    ),
    (
        "grpo-one-generation-per-prompt",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("  num_generations: 1\n"),
        "recipe.yaml:5: grpo.num_generations: must be >= 2",
    ),
    (
        "grpo-eval-prompts-more-than-held",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("eval_prompts: 100000\n"),
        "eval_prompts: 100000 is more than the held-out evaluation holds: it draws from the first 2000",
    ),
    (
        "grpo-cfg-1e308",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("sampling:\n  cfg_weight: 1.0e+308\n"),
        "sampling.cfg_weight: must be >= 0 and <= 100",
    ),
    (
        "grpo-image-temperature-1e308",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("sampling:\n  image_temperature: 1.0e+308\n"),
        "sampling.image_temperature: must be >= 0 and <= 100",
    ),
    (
        "grpo-sampling-key-under-grpo",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe("  cfg_weight: 3.0\n"),
        "sampling.cfg_weight",
    ),
    (
        "grpo-prompts-file-empty",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        both(recipe(base=PROMPTS_RECIPE), files(**{"prompts.txt": "\n\n"})),
        "prompts: {d}/prompts.txt: the file is empty (no prompts)",
    ),
    (
        "grpo-prompts-file-binary",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        both(recipe(base=PROMPTS_RECIPE), files(**{"prompts.txt": BINARY})),
        "prompts: {d}/prompts.txt: not a text file",
    ),
    (
        "grpo-prompts-file-missing",
        ["train", "grpo", "--config", "{d}/recipe.yaml"],
        recipe(base=PROMPTS_RECIPE),
        "prompts: prompts.txt: no such file or directory",
    ),
    ("eval-categories-empty", ["eval", "shapes", "--categories", "", "--out", "{d}/e"], None, "--categories: names"),
    (
        "eval-scorer-unknown",
        ["eval", "shapes", "--model", "tiny-random", "--scorer", "banana", "--out", "{d}/e"],
        None,
        "--scorer 'banana': shapes has no such scorer; choose from shapes",
    ),
    (
        "eval-judge-missing",
        ["eval", "geneval", "--scorer", "judge", "--judge", "{d}/none.yaml", "--out", "{d}/e"],
        None,
        "cannot use the judge config: {d}/none.yaml: no such file",
    ),
    (
        "eval-judge-invalid",
        ["eval", "t2i-compbench", "--scorer", "judge", "--judge", "{d}/j.yaml", "--out", "{d}/e"],
        files(**{"j.yaml": "judge:\n  image_pixels: 10\n"}),
        "judge.image_pixels: must be >= 784",
    ),
    (
        "eval-geneval-seeds-past-int64",
        ["eval", "geneval", "--model", "tiny-random", "--seed", str(2**63 - 2), "--out", "{d}/e"],
        None,
        f"--seed {2**63 - 2}: 4 seeds from it",
    ),
    (
        "eval-cfg-1e308",
        ["eval", "shapes", "--model", "tiny-random", "--cfg", "1e308", "--out", "{d}/e"],
        None,
        "--cfg: must be <= 100.0",
    ),
    (
        "eval-score-categories-empty",
        ["eval", "score", "{d}/run", "--categories", " , "],
        files(**{"run__run.json": '{"benchmark": "shapes"}'}),
        "--categories: names nothing",
    ),
    (
        "eval-score-scorer-model-role-unknown",
        ["eval", "score", "{d}/run", "--scorer-model", "blipp=/models/blip"],
        files(**{"run__run.json": '{"benchmark": "t2i-compbench", "categories": ["color_val"]}'}),
        "--scorer-model blipp=...: the official scorer of t2i-compbench has no 'blipp'; its roles: blip, clip",
    ),
    (
        "eval-score-scorer-model-for-a-scorer-without-models",
        ["eval", "score", "{d}/run", "--scorer", "judge", "--scorer-model", "clip=x"],
        files(**{"run__run.json": '{"benchmark": "geneval", "categories": ["single_object"]}'}),
        "the judge scorer of geneval has no 'clip'; it loads no model to replace",
    ),
]
CASES += TOO_LATE


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("argv, setup, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_the_culprit_and_nothing_is_lost(argv, setup, message, tmp_path, capsys):
    if setup is not None:
        setup(tmp_path)
    before = _snapshot(tmp_path)
    argv = [a.replace("{d}", str(tmp_path)) for a in argv]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("gotr1: error:")]  # (a model load's bar aside)
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert message.replace("{d}", str(tmp_path)) in lines[0], lines[0]
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing that was there changed


@pytest.fixture
def no_model_loads(monkeypatch):
    """Loading a model fails loudly: what these cases check must be found before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad input was found")

    monkeypatch.setattr("gotr1.models.load_model", refuse)


@pytest.mark.parametrize("argv, setup, message", [c[1:] for c in TOO_LATE], ids=[c[0] for c in TOO_LATE])
def test_refused_before_the_model_loads(argv, setup, message, tmp_path, capsys, no_model_loads):
    test_bad_input_is_one_line_naming_the_culprit_and_nothing_is_lost(argv, setup, message, tmp_path, capsys)


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_port_in_use_is_refused_before_the_model_loads(command, tmp_path, capsys, no_model_loads):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc = main([command, "--model", "tiny-random", "--port", str(port)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    line = f"gotr1: error: --port {port}: 127.0.0.1:{port} is already in use; choose another --port"
    assert err.strip().splitlines() == [line]
