"""GRPO for GoT-R1: sample chains and images, score them, and push the policy toward the better ones.

One step: B prompts x G samples from the two-phase sampler -> rewards -> group-normalised advantages
-> `num_iterations` passes of the clipped objective over the reasoning tokens and/or image tokens,
re-scored by one teacher-forced forward per micro-batch (`model.teacher_forcing`).

Image log-probs (`image_logprob`): "conditional" (default) scores image tokens under the conditional
generation head alone, as T2I-R1 does; "cfg" scores them under the CFG-combined distribution that
actually sampled them, which is exact but needs the unconditional forward too (twice the cost). The
ratio only needs old and new policy scored the same way, so the cheaper one is the default.

Rewards overlapped with sampling (`sample_chunk_prompts` + `overlap_rewards`): the step samples a few whole
prompts at a time and scores each chunk on one background thread while the next samples, so a latency-bound
judge waits behind sampling instead of after it. Samples are batch-independent and the rewards are gathered
in order, so rewards, advantages and updates equal the sequential step's (tests/test_grpo_overlap.py) for any
reward that scores each sample on its own. Off by default: smaller sampler calls give up batching (a large
model's decode step on a GPU is bound by reading its weights, so 16 rows cost about what 64 do), and the
reward thread's own CPU work competes with sampling; only a slow judge repays that (benchmarks/grpo_overlap.py).

Reference policy for the KL term: under LoRA the same model with its adapter disabled (no second
copy in memory); under full fine-tuning a frozen copy taken at the start.

Processes (`accelerate launch`, see `train.distributed` and README "Scaling out"): the step's B prompts
are dealt out by global index (prompt i to process i % world_size), so every group of G samples lives
on one process and its advantages are never split; a prompt's samples are seeded by its global index,
so each process draws exactly what a single process would for those prompts. Rewards are computed where
the samples are; per-sample rewards are then gathered so that advantages, the loss normalisers (total
sequences and tokens) and every logged metric are the global, single-process ones. Each process scales
its loss by world_size because DDP / DeepSpeed / FSDP average gradients over processes: the reduced
gradient is then the single-process one. All processes run the same number of micro-batches (a process
with fewer usable samples runs zero-weighted ones), which DeepSpeed ZeRO-3 and FSDP need for their
parameter gathers and DDP for its buffer broadcasts. (loss_type "dr_grpo" divides by each micro-batch's
padded width, so its loss depends on how samples fall into micro-batches, hence on the number of
processes; "grpo" and "dapo" do not.)
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import math
import random
import re
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from ..config import FieldError, check_choice, check_range
from ..model.compat import enable_activation_checkpointing
from ..model.loading import JanusBundle
from ..model.sampler import Generation, SamplingConfig, TwoPhaseSampler
from ..model.teacher_forcing import PolicyScorer, SFTRecord, pack, scorer, unconditional
from . import checkpoint
from .checkpoint import latest_checkpoint  # noqa: F401 (the trainer's public API before checkpoint.py)
from .distributed import (
    SamplingReplica,
    accumulating,
    configure_deepspeed,
    gather_per_process,
    is_fsdp,
    iter_full_parameters,
    make_accelerator,
    shards_optimizer,
    shards_parameters,
)
from .grpo_loss import LOSS_TYPES, group_advantages, grpo_loss
from .schedule import SCHEDULES, learning_rate
from .sft import trainable_parameters

log = logging.getLogger(__name__)

LANGUAGE_MODEL_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"


@dataclass
class GRPOConfig:
    steps: int = 100  # optimizer steps of the run
    prompts_per_step: int = 8  # B
    num_generations: int = 8  # G, samples per prompt
    learning_rate: float = 1e-5  # peak rate (AdamW)
    lr_schedule: str = "cosine"  # cosine | constant (train/schedule.py)
    warmup_steps: int = 0  # linear warm-up to learning_rate
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    max_grad_norm: float = 1.0  # gradients clipped to this global norm
    micro_batch_size: int = 16  # sequences per forward/backward (memory, not the math)
    beta: float = 0.0  # KL penalty to the reference policy (k3 estimator); 0: no reference pass
    epsilon: float = 0.2  # ratio clip: 1 - epsilon .. 1 + epsilon (or epsilon_high)
    epsilon_high: float | None = None  # upper clip (DAPO's clip-higher); None: epsilon
    loss_type: str = "grpo"  # normalisation: grpo | dr_grpo | dapo (train/grpo_loss.py)
    num_iterations: int = 1  # update passes over each batch of samples (> 1 keeps old log-probs)
    scale_rewards: bool = True  # False for dr_grpo-style advantages
    train_text: bool = True  # the loss covers the reasoning tokens
    train_image: bool = True  # the loss covers the image tokens
    image_logprob: str = "conditional"  # conditional | cfg
    # Prompts (each with all its G samples) per sampler call; None: all of a process's prompts in one call.
    # A sample's draws depend only on its prompt's seed and its index, so chunks change no sample.
    sample_chunk_prompts: int | None = None
    # Score each chunk on a background thread while the next one samples (needs sample_chunk_prompts): a
    # latency-bound judge then waits behind sampling, not after it. Same samples, rewards and updates.
    overlap_rewards: bool = False
    lora_r: int | None = 32  # None: full fine-tuning (VQ and vision tower stay frozen)
    lora_alpha: int = 32  # LoRA scaling numerator (alpha / r)
    lora_dropout: float = 0.0  # dropout on the LoRA path
    lora_target_modules: str = LANGUAGE_MODEL_LORA_TARGETS  # regex of the modules LoRA adapts
    gradient_checkpointing: bool = False  # recompute activations in backward (memory for time)
    seed: int = 0  # prompts, samples and LoRA init derive from it
    log_every: int = 1  # a log line every N steps (0: never)
    # How to sample is not GRPO's: a recipe's `sampling:` block (model.sampler.SamplingConfig) says it.
    MOVED: ClassVar[dict[str, str]] = {
        key: f"sampling.{key}"
        for key in ("cfg_weight", "text_temperature", "image_temperature", "max_reasoning_tokens", "compile")
    }

    def __post_init__(self):
        """Every value checked against the range that has a meaning, when the recipe is read (before a model
        loads); FieldError names the field."""
        for name in (
            "steps",
            "prompts_per_step",
            "num_generations",
            "micro_batch_size",
            "num_iterations",
            "lora_alpha",
        ):
            check_range(name, getattr(self, name), low=1)
        if self.num_generations < 2:  # a group of one has no spread: its advantage is 0, nothing is learned
            raise FieldError(
                "num_generations", f"must be >= 2 (GRPO compares a prompt's samples), got {self.num_generations}"
            )
        for name in ("warmup_steps", "seed", "log_every"):  # log_every 0: never
            check_range(name, getattr(self, name), low=0)
        check_range("learning_rate", self.learning_rate, low=0, low_open=True)
        for name in ("weight_decay", "beta"):
            check_range(name, getattr(self, name), low=0)
        check_range("max_grad_norm", self.max_grad_norm, low=0, low_open=True)
        check_range("epsilon", self.epsilon, low=0, high=1)
        check_range("epsilon_high", self.epsilon_high, low=0)
        try:
            re.compile(self.lora_target_modules)
        except (re.error, TypeError) as exc:
            raise FieldError("lora_target_modules", f"not a valid regular expression ({exc})") from None
        check_range("lora_r", self.lora_r, low=1)
        check_range("sample_chunk_prompts", self.sample_chunk_prompts, low=1)
        if self.overlap_rewards and self.sample_chunk_prompts is None:
            raise FieldError("overlap_rewards", "needs sample_chunk_prompts: rewards overlap the next chunk's sampling")
        check_range("lora_dropout", self.lora_dropout, low=0, high=1, high_open=True)
        check_choice("lr_schedule", self.lr_schedule, SCHEDULES)
        check_choice("loss_type", self.loss_type, LOSS_TYPES)
        check_choice("image_logprob", self.image_logprob, ("conditional", "cfg"))
        if not (self.train_text or self.train_image):
            raise FieldError("train_image", "train_text and train_image cannot both be off")


# reward_fn(prompts, chains, images[, generations=...]) -> (totals, {component name: values}); a total
# of None marks a sample that could not be scored (it is dropped from its group, never zeroed). A step
# sampled in chunks calls it once per chunk, in order; a reward_fn with a `one_batch()` context manager
# (RewardPipeline) is called inside it, so checks over a batch (max_missing_fraction) see the whole step.
RewardFn = Callable[..., tuple[list[float | None], dict[str, list]]]


class TrainerSetupError(ValueError):
    """A run that cannot start as configured (process count, accelerator, model state, LoRA targets): one line.
    Anything else raised while setting up is a bug and keeps its traceback."""


@dataclass
class Gathered:
    """Per-sample results of the whole batch, one row per sample in the global order, NaN where missing."""

    table: torch.Tensor  # [samples, 5 + components] float64
    components: tuple[str, ...]
    COLUMNS = ("reward", "tokens", "sampled_tokens", "valid_chain", "chain_tokens")

    def column(self, name: str) -> list[float | None]:
        """A column as Python values, None where missing."""
        index = self.COLUMNS.index(name) if name in self.COLUMNS else len(self.COLUMNS) + self.components.index(name)
        return [None if math.isnan(v) else v for v in self.table[:, index].tolist()]


@dataclass
class Rollout:
    """One step's samples and what the update needs, all computed before any weight changes."""

    generations: list[Generation]  # this process's samples
    rewards: list[float | None]  # this process's, per sample (None: missing)
    gathered: Gathered  # every process's rewards, components and token counts
    valid: torch.Tensor  # [all samples] reward present
    advantages: torch.Tensor  # [this process's samples] group-normalised
    chunks: list[list[int]]  # micro-batches of this process's trained samples
    n_micro: int  # micro-batches every process runs (the busiest one's count)
    total_sequences: int  # trained sequences over all processes (loss normaliser)
    total_tokens: float  # their tokens (loss normaliser)
    started: float  # wall time the step began
    sample_seconds: float  # in the sampler
    reward_seconds: float  # waiting for rewards (with overlap_rewards: after the last chunk sampled)
    reward_busy_seconds: float  # in reward_fn (with overlap_rewards: on the background thread)
    old_logprobs: dict[int, torch.Tensor] = field(default_factory=dict)  # by a micro-batch's first sample
    ref_logprobs: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass
class StepStats:
    """What an update measured (summed over its micro-batches; over processes after sum_over_processes)."""

    lr: float
    loss: float = 0.0
    kl_sum: float = 0.0  # token-weighted
    clipped_sum: float = 0.0  # token-weighted clip fraction
    tokens: float = 0.0
    entropy_sum: float = 0.0
    entropy_tokens: float = 0.0
    grad_norm: float | None = None

    _SUMMED = ("loss", "kl_sum", "clipped_sum", "tokens", "entropy_sum", "entropy_tokens")

    def sum_over_processes(self, accelerator) -> None:
        values = torch.tensor(
            [getattr(self, name) for name in self._SUMMED], dtype=torch.float64, device=accelerator.device
        )
        for name, value in zip(self._SUMMED, accelerator.reduce(values, reduction="sum").tolist()):
            setattr(self, name, value)


@dataclass
class StepResult:
    step: int
    metrics: dict
    # This process's samples (all of them in a single process), prompt_index = the prompt's global index.
    generations: list[Generation] = field(default_factory=list)
    rewards: list[float | None] = field(default_factory=list)  # per sample, None where unscored
    advantages: list[float] = field(default_factory=list)  # per sample (0 where not trained)


class GRPOTrainer:
    """GRPO one step at a time (`step()`), and the run's state (`state_dict()`); models, rewards and prompts
    come in, so any world or judge plugs in. `train.loop.GRPOLoop` drives the steps, with the evaluation,
    logging and checkpoint hooks of whoever runs it.

    accelerator: an `accelerate.Accelerator` (default: `train.distributed.make_accelerator()`, i.e. what
    `accelerate launch` configured, or a plain single process). The model is moved to its device.
    prompt_source(step, rng) must return the same B prompts on every process (it is called on each with
    identically seeded generators).
    """

    def __init__(
        self,
        bundle: JanusBundle,
        config: GRPOConfig,
        reward_fn: RewardFn,
        prompt_source: Callable[[int, random.Random], list],
        *,
        sampling: SamplingConfig | None = None,
        accelerator=None,
    ):
        self.bundle, self.config = bundle, config
        # How rollouts are sampled (and scored: the ratio's temperatures and CFG weight), with the model's defaults.
        self.sampling = (sampling or SamplingConfig()).for_model(bundle)
        if self.sampling.compile == "frozen":
            raise TrainerSetupError(
                "sampling.compile: 'frozen' makes the weights constants, and GRPO trains them: use 'default'"
            )
        self.reward_fn, self.prompt_source = reward_fn, prompt_source
        self.accelerator = acc = accelerator if accelerator is not None else make_accelerator()
        self.world_size, self.rank = acc.num_processes, acc.process_index
        check_world_size(config.prompts_per_step, self.world_size)
        if acc.gradient_accumulation_steps != 1:
            raise TrainerSetupError(
                "GRPO accumulates its own micro-batches (grpo.micro_batch_size); create the Accelerator "
                "with gradient_accumulation_steps=1"
            )
        # Like trl, reward functions that take keyword arguments also get the raw samples.
        params = inspect.signature(reward_fn).parameters.values()
        self._reward_takes_samples = any(p.kind is p.VAR_KEYWORD or p.name == "generations" for p in params)
        self.model = bundle.model
        self.peft_model = None
        if config.lora_r:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=config.lora_target_modules,
            )
            # peft injects LoRA layers into this same model object; the sampler keeps using it.
            # Their random init is seeded so a run is reproducible whatever ran before it.
            with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
                # peft (0.21) still asks transformers for the deprecated name itself; not a call of ours.
                warnings.filterwarnings(
                    "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
                )
                torch.manual_seed(config.seed)
                try:
                    self.peft_model = get_peft_model(self.model, lora)
                except ValueError as exc:  # e.g. target modules this model does not have
                    raise TrainerSetupError(f"grpo.lora_target_modules: peft cannot add LoRA: {exc}") from None
            self.params = [p for p in self.model.parameters() if p.requires_grad]
            self.reference = None
        else:
            # Heads the loss never reaches stay frozen: they would get no gradient anyway, and DDP wants
            # every trainable parameter to take part in each backward.
            unused = () if config.train_text else (self.model.lm_head.weight,)
            unused += () if config.train_image else tuple(self.model.model.generation_head.parameters())
            self.params = [p for p in trainable_parameters(self.model) if not any(p is u for u in unused)]
            for p in self.model.parameters():
                p.requires_grad_(False)
            for p in self.params:
                p.requires_grad_(True)
            self.reference = copy.deepcopy(self.model).eval() if config.beta else None
            if self.reference is not None:
                self.reference.requires_grad_(False)
        self._trainable_names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        # ZeRO-3 / FSDP shard the weights, and sampling runs outside any module forward: it uses a full
        # copy taken now and refreshed from the shards before each step (`sampling_bundle`).
        self.replica = None
        if shards_parameters(acc):
            if any(p.numel() == 0 for p in self.model.parameters()):
                raise TrainerSetupError(
                    "the model arrived already partitioned (ZeRO-3 zero.Init); load it inside "
                    "gotr1.train.distributed.loading_whole_model(accelerator)"
                )
            self.replica = SamplingReplica(
                self.peft_model or self.model, bundle, acc, is_peft=self.peft_model is not None
            )
        if config.gradient_checkpointing:
            enable_activation_checkpointing(self.model.model.language_model)
        optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=config.weight_decay)
        configure_deepspeed(acc, micro_batch_size=config.micro_batch_size, max_grad_norm=config.max_grad_norm)
        self.policy, self.optimizer = acc.prepare(PolicyScorer(self.model), optimizer)
        if self.reference is not None:
            self.reference.to(acc.device)
        self.sampler = TwoPhaseSampler(self.replica.bundle if self.replica is not None else bundle)
        # FSDP2 settles each unit's gradient dtypes at its first forward, from the parameters trainable then;
        # peft's disable_adapter freezes the LoRA weights, so under bf16 the first forward must not be the
        # reference's, or bf16 gradients later meet float32 shards (pytorch/pytorch#186998).
        self._first_forward_pending = is_fsdp(acc) and self.peft_model is not None
        self.step_index = 0
        self.rng = random.Random(config.seed)
        self.history: list[dict] = []

    # -- pieces -------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        c = self.config
        return learning_rate(
            step, peak=c.learning_rate, total_steps=c.steps, warmup_steps=c.warmup_steps, schedule=c.lr_schedule
        )

    def process_prompts(self, num_prompts: int) -> list[int]:
        """Global indices of this process's prompts among a step's `num_prompts`."""
        check_world_size(num_prompts, self.world_size)
        return list(range(self.rank, num_prompts, self.world_size))

    def sampling_bundle(self) -> JanusBundle:
        """The bundle to sample (and evaluate) with: the policy itself, or under ZeRO-3 / FSDP its full
        replica, refreshed from the shards here (a collective: call it on every process)."""
        if self.replica is None:
            return self.bundle
        return self.replica.refresh(self.accelerator, self.policy, self._trainable_names)

    def sample(self, prompts: list, indices: Sequence[int] | None = None) -> list[Generation]:
        """G samples for each prompts[i], i in indices (default: all), seeded by i and the step; their
        `prompt_index` is i."""
        indices = list(range(len(prompts))) if indices is None else list(indices)
        self.sampling_bundle().model.eval()
        return self._draw(prompts, indices)

    def _draw(self, prompts: list, indices: list[int]) -> list[Generation]:
        """`sample` with the sampling bundle already refreshed (once per step, however many chunks)."""
        c = self.config
        seeds = [c.seed * 1_000_003 + self.step_index * 10_007 + i for i in indices]
        with self.accelerator.autocast():
            gens = self.sampler.generate(
                [_text(prompts[i]) for i in indices], self.sampling, num_generations=c.num_generations, seeds=seeds
            )
        for g in gens:
            g.prompt_index = indices[g.prompt_index]
        return gens

    def sequence_logprobs(self, model, gens: Sequence[Generation], *, with_entropy: bool = False):
        """Per-token log-probs [n, text + image tokens] under `model` and the matching trained-token mask
        (and, with_entropy, each of those tokens' distribution entropy, detached).

        model: a Janus model, or a `PolicyScorer` (the prepared policy is one: `self.policy`).
        """
        c, sampling = self.config, self.sampling
        pad = self.bundle.ids.pad
        records = [SFTRecord(g.prompt_ids.tolist(), g.text_ids.tolist(), g.image_ids[0].tolist()) for g in gens]
        device = self.accelerator.device
        batch = pack(
            [r.prompt_ids for r in records], [r.text_ids for r in records], [r.image_ids for r in records], pad
        ).to(device)
        ubatch = None
        if c.train_image and c.image_logprob == "cfg" and sampling.cfg_weight > 1:
            unc = [unconditional(r, pad) for r in records]
            ubatch = pack([r.prompt_ids for r in unc], [r.text_ids for r in unc], [r.image_ids for r in unc], pad).to(
                device
            )
        text_logits, image_logits, uncond = scorer(model)(batch, ubatch, text=c.train_text, image=c.train_image)
        parts, masks, entropies = [], [], []
        if c.train_text:
            t = sampling.text_temperature if sampling.text_temperature > 0 else 1.0
            logprobs = torch.log_softmax(text_logits.float() / t, -1)
            parts.append(logprobs.gather(-1, batch.text_targets[..., None]).squeeze(-1))
            masks.append(batch.text_mask)
            if with_entropy:
                entropies.append(_entropy(logprobs))
        if c.train_image:
            logits = image_logits.float()
            if uncond is not None:
                logits = uncond.float() + sampling.cfg_weight * (logits - uncond.float())
            t = sampling.image_temperature if sampling.image_temperature > 0 else 1.0
            logprobs = torch.log_softmax(logits / t, -1)
            lp = logprobs.gather(-1, batch.image_targets[..., None]).squeeze(-1)
            parts.append(lp)
            masks.append(torch.ones_like(lp, dtype=torch.bool))
            if with_entropy:
                entropies.append(_entropy(logprobs))
        out = torch.cat(parts, 1), torch.cat(masks, 1)
        return (*out, torch.cat(entropies, 1)) if with_entropy else out

    def _reference_context(self):
        if self.peft_model is not None:
            return self.peft_model.disable_adapter()
        return contextlib.nullcontext()

    def _trained_tokens(self, g: Generation) -> int:
        c = self.config
        return (len(g.text_ids) if c.train_text else 0) + (g.image_ids.shape[1] if c.train_image else 0)

    def _gather_step(self, gens, rewards, components, failure) -> Gathered:
        """Every process's per-sample results as one table in the single-process (global prompt-major) order;
        a failure on any process is raised on every one."""
        G = self.config.num_generations
        payload: dict = {"error": failure}
        if failure is None:
            names = tuple(components)
            columns = [
                list(rewards),
                [self._trained_tokens(g) for g in gens],
                [len(g.text_ids) + int(g.image_ids.numel()) for g in gens],
                [float(g.parsed.is_valid) for g in gens],
                [float(len(g.text_ids)) for g in gens],
                *(list(components[name]) for name in names),
            ]
            rows = [[math.nan if v is None else float(v) for v in row] for row in zip(*columns)]
            payload.update(
                index=[g.prompt_index * G + g.sample_index for g in gens],
                names=names,
                table=torch.tensor(rows, dtype=torch.float64).reshape(len(gens), len(columns)),
            )
        parts = [payload] if self.world_size == 1 else gather_per_process(payload)
        errors = [p["error"] for p in parts if p["error"] is not None]
        if errors:
            if failure is not None:
                raise failure
            raise errors[0]  # another process failed: stop here too (run.py saves a checkpoint on every process)
        total = sum(len(p["index"]) for p in parts)
        table = torch.full((total, parts[0]["table"].shape[1]), math.nan, dtype=torch.float64)
        for p in parts:
            table[p["index"]] = p["table"]
        return Gathered(table, parts[0]["names"])

    # -- one step -----------------------------------------------------------------------------
    def step(self) -> StepResult:
        """One GRPO step: a rollout (samples, rewards, advantages, old and reference log-probs), then the
        update on it, then the step's metrics."""
        rollout = self.rollout()
        stats = self.optimize(rollout)
        metrics = self._metrics(rollout, stats)
        self.history.append(metrics)
        self.step_index += 1
        if self.config.log_every and self.step_index % self.config.log_every == 0 and self.accelerator.is_main_process:
            log.info(
                "grpo step %d: reward %.3f (%s) loss %.4f kl %.4f clip %.3f %.1fs",
                self.step_index,
                metrics["reward_mean"] or 0.0,
                " ".join(f"{k} {metrics[f'{k}_mean'] or 0:.2f}" for k in rollout.gathered.components),
                metrics["loss"],
                metrics["kl"],
                metrics["clip_fraction"],
                metrics["step_seconds"],
            )
        return StepResult(
            self.step_index, metrics, rollout.generations, list(rollout.rewards), rollout.advantages.tolist()
        )

    def rollout(self) -> Rollout:
        """Sample this step's prompts, score them, and compute everything the update needs before any
        weight changes: group advantages over the whole batch, the micro-batch plan, and the old (for
        several iterations) and reference (for the KL) log-probs."""
        c, W, G = self.config, self.world_size, self.config.num_generations
        start = time.time()
        prompts = self.prompt_source(self.step_index, self.rng)
        mine = self.process_prompts(len(prompts))
        failure, gens, rewards, components = None, [], [], {}
        times = {"sample": 0.0, "reward": 0.0, "busy": 0.0}
        try:
            gens, rewards, components = self._sample_and_score(prompts, mine, times)
        except Exception as exc:  # noqa: BLE001 - handed to every process below, then raised
            if W == 1:
                raise
            failure = exc
        everything = self._gather_step(gens, rewards, components, failure)
        # Advantages over the global batch (groups are independent, so this equals per-process ones).
        all_rewards = everything.column("reward")
        valid = torch.tensor([r is not None for r in all_rewards])
        reward_t = torch.tensor([r if r is not None else 0.0 for r in all_rewards], dtype=torch.float32)
        all_advantages, all_usable = group_advantages(reward_t, G, valid=valid, scale_rewards=c.scale_rewards)
        rows = [g.prompt_index * G + g.sample_index for g in gens]
        train_idx = [i for i, r in enumerate(rows) if all_usable[r]]  # zero advantage still carries the KL term
        chunks = [train_idx[i : i + c.micro_batch_size] for i in range(0, len(train_idx), c.micro_batch_size)]
        # Every process runs as many micro-batches as the busiest one (prompt i lives on process i % W).
        per_process = [0] * W
        usable_rows = all_usable.nonzero().flatten().tolist()
        for s in usable_rows:
            per_process[(s // G) % W] += 1
        rollout = Rollout(
            generations=gens,
            rewards=list(rewards),
            gathered=everything,
            valid=valid,
            advantages=all_advantages[rows],
            chunks=chunks,
            n_micro=max(math.ceil(n / c.micro_batch_size) for n in per_process),
            total_sequences=int(all_usable.sum()),
            total_tokens=float(sum(everything.column("tokens")[s] for s in usable_rows)),
            started=start,
            sample_seconds=times["sample"],
            reward_seconds=times["reward"],
            reward_busy_seconds=times["busy"],
        )
        self._behaviour_logprobs(rollout)
        return rollout

    def _sample_and_score(self, prompts: list, indices: list[int], times: dict) -> tuple[list, list, dict]:
        """This process's samples with their rewards and components, in `indices` order.

        Sampled `sample_chunk_prompts` whole prompts at a time (a group never straddles two calls). With
        `overlap_rewards` each chunk's rewards run on one background thread while the next chunk samples;
        one worker keeps the calls in submission order, so a stateful reward (counts, caches) sees what it
        would see called chunk by chunk in this thread. A reward failure stops sampling at the next chunk
        boundary and is raised here; nothing of the step's rewards outlives this call.
        """
        c = self.config
        size = c.sample_chunk_prompts or max(len(indices), 1)
        chunks = [indices[i : i + size] for i in range(0, len(indices), size)] or [[]]
        scope = getattr(self.reward_fn, "one_batch", None)
        gens: list[Generation] = []
        parts: list = []
        with scope() if callable(scope) and len(chunks) > 1 else contextlib.nullcontext():
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grpo-rewards") if c.overlap_rewards else None
            try:
                tick = time.perf_counter()
                self.sampling_bundle().model.eval()
                for chunk in chunks:
                    drawn = self._draw(prompts, chunk)
                    gens.extend(drawn)
                    times["sample"] += time.perf_counter() - tick
                    if pool is None:
                        parts.append(self._score_chunk(prompts, drawn))
                        times["reward"] += parts[-1][2]
                    else:
                        parts.append(pool.submit(self._score_chunk, prompts, drawn))
                        for done in (f for f in parts if f.done()):
                            done.result()  # a chunk that failed stops the sampling now
                    tick = time.perf_counter()
                # The compiled decode path's workspaces are KV-cache sized: free them for the passes that follow.
                self.sampler.release_workspaces()
                if pool is not None:
                    parts = [f.result() for f in parts]
                    times["reward"] += time.perf_counter() - tick
            finally:
                if pool is not None:  # on a failure: drop queued chunks, wait for the running one
                    pool.shutdown(wait=True, cancel_futures=True)
        times["busy"] += sum(p[2] for p in parts)
        if len(parts) == 1:
            return gens, parts[0][0], parts[0][1]
        rewards: list = []
        components = {name: [] for name in parts[0][1]}
        for totals, comps, _ in parts:
            if set(comps) != set(components):
                raise ValueError(
                    f"reward_fn gave components {sorted(comps)} for one chunk, {sorted(components)} for another"
                )
            rewards.extend(totals)
            for name, values in comps.items():
                components[name].extend(values)
        return gens, rewards, components

    def _score_chunk(self, prompts: list, gens: list[Generation]) -> tuple[list, dict, float]:
        """reward_fn on some samples: (totals, components, seconds), one value per sample checked."""
        start = time.perf_counter()
        extra = {"generations": gens} if self._reward_takes_samples else {}
        totals, components = self.reward_fn(
            [prompts[g.prompt_index] for g in gens], [g.chain for g in gens], [g.images[0] for g in gens], **extra
        )
        for name, values in (("totals", totals), *((f"component {k!r}", v) for k, v in components.items())):
            if len(values) != len(gens):
                raise ValueError(f"reward_fn returned {len(values)} {name} for {len(gens)} samples")
        return totals, components, time.perf_counter() - start

    def _behaviour_logprobs(self, rollout: Rollout) -> None:
        """The old (num_iterations > 1) and reference (beta > 0) log-probs of each micro-batch, keyed by its
        first sample, computed with the weights the samples were drawn with."""
        c, acc, gens = self.config, self.accelerator, rollout.generations
        if not rollout.n_micro or not (c.num_iterations > 1 or c.beta):
            return
        with torch.no_grad():
            self.policy.eval()
            for j in range(rollout.n_micro):
                chunk = rollout.chunks[j] if j < len(rollout.chunks) else None
                # gens[:1]: a stand-in pass where this process has fewer micro-batches than another
                batch = [gens[i] for i in chunk] if chunk else gens[:1]
                if c.num_iterations > 1:
                    lp = self.sequence_logprobs(self.policy, batch)[0]
                    if chunk:
                        rollout.old_logprobs[chunk[0]] = lp
                if c.beta and self._first_forward_pending:
                    with acc.autocast():
                        self.sequence_logprobs(self.policy, batch)
                    self._first_forward_pending = False
                if c.beta:
                    with self._reference_context(), acc.autocast():
                        model = self.reference if self.reference is not None else self.policy
                        lp = self.sequence_logprobs(model, batch)[0]
                    if chunk:
                        rollout.ref_logprobs[chunk[0]] = lp

    def optimize(self, rollout: Rollout) -> StepStats:
        """The clipped-objective update on a rollout (``num_iterations`` passes over its micro-batches);
        returns the update's statistics summed over processes."""
        c, acc, W, gens = self.config, self.accelerator, self.world_size, rollout.generations
        stats = StepStats(lr=self.lr_at(self.step_index))
        for group in self.optimizer.param_groups:
            group["lr"] = stats.lr
        if rollout.n_micro:
            self.policy.train()
            scale = float(W)  # DDP / DeepSpeed / FSDP average gradients over processes
            for iteration in range(c.num_iterations):
                self.optimizer.zero_grad(set_to_none=True)
                for j in range(rollout.n_micro):
                    chunk = rollout.chunks[j] if j < len(rollout.chunks) else None
                    last = j == rollout.n_micro - 1
                    with contextlib.nullcontext() if last else accumulating(acc, self.policy):
                        if not chunk:  # nothing left here: a zero-weighted pass keeps the processes in step
                            logp, _ = self.sequence_logprobs(self.policy, gens[:1])
                            acc.backward(logp.sum() * 0.0)
                            continue
                        scored = self.sequence_logprobs(
                            self.policy, [gens[i] for i in chunk], with_entropy=iteration == 0
                        )
                        logp, mask = scored[:2]
                        out = grpo_loss(
                            logp,
                            rollout.old_logprobs.get(chunk[0], logp.detach()),
                            rollout.advantages[chunk].to(logp.device),
                            mask,
                            ref_logp=rollout.ref_logprobs.get(chunk[0]),
                            beta=c.beta,
                            epsilon_low=c.epsilon,
                            epsilon_high=c.epsilon_high,
                            loss_type=c.loss_type,
                            max_length=mask.shape[1],
                            total_sequences=rollout.total_sequences,
                            total_tokens=rollout.total_tokens,
                        )
                        acc.backward(out.loss * scale if W > 1 else out.loss)
                    tokens = float(mask.sum())
                    stats.loss += out.loss.item() / c.num_iterations
                    stats.kl_sum += out.kl.item() * tokens / c.num_iterations
                    stats.clipped_sum += out.clip_fraction.item() * tokens / c.num_iterations
                    stats.tokens += tokens / c.num_iterations
                    if iteration == 0:
                        stats.entropy_sum += float((scored[2] * mask).sum())
                        stats.entropy_tokens += tokens
                norm = acc.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
                stats.grad_norm = float(norm) if norm is not None else None
                self.optimizer.step()
            self.policy.eval()
        if W > 1:
            stats.sum_over_processes(acc)
        return stats

    def _metrics(self, rollout: Rollout, stats: StepStats) -> dict:
        everything = rollout.gathered
        all_rewards = everything.column("reward")
        step_seconds = time.time() - rollout.started
        tok = stats.tokens
        metrics = {
            "step": self.step_index + 1,
            "lr": stats.lr,
            "reward_mean": _mean(all_rewards),
            "reward_std": _std(all_rewards),
            "missing_rewards": int((~rollout.valid).sum()),
            "trained_sequences": rollout.total_sequences,
            "valid_chain_rate": _mean(everything.column("valid_chain")),
            "chain_tokens": _mean(everything.column("chain_tokens")),
            "sample_seconds": rollout.sample_seconds,
            "reward_seconds": rollout.reward_seconds,
            "reward_busy_seconds": rollout.reward_busy_seconds,
            "step_seconds": step_seconds,
            "loss": stats.loss,
            "kl": stats.kl_sum / tok if tok else 0.0,
            "clip_fraction": stats.clipped_sum / tok if tok else 0.0,
            "entropy": stats.entropy_sum / stats.entropy_tokens if stats.entropy_tokens else None,
            "grad_norm": stats.grad_norm,
            "tokens_per_second": sum(everything.column("sampled_tokens")) / max(step_seconds, 1e-9),
            "processes": self.world_size,
        }
        for name in everything.components:
            metrics[f"{name}_mean"] = _mean(everything.column(name))
        return metrics

    # -- state and checkpoints (train/checkpoint.py writes and reads the state) ------------------------
    def state_dict(self) -> dict:
        """What a resumed run needs to continue this one exactly (a collective: call it on every process).

        JSON values: "step", "history", "python_rng" (the prompt source's generator), "config", "world_size";
        "rng": every process's torch (and CUDA) RNG state as tensors ("torch_rng": process 0's);
        "trainable": {name: full value} of the trained weights (on the main process; empty elsewhere);
        "optimizer": the optimizer's state, or None under DeepSpeed / FSDP, which shard it: there
        `accelerator.save_state` writes it, and `load_state_dict` reads that folder ("accelerate_state").
        The sampler's randomness is keyed by (seed, step) and prompts by step: nothing else is needed.
        Like torch's state dicts, the optimizer's holds its live tensors: copy it to keep it past the next step.
        """
        acc = self.accelerator
        trainable = {}
        for name, value in iter_full_parameters(acc, self.policy, self._trainable_names):
            if acc.is_main_process:
                trainable[name] = value.detach().contiguous().cpu().clone()
        return {
            "step": self.step_index,
            "history": list(self.history),
            "python_rng": _jsonable(self.rng.getstate()),
            "config": asdict(self.config),
            "world_size": self.world_size,
            "rng": self._rng_states(),
            "trainable": trainable,
            "optimizer": None if shards_optimizer(acc) else self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()` (on every process; each takes back its own RNG states). Under DeepSpeed /
        FSDP the weights and the optimizer come from accelerate's folder, ``state["accelerate_state"]``."""
        acc = self.accelerator
        params = dict(self.model.named_parameters())
        unknown = sorted(set(state["trainable"]) - set(params))
        if unknown:
            raise ValueError(f"the state holds weights this model lacks: {', '.join(unknown[:5])}")
        if shards_optimizer(acc):
            acc.load_state(str(state["accelerate_state"]))  # weights and sharded optimizer state
        else:
            with torch.no_grad():
                for name, value in state["trainable"].items():
                    params[name].copy_(value)
            self.optimizer.load_state_dict(state["optimizer"])
        rng = state["rng"]
        torch.set_rng_state(rng.get(f"torch_rng_rank{self.rank}", rng["torch_rng"]))
        if f"cuda_rng_rank{self.rank}" in rng and acc.device.type == "cuda":
            torch.cuda.set_rng_state(rng[f"cuda_rng_rank{self.rank}"], acc.device)
        self.step_index, self.history = state["step"], list(state["history"])
        self.rng.setstate(_tupled(state["python_rng"]))

    def _rng_states(self) -> dict[str, torch.Tensor]:
        """torch_rng (process 0's, the single-process format), and each process's beside it where there are
        several; cuda_rng_rank{R} on GPUs (a collective)."""
        W, acc = self.world_size, self.accelerator
        states = [torch.get_rng_state()] if W == 1 else gather_per_process(torch.get_rng_state())
        cuda_states = None
        if torch.cuda.is_available() and acc.device.type == "cuda":
            state = torch.cuda.get_rng_state(acc.device)
            cuda_states = [state] if W == 1 else gather_per_process(state)
        rng = {"torch_rng": states[0]}
        rng.update({f"torch_rng_rank{r}": s.clone() for r, s in enumerate(states)} if W > 1 else {})
        rng.update({f"cuda_rng_rank{r}": s.clone() for r, s in enumerate(cuda_states or [])})
        return rng

    def save_checkpoint(self, root: str | Path, *, keep_last: int = 2) -> Path:
        return checkpoint.save(self, root, keep_last=keep_last)

    def load_checkpoint(self, directory: str | Path) -> None:
        checkpoint.load(self, directory)

    def merged_model(self):
        """The trained policy as a plain Janus model with full weights (LoRA merged in): for saving at the
        end of a run. A collective under ZeRO-3 / FSDP (call on every process); training ends here."""
        bundle = self.sampling_bundle()
        peft = self.replica.peft if self.replica is not None else self.peft_model
        return peft.merge_and_unload() if peft is not None else bundle.model


def check_world_size(prompts_per_step: int, world_size: int) -> None:
    """Every process takes whole prompts (and so whole groups of samples)."""
    if prompts_per_step % world_size:
        raise TrainerSetupError(
            f"grpo.prompts_per_step={prompts_per_step} is not divisible by the {world_size} processes "
            "(each process takes whole prompts with all their samples)"
        )


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tupled(value):
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def _entropy(logprobs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return -(logprobs.exp() * logprobs).sum(-1)


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
