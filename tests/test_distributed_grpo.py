"""GRPO under `accelerate launch`: two CPU processes (gloo) compute what one process computes.

The two-process runs start `accelerate launch --config_file configs/accelerate/cpu_2proc.yaml` in a
subprocess (bounded by a timeout); the single-process reference runs in this process. Both run
tests/distributed_grpo_script.py on a tiny Janus.
"""

import copy
import json
import os
import socket
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gotr1.models import builtin_model
from gotr1.train.grpo import GRPOConfig, GRPOTrainer, check_world_size

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
import distributed_grpo_script as script  # noqa: E402

LAUNCH_TIMEOUT = 600  # seconds; about 10 s when the two cores are not shared with other work


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    env.pop("ACCELERATE_USE_CPU", None)  # the GPU-less fallback in make_accelerator is part of what is tested
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"),
        "--main_process_port",
        str(_free_port()),
        *args,
    ]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


def _samples(directory: Path, ranks: int) -> dict:
    found = {}
    for rank in range(ranks):
        for s in json.loads((directory / f"samples_rank{rank}.json").read_text()):
            assert s["prompt_index"] % ranks == rank  # prompt i lives on process i % world_size
            found[(s["step"], s["prompt_index"], s["sample_index"])] = s
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_tokenizer):
    out = tmp_path_factory.mktemp("distributed")
    _launch(str(ROOT / "tests" / "distributed_grpo_script.py"), str(out / "multi"), *script.VARIANTS, cwd=out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the launched processes
    try:
        for variant in script.VARIANTS:
            script.run(variant, out / "single", tokenizer=tiny_tokenizer)
    finally:
        torch.set_num_threads(threads)
    return out


EXACT = (
    "step",
    "lr",
    "reward_mean",
    "reward_std",
    "missing_rewards",
    "trained_sequences",
    "valid_chain_rate",
    "chain_tokens",
    "zero_share_mean",
)
CLOSE = ("kl", "clip_fraction", "entropy", "grad_norm")  # sums in another order: equal to rounding


@pytest.mark.parametrize("variant", list(script.VARIANTS))
def test_two_processes_train_exactly_like_one(runs, variant):
    single, multi = runs / "single" / variant, runs / "multi" / variant
    # Same samples (chains and image codes), rewards and advantages, prompt by prompt.
    one, two = _samples(single, 1), _samples(multi, 2)
    assert (
        one.keys() == two.keys() and len(one) == 3 * len(script.PROMPTS) * script.VARIANTS[variant]["num_generations"]
    )
    for key, s in one.items():
        assert two[key] == s, key
    if variant == "lora":  # the missing rewards really left process 1 with fewer micro-batches
        assert any(s["reward"] is None for s in one.values())
    # Global metrics: the counts and reward statistics identical; the loss terms equal to rounding.
    # grad_norm checks the loss scaling: the averaged gradient of the processes is the single one.
    h1, h2 = (json.loads((d / "history.json").read_text()) for d in (single, multi))
    assert len(h1) == len(h2) == 3
    for a, b in zip(h1, h2):
        assert {k: b[k] for k in EXACT} == {k: a[k] for k in EXACT}
        assert b["processes"] == 2 and a["processes"] == 1
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-7)
        for key in CLOSE:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-9), key
    # Weights: the processes hold identical copies, and they match the single process to rounding.
    # Adam divides by the gradient's RMS, so elements whose gradient is a near-zero sum of cancelling
    # advantage-weighted terms turn summation-order rounding into ~1e-3 of a step (lr): the worst element
    # must agree to 5% of one step, the whole update to 1e-4 of its size.
    lr = script.VARIANTS[variant]["learning_rate"]
    init = load_file(str(single / "init_rank0.safetensors"))
    for name in ("step1", "weights"):
        w1, w2a, w2b = (
            load_file(str(d / f"{name}_rank{r}.safetensors")) for d, r in ((single, 0), (multi, 0), (multi, 1))
        )
        assert w1.keys() == w2a.keys() == w2b.keys() == init.keys() and w1
        for key in w1:
            assert torch.equal(w2a[key], w2b[key]), key
            torch.testing.assert_close(w2a[key], w1[key], rtol=0, atol=0.05 * lr, msg=f"{name} {key}")
        moved = sum(float(((w1[k] - init[k]) ** 2).sum()) for k in w1) ** 0.5
        apart = sum(float(((w2a[k] - w1[k]) ** 2).sum()) for k in w1) ** 0.5
        assert moved > 10 * lr and apart < 1e-4 * moved, (name, moved, apart)


def test_two_process_checkpoint_resumes_bit_identically(runs):
    """Saved after step 1 by the main process with both processes' RNG states; resumed, then 2 more steps."""
    multi = runs / "multi" / "full"
    rng = load_file(str(multi / "checkpoints" / "checkpoint-000001" / "rng.safetensors"))
    assert {"torch_rng", "torch_rng_rank0", "torch_rng_rank1"} <= set(rng)
    assert (
        json.loads((multi / "checkpoints" / "checkpoint-000001" / "trainer_state.json").read_text())["world_size"] == 2
    )
    for rank in (0, 1):
        straight = load_file(str(multi / f"weights_rank{rank}.safetensors"))
        resumed = load_file(str(multi / f"resumed_rank{rank}.safetensors"))
        for key in straight:
            assert torch.equal(straight[key], resumed[key]), key


def test_sampling_replica_of_sharded_runs_samples_like_the_policy(monkeypatch, tiny_tokenizer):
    """Under ZeRO-3 / FSDP the trainer samples from a full copy refreshed from the shards before each
    step and exports the final model from it; in one process (nothing sharded, the same refresh code)
    that must change nothing: same samples, rewards and merged weights, LoRA and full fine-tuning."""
    import gotr1.train.grpo as grpo

    runs = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for replica in (False, True):
            monkeypatch.setattr(grpo, "shards_parameters", lambda accelerator, on=replica: on)
            for variant in script.VARIANTS:
                trainer = script.make_trainer(variant, tokenizer=tiny_tokenizer)
                assert (trainer.replica is not None) == replica
                results = [trainer.step() for _ in range(2)]
                merged = {n: p.detach().clone() for n, p in trainer.merged_model().named_parameters()}
                runs[replica, variant] = (
                    [
                        (g.chain, g.image_ids.tolist(), r)
                        for res in results
                        for g, r in zip(res.generations, res.rewards)
                    ],
                    merged,
                )
    finally:
        torch.set_num_threads(threads)
    for variant in script.VARIANTS:
        (samples, weights), (samples_r, weights_r) = runs[False, variant], runs[True, variant]
        assert samples_r == samples
        assert weights_r.keys() == weights.keys() and all(torch.equal(weights_r[k], weights[k]) for k in weights)


def test_prompts_per_step_must_divide_among_processes(tiny_bundle):
    with pytest.raises(ValueError, match="prompts_per_step=4 is not divisible by the 3 processes"):
        check_world_size(4, 3)
    check_world_size(6, 3)
    three = types.SimpleNamespace(num_processes=3, process_index=0, gradient_accumulation_steps=1)
    with pytest.raises(ValueError, match="is not divisible by the 3 processes"):
        GRPOTrainer(
            tiny_bundle, GRPOConfig(prompts_per_step=4), lambda *a: ([], {}), lambda s, r: [], accelerator=three
        )


@pytest.mark.skipif(builtin_model() is None, reason="no shipped model")
def test_cli_under_accelerate_launch_writes_once_and_logs_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    config = tmp_path / "run.yaml"
    config.write_text(f"""
output_dir: {tmp_path / "out"}
prompts: shapes:train
eval_prompts: 2
save_every: 2
keep_last: 1
log_with: [tensorboard]
project_name: cli-test
grpo:
  steps: 2
  prompts_per_step: 2
  num_generations: 2
  learning_rate: 1.0e-5
  lora_r: 4
sampling:
  max_reasoning_tokens: 60
  cfg_weight: 3.0
""")
    done = _launch("-m", "gotr1", "train", "grpo", "--config", str(config), cwd=tmp_path)
    out = tmp_path / "out"
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and [e["step"] for e in summary["evaluations"]] == [0, 2]
    assert done.stdout.count('"processes": 2') == 1  # the summary is printed by the main process only
    assert (out / "final" / "model.safetensors").is_file()
    assert list((out / "cli-test").rglob("events.out.tfevents.*"))
    rng = load_file(str(out / "checkpoints" / "checkpoint-000002" / "rng.safetensors"))
    assert "torch_rng_rank1" in rng


def test_zero3_registration_is_lifted_while_the_policy_loads(monkeypatch, tmp_path, tiny_bundle):
    """An Accelerator with a ZeRO-3 plugin registers its config with transformers, which would then build
    the model inside deepspeed.zero.Init, partitioned (seen on a GPU: the sampling replica copied from it
    had 0-element weights). While `loading_whole_model` is open transformers must not see ZeRO-3, the
    model loads whole, and afterwards the plugin's registration is back."""
    import weakref

    import transformers.integrations.deepspeed as hf_deepspeed

    from gotr1.models import load_model
    from gotr1.train.distributed import loading_whole_model

    class Registered:  # what HfDeepSpeedConfig offers transformers (the real one needs deepspeed installed)
        def is_zero3(self):
            return True

    registered = Registered()

    class Plugin:
        zero_stage = 3

        def set_deepspeed_weakref(self):
            hf_deepspeed._hf_deepspeed_config_weak_ref = weakref.ref(registered)

    monkeypatch.setattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
    zero3 = types.SimpleNamespace(distributed_type="DEEPSPEED", state=types.SimpleNamespace(deepspeed_plugin=Plugin()))
    zero3.state.deepspeed_plugin.set_deepspeed_weakref()
    assert hf_deepspeed.is_deepspeed_zero3_enabled()
    tiny_bundle.save(tmp_path / "model")
    with loading_whole_model(zero3):
        assert not hf_deepspeed.is_deepspeed_zero3_enabled()
        loaded = load_model(str(tmp_path / "model"), "float32", "cpu")
    assert hf_deepspeed.is_deepspeed_zero3_enabled()
    assert all(p.numel() > 0 for p in loaded.model.parameters())
    # Anything but ZeRO-3 is left alone.
    plain = types.SimpleNamespace(distributed_type="NO")
    with loading_whole_model(plain):
        assert hf_deepspeed.is_deepspeed_zero3_enabled()


def test_a_partitioned_model_is_refused_with_the_way_out(monkeypatch, tiny_bundle):
    """A model built under zero.Init (0-element weights) cannot seed the sampling replica: say so."""
    import gotr1.train.grpo as grpo

    monkeypatch.setattr(grpo, "shards_parameters", lambda accelerator: True)
    bundle = replace(tiny_bundle, model=copy.deepcopy(tiny_bundle.model))  # the fixture is shared
    next(bundle.model.parameters()).data = torch.empty(0)
    with pytest.raises(ValueError, match="already partitioned.*loading_whole_model"):
        GRPOTrainer(bundle, GRPOConfig(prompts_per_step=2, lora_r=None), lambda *a: ([], {}), lambda s, r: [])
