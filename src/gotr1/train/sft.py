"""Supervised fine-tuning on (prompt, reasoning chain, image tokens), teacher-forced.

The loss is cross-entropy on the chain's tokens (lm_head) and on the image codes (generation head),
each averaged over its tokens and mixed with configurable weights; prompts are never trained on.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import FieldError, check_choice, check_range
from ..model.teacher_forcing import PackedBatch, SFTRecord, pack, scorer, unconditional
from ..progress import progress
from .schedule import learning_rate

log = logging.getLogger(__name__)


@dataclass
class SFTConfig:
    steps: int = 1000  # optimizer steps
    batch_size: int = 32  # records per step
    learning_rate: float = 1e-3  # peak rate (AdamW), after warm-up
    min_lr_ratio: float = 0.1  # the cosine ends at learning_rate * min_lr_ratio
    warmup_steps: int = 100  # linear warm-up to learning_rate
    weight_decay: float = 0.01  # AdamW's decoupled weight decay (matrices only)
    text_loss_weight: float = 1.0  # weight of the chain tokens' cross-entropy
    image_loss_weight: float = 1.0  # weight of the image tokens' cross-entropy
    max_grad_norm: float = 1.0  # gradients clipped to this global norm
    seed: int = 0  # batch order and CFG dropout derive from it
    log_every: int = 50  # a log line every N steps
    max_minutes: float | None = None  # stop early (and say so) when a time budget is spent
    # Share of rows trained as the unconditional branch of classifier-free guidance: prompt and chain
    # replaced by pad (all but the first token and <begin_of_image>), image loss only.
    uncond_prob: float = 0.1
    # "bf16": bfloat16 autocast for the forward pass (weights and optimizer stay float32). On CPUs with
    # AVX512-BF16 it is about 1.6x faster per step for the shapes model; on GPUs the usual choice.
    mixed_precision: str = "no"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every"):
            check_range(name, getattr(self, name), low=1)
        for name in ("warmup_steps", "seed", "weight_decay", "text_loss_weight", "image_loss_weight"):
            check_range(name, getattr(self, name), low=0)
        check_range("learning_rate", self.learning_rate, low=0, low_open=True)
        check_range("max_grad_norm", self.max_grad_norm, low=0, low_open=True)
        check_range("min_lr_ratio", self.min_lr_ratio, low=0, high=1)
        check_range("uncond_prob", self.uncond_prob, low=0, high=1)
        check_range("max_minutes", self.max_minutes, low=0)
        if self.text_loss_weight == 0 and self.image_loss_weight == 0:
            raise FieldError("image_loss_weight", "text_loss_weight and image_loss_weight cannot both be 0")
        check_choice("mixed_precision", self.mixed_precision, ("no", "bf16"))


def sft_loss(model, batch: PackedBatch, config: SFTConfig) -> tuple[torch.Tensor, dict]:
    """model: a Janus model or its PolicyScorer (the teacher-forced forward GRPO scores samples with)."""
    text_logits, image_logits, _ = scorer(model)(batch)
    text_loss = F.cross_entropy(text_logits[batch.text_mask].float(), batch.text_targets[batch.text_mask])
    image_loss = F.cross_entropy(image_logits.flatten(0, 1).float(), batch.image_targets.flatten())
    loss = config.text_loss_weight * text_loss + config.image_loss_weight * image_loss
    return loss, {"text_loss": text_loss.item(), "image_loss": image_loss.item()}


def cosine_lr(step: int, config: SFTConfig, elapsed: float | None = None) -> float:
    """Warm-up, then cosine decay to ``min_lr_ratio``. With a time budget (``max_minutes``) the decay
    follows whichever budget, steps or seconds, is further spent, so a timed run still ends cooled."""
    spent = elapsed / (config.max_minutes * 60) if config.max_minutes and elapsed is not None else None
    return learning_rate(
        step,
        peak=config.learning_rate,
        total_steps=config.steps,
        warmup_steps=config.warmup_steps,
        floor_ratio=config.min_lr_ratio,
        spent=spent,
    )


def trainable_parameters(model):
    """Everything but the frozen VQ tokenizer and the understanding-side vision tower."""
    frozen = ("model.vqmodel.", "model.vision_model.", "model.aligner.")
    return [p for n, p in model.named_parameters() if not n.startswith(frozen)]


def train_sft(model, records: Sequence[SFTRecord], config: SFTConfig, *, pad: int) -> dict:
    """Train in place; returns a summary with the loss curve."""
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    params = trainable_parameters(model)
    for _n, p in model.named_parameters():
        p.requires_grad_(any(p is q for q in params))
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.95),
    )
    model.train()
    device = next(model.parameters()).device
    order: list[int] = []
    curve = []
    start = time.time()
    done = 0
    # A bar on a terminal; otherwise a line with done/total, rate and ETA every GOTR1_PROGRESS_SECONDS (30),
    # besides the loss lines every log_every steps.
    bar = progress(config.steps, "sft", "step")
    for step in range(config.steps):
        if config.max_minutes is not None and time.time() - start > config.max_minutes * 60:
            log.warning("sft: time budget of %.1f min spent after %d steps", config.max_minutes, step)
            break
        if len(order) < config.batch_size:
            order += rng.sample(range(len(records)), len(records))
        chosen = [records[i] for i in order[: config.batch_size]]
        del order[: config.batch_size]
        drop = [rng.random() < config.uncond_prob for _ in chosen]
        chosen = [unconditional(r, pad) if d else r for r, d in zip(chosen, drop)]
        batch = pack([r.prompt_ids for r in chosen], [r.text_ids for r in chosen], [r.image_ids for r in chosen], pad)
        batch.text_mask[torch.tensor(drop)] = False
        batch = batch.to(device)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, config, time.time() - start)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.mixed_precision == "bf16"):
            loss, stats = sft_loss(model, batch, config)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        opt.step()
        done = step + 1
        bar.set_postfix(text=f"{stats['text_loss']:.3f}", image=f"{stats['image_loss']:.3f}", refresh=False)
        bar.update(1)
        if step % config.log_every == 0 or step == config.steps - 1:
            curve.append({"step": step + 1, "seconds": round(time.time() - start, 1), **stats})
            log.info(
                "sft step %d/%d text %.3f image %.3f (%.0fs)",
                step + 1,
                config.steps,
                stats["text_loss"],
                stats["image_loss"],
                time.time() - start,
            )
    bar.close()
    model.eval()
    return {"steps_done": done, "seconds": time.time() - start, "curve": curve}
