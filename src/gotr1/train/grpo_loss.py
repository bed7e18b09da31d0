"""The GRPO objective: group-normalised advantages, clipped ratio, k3 KL, and trl's loss types.

Notation follows trl's GRPOTrainer: `num_generations` samples per prompt form a group, `epsilon`
clips the ratio (separately below / above with epsilon_low / epsilon_high as in DAPO), `beta` weighs
the KL to the reference policy, and `loss_type` picks the normalisation:

* "grpo"    mean over each sequence's tokens, then over sequences (the original GRPO);
* "dr_grpo" sum over tokens divided by (sequences x a fixed max length): no length bias (Dr. GRPO);
* "dapo"    sum over tokens divided by the number of tokens in the batch (token-level, DAPO).

A GoT-R1 sequence's tokens are its reasoning tokens and its image tokens; which of them are trained
is decided by the mask passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    *,
    valid: torch.Tensor | None = None,
    scale_rewards: bool = True,
    eps: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages r - mean(group), divided by the group's std when `scale_rewards` (dr_grpo: off).

    Invalid samples (e.g. a judge that failed for them) are left out of their group's statistics and
    get advantage 0; a group with fewer than two valid samples teaches nothing and is left out whole.
    Returns (advantages, usable mask).
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    r = rewards.float().view(-1, group_size)
    ok = torch.ones_like(r, dtype=torch.bool) if valid is None else valid.view(-1, group_size).bool()
    r = torch.where(ok, r, torch.zeros_like(r))
    count = ok.sum(1, keepdim=True)
    mean = r.sum(1, keepdim=True) / count.clamp(min=1)
    centred = torch.where(ok, r - mean, torch.zeros_like(r))
    if scale_rewards:
        var = (centred**2).sum(1, keepdim=True) / (count - 1).clamp(min=1)  # unbiased, like torch.std
        centred = centred / (var.sqrt() + eps)
    usable = ok & (count >= 2)
    return torch.where(usable, centred, torch.zeros_like(centred)).view(-1), usable.view(-1)


@dataclass
class GRPOLossOutput:
    loss: torch.Tensor
    kl: torch.Tensor  # mean k3 KL per trained token (0 when beta == 0 and no reference given)
    clip_fraction: torch.Tensor  # share of trained tokens whose ratio was clipped
    ratio_mean: torch.Tensor


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(policy || reference) per token: exp(d) - d - 1 with d = ref - logp."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon_low: float = 0.2,
    epsilon_high: float | None = None,
    loss_type: str = "grpo",
    max_length: int | None = None,
    total_sequences: int | None = None,
    total_tokens: float | None = None,
) -> GRPOLossOutput:
    """Per-token clipped surrogate with optional KL penalty, normalised as `loss_type` says.

    logp, old_logp, ref_logp, mask: [sequences, tokens]; advantages: [sequences].
    max_length: the fixed denominator of dr_grpo (defaults to the token dimension).
    total_sequences / total_tokens: the whole batch's counts when this call sees one micro-batch of
    it, so that accumulated micro-batch losses add up to the full batch's loss.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    mask = mask.to(logp.dtype)
    high = epsilon_low if epsilon_high is None else epsilon_high
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None].to(logp.dtype)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    kl = torch.zeros_like(logp)
    if ref_logp is not None:
        kl = k3_kl(logp, ref_logp)
        if beta:
            per_token = per_token + beta * kl
    tokens = mask.sum().clamp(min=1)
    if loss_type == "grpo":
        per_seq = (per_token * mask).sum(1) / mask.sum(1).clamp(min=1)
        has_tokens = (mask.sum(1) > 0).to(logp.dtype)
        sequences = total_sequences if total_sequences is not None else has_tokens.sum().clamp(min=1)
        loss = (per_seq * has_tokens).sum() / sequences
    elif loss_type == "dr_grpo":
        sequences = total_sequences if total_sequences is not None else logp.shape[0]
        loss = (per_token * mask).sum() / (sequences * (max_length or logp.shape[1]))
    else:
        loss = (per_token * mask).sum() / (total_tokens if total_tokens is not None else tokens)
    with torch.no_grad():
        is_clipped = ((ratio < 1 - epsilon_low) & (adv < 0)) | ((ratio > 1 + high) & (adv > 0))
        clip_fraction = (is_clipped.to(logp.dtype) * mask).sum() / tokens
        kl_mean = (kl * mask).sum() / tokens
        ratio_mean = (ratio * mask).sum() / tokens
    return GRPOLossOutput(loss, kl_mean.detach(), clip_fraction, ratio_mean)
