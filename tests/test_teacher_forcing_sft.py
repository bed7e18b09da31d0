"""Teacher-forced forward (shared by SFT and GRPO) and the SFT loop."""

import torch

from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler
from gotr1.model.teacher_forcing import forward_packed, pack
from gotr1.model.tiny import build_tiny_janus
from gotr1.train.sft import SFTConfig, SFTRecord, cosine_lr, train_sft, unconditional


def test_teacher_forced_logits_equal_the_samplers(tiny_bundle):
    """One forward over [prompt][chain][image] reproduces every step the sampler took (CFG off)."""
    config = SamplingConfig(max_reasoning_tokens=10, cfg_weight=1.0)
    gens = TwoPhaseSampler(tiny_bundle).generate(
        ["a red circle", "two blue squares above a star"], config, num_generations=2, record_logits=True
    )
    batch = pack(
        [g.prompt_ids.tolist() for g in gens],
        [g.text_ids.tolist() for g in gens],
        torch.stack([g.image_ids[0] for g in gens]),
        tiny_bundle.ids.pad,
    )
    with torch.no_grad():
        text_logits, image_logits = forward_packed(tiny_bundle.model, batch)
    for i, g in enumerate(gens):
        n = len(g.text_ids)
        assert batch.text_mask[i].sum() == n
        assert torch.equal(batch.text_targets[i, :n], g.text_ids)
        torch.testing.assert_close(text_logits[i, :n], g.text_logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(image_logits[i], g.image_logits[0], atol=1e-5, rtol=1e-5)


def test_unconditional_record_keeps_first_token_and_begin_of_image():
    record = SFTRecord([1, 5, 6, 7], [8, 9, 4], [3, 3])
    u = unconditional(record, pad=2)
    assert u.prompt_ids == [1, 2, 2, 2] and u.text_ids == [2, 2, 4] and u.image_ids == [3, 3]


def test_cosine_schedule_warms_up_and_decays():
    config = SFTConfig(steps=100, warmup_steps=10, learning_rate=1.0, min_lr_ratio=0.1)
    assert cosine_lr(0, config) == 0.1 and cosine_lr(9, config) == 1.0
    assert abs(cosine_lr(99, config) - 0.1) < 0.01
    assert cosine_lr(50, config) < cosine_lr(20, config)
    # A time budget: the decay follows whichever of steps and time is further spent.
    timed = SFTConfig(steps=1000, warmup_steps=10, learning_rate=1.0, min_lr_ratio=0.1, max_minutes=2.0)
    assert cosine_lr(20, timed, elapsed=120.0) == 0.1
    assert cosine_lr(20, timed, elapsed=60.0) == cosine_lr(505, timed, elapsed=0.0)
    untimed = SFTConfig(steps=1000, warmup_steps=10, learning_rate=1.0, min_lr_ratio=0.1)
    assert cosine_lr(20, timed) == cosine_lr(20, untimed)


def test_sft_learns_a_fixed_record_and_keeps_the_vq_frozen(tiny_tokenizer):
    model, tokenizer = build_tiny_janus(tiny_tokenizer, seed=3)
    vq_before = {k: v.clone() for k, v in model.model.vqmodel.state_dict().items()}
    boi = tokenizer.convert_tokens_to_ids("<begin_of_image>")
    record = SFTRecord([tokenizer.bos_token_id, 20, 21, 22], [30, 31, 32, boi], list(range(16)))
    config = SFTConfig(steps=80, batch_size=4, learning_rate=5e-3, warmup_steps=5, log_every=79, uncond_prob=0.0)
    summary = train_sft(model, [record], config, pad=tokenizer.pad_token_id)
    first, last = summary["curve"][0], summary["curve"][-1]
    assert last["text_loss"] < 0.3 * first["text_loss"]
    assert last["image_loss"] < 0.5 * first["image_loss"]
    for k, v in model.model.vqmodel.state_dict().items():
        assert torch.equal(v, vq_before[k]), k


def test_a_spent_time_budget_reports_the_steps_actually_taken(tiny_tokenizer):
    model, tokenizer = build_tiny_janus(tiny_tokenizer, seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    boi = tokenizer.convert_tokens_to_ids("<begin_of_image>")
    record = SFTRecord([tokenizer.bos_token_id, 20], [30, boi], list(range(16)))
    summary = train_sft(model, [record], SFTConfig(steps=5, batch_size=2, max_minutes=0.0), pad=tokenizer.pad_token_id)
    assert summary["steps_done"] == 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
