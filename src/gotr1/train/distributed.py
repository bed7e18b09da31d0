"""The pieces that let the GRPO trainer run under `accelerate launch`: one process or many, DDP, DeepSpeed, FSDP.

Nothing here talks to torch.distributed directly: processes, gradient reduction, sharding and gathers
all go through accelerate's `Accelerator` (and, where accelerate leaves it to them, the documented
DeepSpeed / FSDP calls for reading sharded parameters).

* `make_accelerator` is `Accelerator(...)`, except that processes started by a multi-process launcher on
  a machine without a GPU become CPU processes (gloo) instead of each believing it is alone.
* The trainer prepares `model.teacher_forcing.PolicyScorer`, the policy's teacher-forced forward as one
  module forward, so `accelerator.prepare` can wrap it (DDP gradient hooks, autocast for mixed precision,
  FSDP / DeepSpeed ZeRO-3 parameter gathering).
* `accumulating` marks the backward passes of all but a step's last micro-batch (no gradient
  all-reduce, no DeepSpeed optimizer step).
* `iter_full_parameters` reads full parameter values on every process, also where ZeRO-3 or FSDP shard
  them; the trainer copies them into an unsharded sampling replica and into checkpoints.

Verified here (CPU only): one process and two gloo processes (`configs/accelerate/cpu_2proc.yaml`).
The DeepSpeed and FSDP branches follow the accelerate / DeepSpeed / PyTorch documentation and have not
been run on GPUs yet.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch

log = logging.getLogger(__name__)

# Module-tree segments that FSDP1 (and activation-checkpoint wrappers) insert into parameter names.
_WRAPPER_SEGMENTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def native_bf16(device: str) -> bool:
    """Whether bfloat16 autocast pays off on `device`: GPUs, and CPUs with native bf16 (AVX512-BF16 / AMX);
    elsewhere it is emulated and slower than float32."""
    return str(device).startswith("cuda") or torch.ops.mkldnn._is_mkldnn_bf16_supported()


def make_accelerator(**kwargs):
    """`accelerate.Accelerator(**kwargs)`; launched processes on a machine without a GPU run on CPU (gloo).

    `accelerate launch` with several processes starts them through torch.distributed.run; without a GPU
    accelerate would then treat every process as a single-process run unless `ACCELERATE_USE_CPU` is
    set, so that is what `cpu=True` does here.
    """
    from accelerate import Accelerator

    if "cpu" not in kwargs and launched_without_gpu():
        kwargs["cpu"] = True
    return Accelerator(**kwargs)


class SamplingReplica:
    """A full, unsharded copy of the policy to sample from under ZeRO-3 / FSDP, which shard the weights while
    sampling runs outside any module forward. Taken before ``accelerator.prepare`` shards the model, in the
    training precision; ``refresh`` copies the trained weights back in from the shards before each use."""

    def __init__(self, source, bundle, accelerator, *, is_peft: bool) -> None:
        half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(accelerator.mixed_precision))
        copied = copy.deepcopy(source).to(accelerator.device, dtype=half).eval()
        self.peft = copied if is_peft else None  # the peft wrapper, for merging LoRA at the end
        self.model = copied.base_model.model if is_peft else copied
        self.model.requires_grad_(False)
        self.bundle = dataclasses.replace(bundle, model=self.model)

    def refresh(self, accelerator, prepared, names) -> Any:
        """The replica's bundle with the current weights (a collective: call it on every process)."""
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in iter_full_parameters(accelerator, prepared, names):
                params[name].copy_(value)
        return self.bundle


def gather_per_process(obj) -> list:
    """[obj of process 0, obj of process 1, ...] on every process (accelerate's gather_object)."""
    from accelerate.utils import gather_object

    return gather_object([obj])


def launched_without_gpu() -> bool:
    """Started as one of several processes (WORLD_SIZE > 1) on a machine with no CUDA or XPU device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if torch.cuda.is_available():
        return False
    xpu = getattr(torch, "xpu", None)
    return not (xpu is not None and xpu.is_available())


# -- what the accelerator does ------------------------------------------------------------------


def _distributed_type(accelerator) -> str:
    return str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type)).upper()


def is_deepspeed(accelerator) -> bool:
    return _distributed_type(accelerator) == "DEEPSPEED"


def is_fsdp(accelerator) -> bool:
    return _distributed_type(accelerator) == "FSDP"


def zero_stage(accelerator) -> int | None:
    if not is_deepspeed(accelerator):
        return None
    return int(accelerator.state.deepspeed_plugin.zero_stage)


def shards_parameters(accelerator) -> bool:
    """True under DeepSpeed ZeRO-3 and FSDP: no process holds the full weights outside a forward."""
    return is_fsdp(accelerator) or zero_stage(accelerator) == 3


def shards_optimizer(accelerator) -> bool:
    """True under DeepSpeed (any ZeRO stage) and FSDP: optimizer state is split across processes."""
    return is_deepspeed(accelerator) or is_fsdp(accelerator)


@contextlib.contextmanager
def loading_whole_model(accelerator):
    """Load the policy whole, also under ZeRO-3.

    An Accelerator with a ZeRO-3 plugin registers its config with transformers (whatever
    `zero3_init_flag` says), and `from_pretrained` then builds the model inside `deepspeed.zero.Init`,
    partitioned from the start. GRPO samples from a full replica copied from the loaded model, so the
    registration is lifted while loading; `accelerator.prepare` partitions the policy afterwards.
    """
    if zero_stage(accelerator) != 3:
        yield
        return
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        accelerator.state.deepspeed_plugin.set_deepspeed_weakref()


def configure_deepspeed(accelerator, *, micro_batch_size: int, max_grad_norm: float) -> None:
    """Fill the DeepSpeed config entries accelerate cannot infer without a DataLoader (call before prepare).

    GRPO accumulates its own micro-batches (their number varies with missing rewards), marking the last
    one as the accumulation boundary, so DeepSpeed's own gradient_accumulation_steps must stay 1. DeepSpeed
    clips gradients itself, with `gradient_clipping`; "auto" becomes the recipe's max_grad_norm.
    """
    if not is_deepspeed(accelerator):
        return
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    if config.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        config["train_micro_batch_size_per_gpu"] = micro_batch_size
    steps = config.get("gradient_accumulation_steps", "auto")
    if steps == "auto":
        config["gradient_accumulation_steps"] = 1
    elif int(steps) != 1:
        raise ValueError(
            f"DeepSpeed gradient_accumulation_steps is {steps}; GRPO accumulates its own micro-batches "
            "(grpo.micro_batch_size), so set it to 1 or auto"
        )
    clip = config.get("gradient_clipping", "auto")
    if clip == "auto":
        config["gradient_clipping"] = max_grad_norm
    elif float(clip) != float(max_grad_norm):
        log.warning("DeepSpeed clips gradients at %s (its config), not at grpo.max_grad_norm=%s", clip, max_grad_norm)


@contextlib.contextmanager
def accumulating(accelerator, prepared):
    """Backward passes inside add to the local gradients only: no all-reduce (DDP), no accumulation
    boundary and no optimizer step (DeepSpeed). FSDP reduce-scatters every micro-batch into its sharded
    gradients instead of keeping unsharded ones, which is also exact."""
    previous = accelerator.sync_gradients
    accelerator.sync_gradients = False
    try:
        if is_fsdp(accelerator):
            yield
        else:
            with accelerator.no_sync(prepared):
                yield
    finally:
        accelerator.sync_gradients = previous


def clean_name(name: str) -> str:
    for segment in _WRAPPER_SEGMENTS:
        name = name.replace(segment, "")
    return name


def iter_full_parameters(
    accelerator, prepared, names: Iterable[str] | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """(name in the Janus model, full value) for the prepared PolicyScorer's parameters, on every process.

    Names are those of `PolicyScorer.model` (wrapper segments removed). Under ZeRO-3 and FSDP this is a
    collective: every process must consume the whole iterator, in step. The tensors are only valid until
    the next item (they may be gathered buffers that are freed again): copy what you keep.
    """
    wanted = set(names) if names is not None else None

    def selected(module):
        for raw, p in module.named_parameters():
            name = clean_name(raw)
            name = name[len("model.") :] if name.startswith("model.") else name
            if wanted is None or name in wanted:
                yield name, p

    if zero_stage(accelerator) == 3:
        import deepspeed  # documented way to read ZeRO-3 partitioned parameters

        for name, p in selected(accelerator.unwrap_model(prepared)):
            with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
                yield name, p.data
        return
    if is_fsdp(accelerator):
        module = accelerator.unwrap_model(prepared)
        if getattr(accelerator, "is_fsdp2", False):
            from torch.distributed.tensor import DTensor

            for name, p in selected(module):
                yield name, (p.full_tensor() if isinstance(p, DTensor) else p).detach()
            return
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        # FSDP1 (use_orig_params: true): inside summon_full_params the root's named_parameters are the
        # original, unsharded parameters (names cleaned by `clean_name`).
        with FSDP.summon_full_params(prepared, writeback=False, recurse=True):
            for name, p in selected(prepared):
                yield name, p.detach()
        return
    for name, p in selected(accelerator.unwrap_model(prepared)):
        yield name, p.detach()
