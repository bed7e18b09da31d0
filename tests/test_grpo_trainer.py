"""The GRPO trainer and loop on a tiny model: LoRA reference, missing rewards, that it learns a toy reward, the
loop's hooks, and the trainer's state (state_dict, checkpoints, resume)."""

import copy
import os
import stat

import pytest
import torch

from gotr1.model.loading import JanusBundle
from gotr1.model.sampler import SamplingConfig
from gotr1.model.tiny import build_tiny_janus
from gotr1.model.tokens import SpecialTokenIds
from gotr1.train.grpo import GRPOConfig, GRPOTrainer, latest_checkpoint
from gotr1.train.loop import GRPOLoop

PROMPTS = ["a red circle", "a blue square"]


def _bundle(tokenizer, seed=0):
    model, tok = build_tiny_janus(tokenizer, seed=seed)
    return JanusBundle(model, tok, SpecialTokenIds.from_tokenizer(tok))


def _trainer(bundle, reward_fn, cfg_weight=None, **overrides):
    config = GRPOConfig(
        **{
            "steps": 4,
            "prompts_per_step": 2,
            "num_generations": 4,
            "learning_rate": 1e-2,
            "lora_r": 8,
            "lora_alpha": 16,
            "micro_batch_size": 3,
            **overrides,
        }
    )
    sampling = SamplingConfig(cfg_weight=cfg_weight, max_reasoning_tokens=6)
    return GRPOTrainer(bundle, config, reward_fn, lambda step, rng: list(PROMPTS), sampling=sampling)


def test_lora_reference_is_the_untouched_base_model(tiny_tokenizer):
    bundle = _bundle(tiny_tokenizer)
    base = copy.deepcopy(bundle.model)

    def reward(prompts, chains, images):
        values = [float(i % 3) for i in range(len(chains))]
        return values, {"r": values}

    trainer = _trainer(bundle, reward, beta=0.1)
    result = trainer.step()
    assert result.metrics["trained_sequences"] > 0 and result.metrics["kl"] >= 0
    gens = result.generations[:3]
    with torch.no_grad():
        adapted, _ = trainer.sequence_logprobs(bundle.model, gens)
        with trainer.peft_model.disable_adapter():
            reference, _ = trainer.sequence_logprobs(bundle.model, gens)
        untouched, _ = trainer.sequence_logprobs(base, gens)
    torch.testing.assert_close(reference, untouched)
    assert not torch.allclose(adapted, untouched)  # the step changed the adapted policy


def test_missing_rewards_are_dropped_counted_and_never_zero(tiny_tokenizer):
    bundle = _bundle(tiny_tokenizer)

    def reward(prompts, chains, images):
        values = [None if i in (0, 5) else float(i) for i in range(len(chains))]
        return values, {"r": values}

    metrics = _trainer(bundle, reward).step().metrics
    assert metrics["missing_rewards"] == 2
    assert metrics["trained_sequences"] == 6  # 8 samples, 2 without a reward
    assert metrics["reward_mean"] == sum(v for v in range(8) if v not in (0, 5)) / 6


def test_first_iteration_has_unit_ratio(tiny_tokenizer):
    bundle = _bundle(tiny_tokenizer)

    def reward(prompts, chains, images):
        values = [float(i) for i in range(len(chains))]
        return values, {"r": values}

    metrics = _trainer(bundle, reward).step().metrics
    assert metrics["clip_fraction"] == 0.0


def test_grpo_raises_a_toy_image_reward(tiny_tokenizer):
    """Reward = share of image tokens equal to code 0 (read from the samples, as trl passes ids)."""
    bundle = _bundle(tiny_tokenizer, seed=1)

    def zero_share(prompts, chains, images, *, generations):
        values = [float((g.image_ids[0] == 0).float().mean()) for g in generations]
        return values, {"zero_share": values}

    trainer = _trainer(
        bundle,
        zero_share,
        steps=30,
        lora_r=None,
        learning_rate=5e-3,
        train_text=False,
        num_generations=8,
        micro_batch_size=16,
        cfg_weight=1.0,
    )
    history = GRPOLoop(trainer).run().trainer.history
    first = sum(h["reward_mean"] for h in history[:3]) / 3
    last = sum(h["reward_mean"] for h in history[-3:]) / 3
    assert last > 3 * max(first, 1 / 64), (first, last)


def _counting_reward(prompts, chains, images):
    values = [float(len(c) % 7) for c in chains]
    return values, {"r": values}


@pytest.mark.parametrize("fsdp", [False, True])
def test_under_fsdp_the_first_policy_forward_sees_lora_trainable(tiny_tokenizer, monkeypatch, fsdp):
    """FSDP2 fixes gradient dtypes at the first forward from what is trainable then, and peft's
    disable_adapter (the KL reference) freezes LoRA: under FSDP a forward with LoRA live goes first."""
    import gotr1.train.grpo as grpo

    monkeypatch.setattr(grpo, "is_fsdp", lambda accelerator: fsdp)

    def reward(prompts, chains, images):
        values = [float(i % 3) for i in range(len(chains))]
        return values, {"r": values}

    trainer = _trainer(_bundle(tiny_tokenizer), reward, beta=0.1)
    lora = [p for n, p in trainer.model.named_parameters() if "lora_" in n]
    seen = []
    trainer.policy.register_forward_pre_hook(lambda module, args: seen.append(any(p.requires_grad for p in lora)))
    trainer.step()
    assert seen[0] is fsdp  # without the FSDP guard the reference pass, LoRA frozen, comes first
    assert False in seen and seen[-1] is True  # the reference pass froze LoRA; training ran with it live


@pytest.mark.parametrize("lora_r", [8, None])
def test_kill_and_resume_gives_bit_identical_weights(tiny_tokenizer, tmp_path, lora_r):
    straight = _trainer(_bundle(tiny_tokenizer), _counting_reward, lora_r=lora_r, steps=4, beta=0.05)
    GRPOLoop(straight).run()

    first = _trainer(_bundle(tiny_tokenizer), _counting_reward, lora_r=lora_r, steps=4, beta=0.05)
    first.step()
    first.step()
    first.save_checkpoint(tmp_path, keep_last=1)
    first.step()  # progress after the checkpoint is lost with the "killed" process
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint.name == "checkpoint-000002"

    resumed = _trainer(_bundle(tiny_tokenizer), _counting_reward, lora_r=lora_r, steps=4, beta=0.05)
    resumed.load_checkpoint(checkpoint)
    GRPOLoop(resumed).run()
    assert resumed.step_index == 4
    a = dict(straight.model.named_parameters())
    for name, p in resumed.model.named_parameters():
        assert torch.equal(p, a[name]), name
    assert [h["reward_mean"] for h in resumed.history] == [h["reward_mean"] for h in straight.history]


def test_checkpoints_keep_the_last_k_and_ignore_partial_ones(tiny_tokenizer, tmp_path):
    trainer = _trainer(_bundle(tiny_tokenizer), _counting_reward, steps=3)
    for _ in range(3):
        trainer.step()
        trainer.save_checkpoint(tmp_path, keep_last=2)
    (tmp_path / ".checkpoint-000004.tmp").mkdir()  # a save that was killed half-way
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-000002", "checkpoint-000003"]
    assert latest_checkpoint(tmp_path).name == "checkpoint-000003"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_checkpoint_files_get_the_modes_every_other_file_gets(tiny_tokenizer, tmp_path, umask):
    """safetensors writes through a private temporary file (0600); a checkpoint's files are 0666 less the
    umask like the final weights, so a shared run's checkpoints are readable by whoever reads the rest."""
    trainer = _trainer(_bundle(tiny_tokenizer), _counting_reward)
    previous = os.umask(umask)
    try:
        saved = trainer.save_checkpoint(tmp_path, keep_last=1)
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in saved.rglob("*") if p.is_file()}
    assert "trainable.safetensors" in modes and "rng.safetensors" in modes
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)


def test_the_loop_evaluates_logs_and_checkpoints_on_its_schedule(tiny_tokenizer, tmp_path):
    trainer = _trainer(_bundle(tiny_tokenizer), _counting_reward, steps=5)
    evaluated, logged = [], []
    loop = GRPOLoop(
        trainer,
        evaluate=evaluated.append,
        eval_every=2,
        on_step=lambda result: logged.append(result.step),
        checkpoints=tmp_path,
        save_every=3,
        keep_last=0,
    ).run()
    assert evaluated == [0, 2, 4, 5] and logged == [1, 2, 3, 4, 5]  # before, every 2 steps, after the last
    assert [p.name for p in tmp_path.glob("checkpoint-*")] == ["checkpoint-000003"]
    assert loop.last_evaluated == 5 and loop.train_seconds > 0
    # A run whose evaluation at its step was made already (a resumed one) does not repeat it.
    again = GRPOLoop(trainer, evaluate=evaluated.append, last_evaluated=5).run()
    assert evaluated == [0, 2, 4, 5] and again.trainer.step_index == 5


def test_the_loop_keeps_a_checkpoint_when_the_rewards_become_unavailable(tiny_tokenizer, tmp_path):
    from gotr1.rewards.scoring import RewardsUnavailable

    calls = []

    def judge_goes_away(prompts, chains, images):
        calls.append(1)
        if len(calls) > 1:
            raise RewardsUnavailable("the judge is gone")
        return _counting_reward(prompts, chains, images)

    trainer = _trainer(_bundle(tiny_tokenizer), judge_goes_away, steps=3)
    with pytest.raises(RewardsUnavailable):
        GRPOLoop(trainer, checkpoints=tmp_path).run()
    assert trainer.step_index == 1 and latest_checkpoint(tmp_path).name == "checkpoint-000001"


def test_state_dict_round_trip_continues_the_run_exactly(tiny_tokenizer):
    """The trainer's whole state moves into a fresh trainer (no file): the next steps are the same."""
    straight = _trainer(_bundle(tiny_tokenizer), _counting_reward, lora_r=None, beta=0.05, steps=3)
    straight.step()
    state = copy.deepcopy(straight.state_dict())  # like torch's, the state holds live tensors
    assert {"step", "history", "python_rng", "config", "world_size", "rng", "trainable", "optimizer"} <= set(state)
    assert state["step"] == 1 and state["trainable"] and state["config"]["beta"] == 0.05
    GRPOLoop(straight).run()

    resumed = _trainer(_bundle(tiny_tokenizer), _counting_reward, lora_r=None, beta=0.05, steps=3)
    resumed.load_state_dict(state)
    assert resumed.step_index == 1 and resumed.history == straight.history[:1]
    GRPOLoop(resumed).run()
    timing = ("sample_seconds", "reward_seconds", "reward_busy_seconds", "step_seconds", "tokens_per_second")
    drop = lambda h: {k: v for k, v in h.items() if k not in timing}  # noqa: E731
    assert [drop(h) for h in resumed.history] == [drop(h) for h in straight.history]
    weights = dict(straight.model.named_parameters())
    assert all(torch.equal(p, weights[n]) for n, p in resumed.model.named_parameters())


def test_load_state_dict_refuses_weights_the_model_lacks(tiny_tokenizer):
    trainer = _trainer(_bundle(tiny_tokenizer), _counting_reward)
    state = trainer.state_dict()
    state["trainable"]["model.no_such.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="weights this model lacks: model.no_such.weight"):
        trainer.load_state_dict(state)
