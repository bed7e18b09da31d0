"""GRPO for GoT-R1: sample chains and images, score them, and push the policy toward the better ones.

One step: B prompts x G samples from the two-phase sampler -> rewards -> group-normalised advantages
-> `num_iterations` passes of the clipped objective over the reasoning tokens and/or image tokens,
re-scored by one teacher-forced forward per micro-batch (`model.teacher_forcing`).

Image log-probs (`image_logprob`): "conditional" (default) scores image tokens under the conditional
generation head alone, as T2I-R1 does; "cfg" scores them under the CFG-combined distribution that
actually sampled them, which is exact but needs the unconditional forward too (twice the cost). The
ratio only needs old and new policy scored the same way, so the cheaper one is the default.

Reference policy for the KL term: under LoRA the same model with its adapter disabled (no second
copy in memory); under full fine-tuning a frozen copy taken at the start.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..model.loading import JanusBundle
from ..model.sampler import Generation, SamplingConfig, TwoPhaseSampler
from ..model.teacher_forcing import forward_packed, pack
from .grpo_loss import group_advantages, grpo_loss
from .sft import SFTRecord, trainable_parameters, unconditional

log = logging.getLogger(__name__)

LANGUAGE_MODEL_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"


@dataclass
class GRPOConfig:
    steps: int = 100
    prompts_per_step: int = 8  # B
    num_generations: int = 8  # G, samples per prompt
    learning_rate: float = 1e-5
    lr_schedule: str = "cosine"  # cosine | constant
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    micro_batch_size: int = 16
    beta: float = 0.0
    epsilon: float = 0.2
    epsilon_high: float | None = None
    loss_type: str = "grpo"
    num_iterations: int = 1
    scale_rewards: bool = True  # False for dr_grpo-style advantages
    train_text: bool = True
    train_image: bool = True
    image_logprob: str = "conditional"  # conditional | cfg
    cfg_weight: float = 5.0
    text_temperature: float = 1.0
    image_temperature: float = 1.0
    max_reasoning_tokens: int = 600
    lora_r: int | None = 32  # None: full fine-tuning (VQ and vision tower stay frozen)
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: str = LANGUAGE_MODEL_LORA_TARGETS
    gradient_checkpointing: bool = False
    seed: int = 0
    log_every: int = 1

    def __post_init__(self):
        if self.image_logprob not in ("conditional", "cfg"):
            raise ValueError("image_logprob must be 'conditional' or 'cfg'")
        if not (self.train_text or self.train_image):
            raise ValueError("train_text and train_image cannot both be off")
        if self.num_iterations < 1:
            raise ValueError("num_iterations must be >= 1")


# reward_fn(prompts, chains, images[, generations=...]) -> (totals, {component name: values}); a total
# of None marks a sample that could not be scored (it is dropped from its group, never zeroed).
RewardFn = Callable[..., tuple[list[float | None], dict[str, list]]]


@dataclass
class StepResult:
    step: int
    metrics: dict
    generations: list[Generation] = field(default_factory=list)
    rewards: list[float | None] = field(default_factory=list)  # per sample, None where unscored


class GRPOTrainer:
    """The loop; models, rewards and prompts come in, so any world or judge plugs in."""

    def __init__(self, bundle: JanusBundle, config: GRPOConfig, reward_fn: RewardFn,
                 prompt_source: Callable[[int, random.Random], list]):
        self.bundle, self.config = bundle, config
        self.reward_fn, self.prompt_source = reward_fn, prompt_source
        # Like trl, reward functions that take keyword arguments also get the raw samples.
        params = inspect.signature(reward_fn).parameters.values()
        self._reward_takes_samples = any(p.kind is p.VAR_KEYWORD or p.name == "generations" for p in params)
        self.model = bundle.model
        self.peft_model = None
        if config.lora_r:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                              target_modules=config.lora_target_modules)
            # peft injects LoRA layers into this same model object; the sampler keeps using it.
            # Their random init is seeded so a run is reproducible whatever ran before it.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                self.peft_model = get_peft_model(self.model, lora)
            self.params = [p for p in self.model.parameters() if p.requires_grad]
            self.reference = None
        else:
            self.params = trainable_parameters(self.model)
            for p in self.model.parameters():
                p.requires_grad_(False)
            for p in self.params:
                p.requires_grad_(True)
            self.reference = copy.deepcopy(self.model).eval() if config.beta else None
            if self.reference is not None:
                self.reference.requires_grad_(False)
        if config.gradient_checkpointing:
            self.model.model.language_model.gradient_checkpointing_enable()
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.sampler = TwoPhaseSampler(bundle)
        self.step_index = 0
        self.rng = random.Random(config.seed)
        self.history: list[dict] = []

    # -- pieces -------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return c.learning_rate * (step + 1) / c.warmup_steps
        if c.lr_schedule == "constant":
            return c.learning_rate
        progress = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
        return c.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def sample(self, prompts: list) -> list[Generation]:
        c = self.config
        sampling = SamplingConfig(num_generations=c.num_generations, cfg_weight=c.cfg_weight,
                                  text_temperature=c.text_temperature, image_temperature=c.image_temperature,
                                  max_reasoning_tokens=c.max_reasoning_tokens)
        seeds = [c.seed * 1_000_003 + self.step_index * 10_007 + i for i in range(len(prompts))]
        self.model.eval()
        return self.sampler.generate([_text(p) for p in prompts], sampling, seeds=seeds)

    def sequence_logprobs(self, model, gens: Sequence[Generation]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probs [n, text + image tokens] under `model` and the matching trained-token mask."""
        c = self.config
        pad = self.bundle.ids.pad
        records = [SFTRecord(g.prompt_ids.tolist(), g.text_ids.tolist(), g.image_ids[0].tolist()) for g in gens]
        device = next(self.model.parameters()).device
        batch = pack([r.prompt_ids for r in records], [r.text_ids for r in records],
                     [r.image_ids for r in records], pad).to(device)
        text_logits, image_logits = forward_packed(model, batch, text=c.train_text, image=c.train_image)
        parts, masks = [], []
        if c.train_text:
            t = c.text_temperature if c.text_temperature > 0 else 1.0
            lp = torch.log_softmax(text_logits.float() / t, -1).gather(-1, batch.text_targets[..., None]).squeeze(-1)
            parts.append(lp)
            masks.append(batch.text_mask)
        if c.train_image:
            logits = image_logits.float()
            if c.image_logprob == "cfg" and c.cfg_weight > 1:
                unc = [unconditional(r, pad) for r in records]
                ubatch = pack([r.prompt_ids for r in unc], [r.text_ids for r in unc],
                              [r.image_ids for r in unc], pad).to(device)
                _, uncond = forward_packed(model, ubatch, text=False)
                logits = uncond.float() + c.cfg_weight * (logits - uncond.float())
            t = c.image_temperature if c.image_temperature > 0 else 1.0
            lp = torch.log_softmax(logits / t, -1).gather(-1, batch.image_targets[..., None]).squeeze(-1)
            parts.append(lp)
            masks.append(torch.ones_like(lp, dtype=torch.bool))
        return torch.cat(parts, 1), torch.cat(masks, 1)

    def _reference_context(self):
        if self.peft_model is not None:
            return self.peft_model.disable_adapter()
        return contextlib.nullcontext()

    # -- one step -----------------------------------------------------------------------------
    def step(self) -> StepResult:
        c = self.config
        start = time.time()
        prompts = self.prompt_source(self.step_index, self.rng)
        gens = self.sample(prompts)
        t_sample = time.time() - start
        per_gen_prompts = [prompts[g.prompt_index] for g in gens]
        extra = {"generations": gens} if self._reward_takes_samples else {}
        rewards, components = self.reward_fn(per_gen_prompts, [g.chain for g in gens], [g.images[0] for g in gens],
                                             **extra)
        valid = torch.tensor([r is not None for r in rewards])
        reward_t = torch.tensor([r if r is not None else 0.0 for r in rewards], dtype=torch.float32)
        advantages, usable = group_advantages(reward_t, c.num_generations, valid=valid,
                                              scale_rewards=c.scale_rewards)
        t_reward = time.time() - start - t_sample
        train_idx = [i for i in range(len(gens)) if usable[i]]  # zero advantage still carries the KL term
        chunks = [train_idx[i:i + c.micro_batch_size] for i in range(0, len(train_idx), c.micro_batch_size)]
        old, ref = {}, {}
        if chunks and (c.num_iterations > 1 or c.beta):
            with torch.no_grad():
                self.model.eval()
                for chunk in chunks:
                    if c.num_iterations > 1:
                        old[chunk[0]] = self.sequence_logprobs(self.model, [gens[i] for i in chunk])[0]
                    if c.beta:
                        with self._reference_context():
                            model = self.reference if self.reference is not None else self.model
                            ref[chunk[0]] = self.sequence_logprobs(model, [gens[i] for i in chunk])[0]
        lr = self.lr_at(self.step_index)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        stats = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0}
        if chunks:
            self.model.train()
            total_seqs = len(train_idx)
            total_tokens = float(sum((len(gens[i].text_ids) if c.train_text else 0)
                                     + (gens[i].image_ids.shape[1] if c.train_image else 0) for i in train_idx))
            for _ in range(c.num_iterations):
                self.optimizer.zero_grad(set_to_none=True)
                for chunk in chunks:
                    logp, mask = self.sequence_logprobs(self.model, [gens[i] for i in chunk])
                    out = grpo_loss(logp, old.get(chunk[0], logp.detach()), advantages[chunk].to(logp.device), mask,
                                    ref_logp=ref.get(chunk[0]), beta=c.beta, epsilon_low=c.epsilon,
                                    epsilon_high=c.epsilon_high, loss_type=c.loss_type, max_length=mask.shape[1],
                                    total_sequences=total_seqs, total_tokens=total_tokens)
                    out.loss.backward()
                    share = len(chunk) / total_seqs
                    stats["loss"] += out.loss.item() / c.num_iterations
                    stats["kl"] += out.kl.item() * share / c.num_iterations
                    stats["clip_fraction"] += out.clip_fraction.item() * share / c.num_iterations
                torch.nn.utils.clip_grad_norm_(self.params, c.max_grad_norm)
                self.optimizer.step()
            self.model.eval()
        metrics = {
            "step": self.step_index + 1, "lr": lr, "reward_mean": _mean(rewards), "reward_std": _std(rewards),
            "missing_rewards": int((~valid).sum()), "trained_sequences": len(train_idx),
            "valid_chain_rate": _mean([float(g.parsed.is_valid) for g in gens]),
            "chain_tokens": _mean([float(len(g.text_ids)) for g in gens]),
            "sample_seconds": t_sample, "reward_seconds": t_reward, "step_seconds": time.time() - start, **stats,
        }
        for name, values in components.items():
            metrics[f"{name}_mean"] = _mean(values)
        self.history.append(metrics)
        self.step_index += 1
        if c.log_every and (self.step_index % c.log_every == 0):
            log.info("grpo step %d: reward %.3f (%s) loss %.4f kl %.4f clip %.3f %.1fs", self.step_index,
                     metrics["reward_mean"] or 0.0,
                     " ".join(f"{k} {metrics[f'{k}_mean'] or 0:.2f}" for k in components),
                     stats["loss"], stats["kl"], stats["clip_fraction"], metrics["step_seconds"])
        return StepResult(self.step_index, metrics, gens, list(rewards))

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, root: str | Path, *, keep_last: int = 2) -> Path:
        """Write trainable weights, optimizer, RNG states and the step atomically; keep the last K.

        The sampler's randomness is keyed by (seed, step) and prompts by step, so restoring these is
        enough for a resumed run to continue exactly where this one stands.
        """
        from safetensors.torch import save_file

        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"checkpoint-{self.step_index:06d}"
        tmp = root / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        trainable = {n: p.detach().contiguous().cpu() for n, p in self.model.named_parameters() if p.requires_grad}
        save_file(trainable, str(tmp / "trainable.safetensors"))
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        save_file({"torch_rng": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        state = {"step": self.step_index, "history": self.history, "python_rng": _jsonable(self.rng.getstate()),
                 "config": asdict(self.config)}
        (tmp / "trainer_state.json").write_text(json.dumps(state))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(root.glob("checkpoint-*"))[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self, directory: str | Path) -> None:
        from safetensors.torch import load_file

        directory = Path(directory)
        trainable = load_file(str(directory / "trainable.safetensors"))
        params = dict(self.model.named_parameters())
        unknown = sorted(set(trainable) - set(params))
        if unknown:
            raise ValueError(f"{directory}: checkpoint holds weights this model lacks: {', '.join(unknown[:5])}")
        with torch.no_grad():
            for name, value in trainable.items():
                params[name].copy_(value)
        self.optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
        torch.set_rng_state(load_file(str(directory / "rng.safetensors"))["torch_rng"])
        state = json.loads((directory / "trainer_state.json").read_text())
        self.step_index, self.history = state["step"], state["history"]
        self.rng.setstate(_tupled(state["python_rng"]))

    def train(self, on_step: Callable[[StepResult], None] | None = None) -> list[dict]:
        while self.step_index < self.config.steps:
            result = self.step()
            if on_step:
                on_step(result)
        return self.history


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under root (temporary, half-written ones are ignored)."""
    found = sorted(Path(root).glob("checkpoint-*")) if Path(root).is_dir() else []
    return found[-1] if found else None


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tupled(value):
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def _text(prompt) -> str:
    return prompt if isinstance(prompt, str) else prompt.text


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _std(values) -> float | None:
    vals = [v for v in values if v is not None]
    if len(vals) < 2:
        return 0.0 if vals else None
    m = sum(vals) / len(vals)
    return (sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5
