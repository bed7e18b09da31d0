"""GRPO math against independent, loop-by-loop computations."""

import math

import numpy as np
import pytest
import torch

from gotr1.train.grpo_loss import group_advantages, grpo_loss, k3_kl


def _reference_advantages(rewards, group, scale, valid=None):
    rewards = np.asarray(rewards, dtype=float)
    valid = np.ones_like(rewards, dtype=bool) if valid is None else np.asarray(valid)
    out = np.zeros_like(rewards)
    for g in range(0, len(rewards), group):
        idx = [i for i in range(g, g + group) if valid[i]]
        if len(idx) < 2:
            continue
        values = rewards[idx]
        centred = values - values.mean()
        if scale:
            centred = centred / (values.std(ddof=1) + 1e-4)
        out[idx] = centred
    return out


@pytest.mark.parametrize("scale", [True, False])
def test_group_advantages_match_a_loop(scale):
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.25, 2.0, 2.0, 1.0, 3.0])
    adv, usable = group_advantages(rewards, 4, scale_rewards=scale)
    np.testing.assert_allclose(adv.numpy(), _reference_advantages(rewards.numpy(), 4, scale), rtol=1e-5, atol=1e-6)
    assert usable.all()


def test_missing_rewards_are_dropped_from_their_group_not_zeroed():
    rewards = torch.tensor([1.0, 0.0, 123.0, 0.5, 1.0, 9.0, 9.0, 9.0])
    valid = torch.tensor([True, True, False, True, True, False, False, False])
    adv, usable = group_advantages(rewards, 4, valid=valid)
    expected = _reference_advantages(rewards.numpy(), 4, True, valid.numpy())
    np.testing.assert_allclose(adv.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert usable.tolist() == [True, True, False, True, False, False, False, False]  # lone survivor: unusable


def _reference_loss(logp, old, adv, mask, ref, beta, eps_lo, eps_hi, loss_type, max_len):
    per_seq_sums, per_seq_counts, total, count = [], [], 0.0, 0
    for i in range(logp.shape[0]):
        s, c = 0.0, 0
        for t in range(logp.shape[1]):
            if not mask[i, t]:
                continue
            ratio = math.exp(logp[i, t] - old[i, t])
            term = -min(ratio * adv[i], min(max(ratio, 1 - eps_lo), 1 + eps_hi) * adv[i])
            d = ref[i, t] - logp[i, t]
            term += beta * (math.exp(d) - d - 1)
            s += term
            c += 1
        per_seq_sums.append(s)
        per_seq_counts.append(c)
        total += s
        count += c
    if loss_type == "grpo":
        means = [s / c for s, c in zip(per_seq_sums, per_seq_counts) if c]
        return sum(means) / len(means)
    if loss_type == "dr_grpo":
        return total / (logp.shape[0] * max_len)
    return total / count


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_loss_types_equal_independent_computation(loss_type):
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 6, generator=g) * 3
    old = logp + torch.randn(4, 6, generator=g) * 0.3
    ref = logp + torch.randn(4, 6, generator=g) * 0.2
    adv = torch.tensor([1.0, -0.5, 2.0, -1.5])
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]]).bool()
    out = grpo_loss(
        logp,
        old,
        adv,
        mask,
        ref_logp=ref,
        beta=0.04,
        epsilon_low=0.2,
        epsilon_high=0.28,
        loss_type=loss_type,
        max_length=8,
    )
    expected = _reference_loss(
        logp.numpy(), old.numpy(), adv.numpy(), mask.numpy(), ref.numpy(), 0.04, 0.2, 0.28, loss_type, 8
    )
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)


def test_first_iteration_ratio_is_one_and_gradient_is_advantage_weighted_logprob_gradient():
    theta = torch.randn(3, 5, requires_grad=True)
    logp = torch.log_softmax(theta, -1)[:, :4]
    mask = torch.ones(3, 4, dtype=torch.bool)
    adv = torch.tensor([0.7, -1.2, 0.3])
    out = grpo_loss(logp, logp.detach(), adv, mask, loss_type="dapo")
    assert out.ratio_mean.item() == pytest.approx(1.0) and out.clip_fraction.item() == 0.0
    (grad,) = torch.autograd.grad(out.loss, theta)
    theta2 = theta.detach().clone().requires_grad_(True)
    surrogate = -(adv[:, None] * torch.log_softmax(theta2, -1)[:, :4]).sum() / mask.sum()
    (expected,) = torch.autograd.grad(surrogate, theta2)
    torch.testing.assert_close(grad, expected)


def test_kl_is_zero_when_policy_equals_reference_and_positive_otherwise():
    logp = torch.log_softmax(torch.randn(2, 7), -1)
    assert torch.all(k3_kl(logp, logp) == 0)
    assert torch.all(k3_kl(logp, logp + 0.1) > 0)
    out = grpo_loss(logp, logp, torch.zeros(2), torch.ones_like(logp, dtype=torch.bool), ref_logp=logp, beta=1.0)
    assert out.kl.item() == 0.0 and out.loss.item() == 0.0


def test_clipping_stops_gradient_beyond_the_trust_region():
    logp = torch.tensor([[0.0]], requires_grad=True)
    old = torch.tensor([[-1.0]])  # ratio e > 1.2
    out = grpo_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 1, dtype=torch.bool), epsilon_low=0.2)
    out.loss.backward()
    assert logp.grad.item() == 0.0 and out.clip_fraction.item() == 1.0


def test_unknown_loss_type_is_rejected():
    with pytest.raises(ValueError, match="loss_type"):
        grpo_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1), torch.ones(1, 1), loss_type="ppo")
