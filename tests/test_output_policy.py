"""The output policy, case by case (issue 21): inputs are checked before an existing output changes,
``--overwrite`` replaces only gotr1's own files (by the folder's manifest) and only once the new output is
whole, an output is never one of the command's inputs, and runs refuse to continue with other settings.

Each case asserts rc, the one ``gotr1: error:`` line, and which files are byte-identical afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gotr1.cli import main
from gotr1.outputs import MANIFEST, staging_folder

TINY = ["--model", "tiny-random", "--max-reasoning-tokens", "8"]
GENERATE = ["generate", *TINY, "--prompt", "a red circle"]
EVAL = ["eval", "shapes", *TINY, "--limit", "1", "--categories", "val/color"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run(argv: list[str], capsys) -> tuple[int, list[str]]:
    """rc and the `gotr1: error:` lines of one command."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return rc, [line for line in err.splitlines() if line.startswith("gotr1: error:")]


def refused(argv, capsys, message: str) -> None:
    rc, errors = run(argv, capsys)
    assert rc == 2 and len(errors) == 1 and message in errors[0], (rc, errors)


def ours(folder: Path) -> set[str]:
    return set(json.loads((folder / MANIFEST).read_text())["files"])


# --- never an input ----------------------------------------------------------------------------------------


def test_convert_into_its_own_source_is_refused_and_the_source_kept(tmp_path, tiny_bundle, capsys):
    src = tiny_bundle.save(tmp_path / "src")
    before = snapshot(tmp_path)
    refused(["convert", src, src, "--overwrite"], capsys, "is this command's input")
    refused(["convert", src, tmp_path, "--overwrite"], capsys, "contains this command's input")
    assert snapshot(tmp_path) == before


def test_an_output_that_holds_the_model_or_the_runs_read_is_refused(tmp_path, tiny_bundle, capsys):
    model = tiny_bundle.save(tmp_path / "ckpt")
    before = snapshot(tmp_path)
    refused(["generate", "--model", model, "--prompt", "a red circle", "--out", tmp_path], capsys, "input")
    refused(["eval", "report", model, "--out", model], capsys, "is this command's input")
    assert snapshot(tmp_path) == before


# --- validation before anything changes ------------------------------------------------------------------


def test_generate_overwrite_with_a_typo_in_the_model_leaves_the_earlier_output_whole(tmp_path, capsys):
    out = tmp_path / "g"
    assert run([*GENERATE, "--out", out], capsys)[0] == 0
    before = snapshot(tmp_path)
    refused(
        [*GENERATE[:1], "--model", tmp_path / "typo", "--prompt", "a red circle", "--overwrite", "--out", out],
        capsys,
        "typo",
    )
    assert snapshot(tmp_path) == before
    assert not staging_folder(out).exists()


def test_convert_overwrite_with_a_missing_source_leaves_the_earlier_checkpoint_whole(tmp_path, tiny_bundle, capsys):
    src = tiny_bundle.save(tmp_path / "src")
    dst = tmp_path / "dst"
    assert run(["convert", src, dst], capsys)[0] == 0
    before = snapshot(tmp_path)
    refused(["convert", tmp_path / "nope", dst, "--overwrite"], capsys, "nope")
    assert snapshot(tmp_path) == before


def test_a_failure_while_replacing_leaves_the_earlier_output_whole(tmp_path, capsys, monkeypatch):
    out = tmp_path / "g"
    assert run([*GENERATE, "--out", out, "--prompt", "a blue square"], capsys)[0] == 0
    before = snapshot(tmp_path)
    from gotr1.model import sampler

    calls = []
    real = sampler.TwoPhaseSampler.generate

    def fail_second_batch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory (a stand-in)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(sampler.TwoPhaseSampler, "generate", fail_second_batch)
    with pytest.raises(RuntimeError):
        main([*GENERATE, "--prompt", "a blue square", "--batch-size", "1", "--overwrite", "--out", str(out)])
    assert snapshot(tmp_path / "g") == {k.removeprefix("g/"): v for k, v in before.items()}
    partial = staging_folder(out)
    assert ours(partial) == {p for p in snapshot(partial) if p != MANIFEST}  # the partial replacement is gotr1's
    monkeypatch.setattr(sampler.TwoPhaseSampler, "generate", real)
    assert run([*GENERATE, "--prompt", "a blue square", "--overwrite", "--out", out], capsys)[0] == 0
    assert not partial.exists() and len(list(out.glob("*/sample_*"))) == 2


# --- --overwrite replaces only gotr1's files -----------------------------------------------------------------


def test_overwrite_keeps_the_users_files_and_replaces_gotr1s(tmp_path, capsys):
    out = tmp_path / "g"
    assert run([*GENERATE, "--out", out, "--num-chains", "2"], capsys)[0] == 0
    (out / "NOTES.md").write_text("my notes")
    (out / "0000_a_red_circle" / "keep.txt").write_text("inside a folder gotr1 made")
    assert run([*GENERATE, "--out", out, "--overwrite", "--seed", "3"], capsys)[0] == 0
    assert (out / "NOTES.md").read_text() == "my notes"
    assert (out / "0000_a_red_circle" / "keep.txt").read_text() == "inside a folder gotr1 made"
    assert len(list(out.glob("*/sample_*"))) == 1  # the earlier two samples replaced by the new one
    assert "NOTES.md" not in ours(out) and json.loads((out / "generate.json").read_text())["sampling"]["seed"] == 3


def test_eval_overwrite_keeps_the_users_notes(tmp_path, capsys):
    out = tmp_path / "r"
    assert run([*EVAL, "--out", out], capsys)[0] == 0
    (out / "NOTES.md").write_text("why this run")
    refused([*EVAL, "--out", out, "--cfg", "2"], capsys, "sampling.cfg_weight: 5.0 in the run, now 2.0")
    assert run([*EVAL, "--out", out, "--cfg", "2", "--overwrite"], capsys)[0] == 0
    assert (out / "NOTES.md").read_text() == "why this run"
    assert json.loads((out / "run.json").read_text())["sampling"]["cfg_weight"] == 2.0
    assert not staging_folder(out).exists()


def test_eval_resume_with_another_dtype_is_refused_naming_it(tmp_path, capsys):
    out = tmp_path / "r"
    assert run([*EVAL, "--out", out], capsys)[0] == 0
    before = snapshot(tmp_path)
    refused([*EVAL, "--out", out, "--dtype", "bfloat16"], capsys, "dtype: 'float32' in the run, now 'bfloat16'")
    assert snapshot(tmp_path) == before


def test_eval_report_never_replaces_a_file_it_did_not_write(tmp_path, capsys):
    run_dir = tmp_path / "r"
    assert run([*EVAL, "--out", run_dir], capsys)[0] == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("<p>my own report</p>")
    before = snapshot(tmp_path)
    refused(["eval", "report", run_dir, "--out", mine, "--overwrite"], capsys, "not gotr1 eval report output")
    assert snapshot(tmp_path) == before
    rep = tmp_path / "rep"
    assert run(["eval", "report", run_dir, "--out", rep], capsys)[0] == 0
    refused(["eval", "report", run_dir, "--out", rep], capsys, "pass --overwrite")
    assert run(["eval", "report", run_dir, "--out", rep, "--overwrite"], capsys)[0] == 0


def test_a_killed_replacement_continues_where_it_stopped(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    two = [*EVAL[:-1], "val/color,val/shape"]
    assert run([*two, "--out", out], capsys)[0] == 0
    before = snapshot(out)
    from gotr1.model import sampler

    real = sampler.TwoPhaseSampler.generate
    calls = []

    def die_on_second(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(sampler.TwoPhaseSampler, "generate", die_on_second)
    assert main([str(a) for a in [*two, "--out", out, "--cfg", "2", "--overwrite", "--batch-size", "1"]]) == 130
    assert snapshot(out) == before  # the earlier run is whole
    monkeypatch.setattr(sampler.TwoPhaseSampler, "generate", real)
    capsys.readouterr()
    assert main([str(a) for a in [*two, "--out", out, "--cfg", "2", "--overwrite"]]) == 0
    assert "1 image(s) sampled, 1 already there" in capsys.readouterr().out  # the staging folder's first image
    records = [json.loads(p.read_text()) for p in out.rglob("plans/*.json")]
    assert len(records) == 2 and len({r["run_id"] for r in records}) == 1


# --- GRPO: --overwrite and --resume -------------------------------------------------------------------------

RECIPE = """\
output_dir: {out}
model: tiny-random
prompts: shapes:train
eval_prompts: 1
save_every: 1
grpo:
  steps: 2
  prompts_per_step: 1
  num_generations: 2
  lora_r: 4
  learning_rate: {lr}
sampling:
  max_reasoning_tokens: 8
"""


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpo")
    (root / "run.yaml").write_text(RECIPE.format(out=root / "run", lr=1e-5))
    assert main(["train", "grpo", "--config", str(root / "run.yaml")]) == 0
    return root


def test_grpo_resume_with_another_learning_rate_is_refused_unless_allowed(grpo_run, capsys):
    out, recipe = grpo_run / "run", grpo_run / "changed.yaml"
    recipe.write_text(RECIPE.format(out=out, lr=2e-5).replace("save_every: 1", "save_every: 2"))
    before = snapshot(grpo_run)
    refused(
        ["train", "grpo", "--config", recipe, "--resume"], capsys, "grpo.learning_rate: 1e-05 in the run, now 2e-05"
    )
    refused(["train", "grpo", "--config", recipe, "--resume", "--allow-change", "grpo.beta"], capsys, "grpo.beta")
    assert snapshot(grpo_run) == before
    assert (
        run(["train", "grpo", "--config", recipe, "--resume", "--allow-change", "grpo.learning_rate"], capsys)[0] == 0
    )
    record = json.loads((out / "config.json").read_text())
    assert record["grpo"]["learning_rate"] == 2e-5 and record["save_every"] == 2  # save_every: bookkeeping
    assert record["changes"] == [{"key": "grpo.learning_rate", "from": 1e-05, "to": 2e-05, "step": 2}]
    assert record["provenance"]["dtype"] == "float32" and record["provenance"]["model_fingerprint"]


def test_grpo_overwrite_with_a_bad_model_leaves_the_earlier_run_whole(grpo_run, capsys):
    before = snapshot(grpo_run)
    refused(
        ["train", "grpo", "--config", grpo_run / "run.yaml", "--overwrite", "--model", grpo_run / "typo"],
        capsys,
        "typo",
    )
    assert snapshot(grpo_run) == before
