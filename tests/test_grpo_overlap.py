"""Rewards overlapped with sampling (grpo.sample_chunk_prompts + overlap_rewards): the same step as sampling
everything and then scoring it, with each chunk scored on a background thread while the next one samples."""

import threading

import numpy as np
import pytest
import torch

from gotr1.config import FieldError
from gotr1.model.loading import JanusBundle
from gotr1.model.sampler import SamplingConfig
from gotr1.model.tiny import build_tiny_janus
from gotr1.model.tokens import SpecialTokenIds
from gotr1.rewards.scoring import RewardPipeline, RewardsUnavailable
from gotr1.train.grpo import GRPOConfig, GRPOTrainer

# Prompts of different lengths: a chunk pads its prompts differently from the whole batch.
PROMPTS = [
    "a red circle",
    "two small blue squares above a large yellow star, and a green heart",
    "a green heart left of a circle",
    "three stars",
]
G = 3


def _trainer(tokenizer, reward_fn, compile="none", **overrides):
    model, tok = build_tiny_janus(tokenizer, seed=0)
    bundle = JanusBundle(model, tok, SpecialTokenIds.from_tokenizer(tok))
    config = GRPOConfig(
        **{
            "steps": 2,
            "prompts_per_step": len(PROMPTS),
            "num_generations": G,
            "learning_rate": 1e-2,
            "lora_r": None,
            "micro_batch_size": 5,
            **overrides,
        }
    )
    sampling = SamplingConfig(max_reasoning_tokens=8, compile=compile)
    return GRPOTrainer(bundle, config, reward_fn, lambda step, rng: list(PROMPTS), sampling=sampling)


def _pipeline(**kwargs):
    """Stateful (it counts), reading both the chain and the image's pixels, and running torch (as a local
    VLM judge does) on the reward thread while the sampler runs torch on this one."""

    def length(prompts, chains, images):
        return [float(len(c) % 5) for c in chains]

    def brightness(prompts, chains, images):
        # One sample at a time: a batched matmul's last bits depend on the batch's size, so a reward
        # computed over the batch would differ between a chunk and the whole step (as any batching would).
        pixels = [torch.from_numpy(np.asarray(i).copy()).flatten().float() / 255 for i in images]
        return [float(p @ torch.linspace(0, 1, p.numel())) for p in pixels]

    return RewardPipeline({"length": length, "brightness": brightness}, "sum", **kwargs)


@pytest.mark.parametrize("chunk,overlap", [(1, True), (3, True), (2, False)])
def test_chunked_and_overlapped_steps_equal_the_sequential_step(tiny_tokenizer, chunk, overlap):
    pipelines = _pipeline(), _pipeline()
    sequential = _trainer(tiny_tokenizer, pipelines[0], beta=0.05, num_iterations=2)
    chunked = _trainer(
        tiny_tokenizer, pipelines[1], beta=0.05, num_iterations=2, sample_chunk_prompts=chunk, overlap_rewards=overlap
    )
    for _ in range(2):
        a, b = sequential.step(), chunked.step()
        assert len(a.generations) == len(b.generations) == len(PROMPTS) * G
        for x, y in zip(a.generations, b.generations):
            assert (x.prompt_index, x.sample_index, x.chain) == (y.prompt_index, y.sample_index, y.chain)
            assert torch.equal(x.text_ids, y.text_ids) and torch.equal(x.image_ids, y.image_ids)
            assert np.array_equal(np.asarray(x.images[0]), np.asarray(y.images[0]))
        assert a.rewards == b.rewards and a.advantages == b.advantages
        assert len(set(a.rewards)) > 1 and any(a.advantages)  # a step that trains something
        for key in ("loss", "kl", "clip_fraction", "grad_norm", "entropy", "reward_mean", "trained_sequences"):
            assert a.metrics[key] == b.metrics[key], key
        for (name, p), q in zip(sequential.model.named_parameters(), chunked.model.parameters()):
            assert torch.equal(p, q), name
    assert pipelines[0].counts == pipelines[1].counts


def _recording_reward(log, started):
    """Records each call's prompts; the call for chunk k returns only after chunk k + 1 began sampling."""

    def reward(prompts, chains, images, *, generations):
        chunk = generations[0].prompt_index
        log.append(("reward", chunk, sorted({g.prompt_index for g in generations})))
        if chunk + 1 < len(PROMPTS):
            assert started[chunk + 1].wait(timeout=120), "the next chunk never began sampling"  # deadlock guard
        log.append(("reward done", chunk))
        values = [float(g.sample_index) for g in generations]
        return values, {"r": values}

    return reward


def test_each_chunk_is_scored_while_the_next_one_samples(tiny_tokenizer):
    log, started = [], [threading.Event() for _ in PROMPTS]
    trainer = _trainer(tiny_tokenizer, _recording_reward(log, started), sample_chunk_prompts=1, overlap_rewards=True)
    draw = trainer._draw

    def recording_draw(prompts, indices):
        log.append(("sample", indices[0]))
        started[indices[0]].set()
        return draw(prompts, indices)

    trainer._draw = recording_draw
    result = trainer.step()
    assert [entry[2] for entry in log if entry[0] == "reward"] == [[0], [1], [2], [3]]  # one call per chunk, in order
    for k in range(len(PROMPTS) - 1):  # chunk k's reward returned only after chunk k + 1 began sampling
        assert log.index(("sample", k + 1)) < log.index(("reward done", k))
    assert result.rewards == [float(s) for _ in PROMPTS for s in range(G)]
    # both clocks ran (their order is not asserted: under load the wait can outlast the work)
    assert result.metrics["reward_busy_seconds"] > 0 and result.metrics["reward_seconds"] >= 0


def test_a_failing_reward_surfaces_from_step_and_leaves_no_worker(tiny_tokenizer):
    def reward(prompts, chains, images, *, generations):
        if generations[0].prompt_index == 1:
            raise ConnectionError("judge unreachable")
        values = [1.0] * len(generations)
        return values, {"r": values}

    trainer = _trainer(tiny_tokenizer, reward, sample_chunk_prompts=1, overlap_rewards=True)
    with pytest.raises(ConnectionError, match="judge unreachable"):
        trainer.step()
    assert trainer.step_index == 0 and not trainer.history
    assert not [t for t in threading.enumerate() if t.name.startswith("grpo-rewards")]


def test_the_missing_reward_limit_applies_to_the_whole_step_not_each_chunk(tiny_tokenizer):
    def mostly_missing_in_first_prompt(prompts, chains, images):
        # prompt 0 leads the step and its chunk: its first G - 1 samples sit at i < G - 1 in both
        return [
            None if p == PROMPTS[0] and i < G - 1 else 1.0 + len(c) % 5 for i, (p, c) in enumerate(zip(prompts, chains))
        ]

    def pipeline(limit):
        return RewardPipeline({"r": mostly_missing_in_first_prompt}, "sum", max_missing_fraction=limit)

    # 2 of 12 samples missing: within a limit of 0.25 for the step, though 2 of chunk 0's 3 are missing.
    sequential = _trainer(tiny_tokenizer, pipeline(0.25)).step()
    overlapped = _trainer(tiny_tokenizer, pipeline(0.25), sample_chunk_prompts=1, overlap_rewards=True).step()
    assert sequential.rewards == overlapped.rewards and sequential.rewards.count(None) == 2
    # Beyond the step's limit: raised from step(), never trained on as zeros.
    with pytest.raises(RewardsUnavailable, match="2 of 12 samples"):
        _trainer(tiny_tokenizer, pipeline(0.1), sample_chunk_prompts=1, overlap_rewards=True).step()


def test_config_checks():
    with pytest.raises(FieldError, match="overlap_rewards"):
        GRPOConfig(overlap_rewards=True)
    with pytest.raises(FieldError, match="sample_chunk_prompts"):
        GRPOConfig(sample_chunk_prompts=0)
    assert GRPOConfig(sample_chunk_prompts=2, overlap_rewards=True).overlap_rewards


def test_a_step_on_the_compiled_decode_path_equals_the_eager_step(tiny_tokenizer):
    """compile: static (the fixed-shape steps; `default` compiles the same functions) samples the same tokens,
    so the step gives the same rewards and updates; its workspaces are freed before the training passes."""
    eager = _trainer(tiny_tokenizer, _pipeline(), beta=0.05)
    static = _trainer(tiny_tokenizer, _pipeline(), beta=0.05, compile="static")
    a, b = eager.step(), static.step()
    for x, y in zip(a.generations, b.generations):
        assert torch.equal(x.text_ids, y.text_ids) and torch.equal(x.image_ids, y.image_ids)
    assert a.rewards == b.rewards and a.advantages == b.advantages
    assert static.sampler.static_decoder("static")._workspaces == {}
    for (name, p), q in zip(eager.model.named_parameters(), static.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
