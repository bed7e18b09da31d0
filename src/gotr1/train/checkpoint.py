"""GRPO checkpoints: written atomically, read back exactly, and chosen when a run resumes.

A checkpoint holds the trainable weights, the optimizer state (or accelerate's sharded state under
DeepSpeed / FSDP), every process's RNG states, the step, the history and the config the weights depend on.
The sampler's randomness is keyed by (seed, step) and prompts by step, so restoring these continues a run
exactly. Resuming picks the newest checkpoint that reads back whole, after checking the recipe against it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from .distributed import gather_per_process, iter_full_parameters, shards_optimizer

log = logging.getLogger(__name__)

# Settings a checkpoint's weights depend on: resuming with other values cannot continue that run.
WEIGHT_SETTINGS = ("lora_r", "lora_alpha", "lora_target_modules", "train_text", "train_image")


def save(trainer, root: str | Path, *, keep_last: int = 2) -> Path:
    """Write trainable weights, optimizer, RNG states and the step atomically; keep the last K.

    The sampler's randomness is keyed by (seed, step) and prompts by step, so restoring these is
    enough for a resumed run to continue exactly where this one stands. Call it on every process:
    weights are gathered where sharded, every process's torch RNG state is kept, and only the main
    process writes (under DeepSpeed / FSDP, whose optimizer state is sharded, every process also
    writes its part through `accelerator.save_state`, into accelerate_state/).
    """
    from safetensors.torch import save_file

    from ..model.loading import plain_file_modes

    acc = trainer.accelerator
    root = Path(root)
    final = root / f"checkpoint-{trainer.step_index:06d}"
    tmp = root / f".{final.name}.tmp"
    if acc.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    acc.wait_for_everyone()
    trainable = {}
    for name, value in iter_full_parameters(acc, trainer.policy, trainer._trainable_names):
        if acc.is_main_process:
            trainable[name] = value.detach().contiguous().cpu().clone()
    rng_states = [torch.get_rng_state()] if trainer.world_size == 1 else gather_per_process(torch.get_rng_state())
    cuda_states = None
    if torch.cuda.is_available() and acc.device.type == "cuda":
        state = torch.cuda.get_rng_state(acc.device)
        cuda_states = [state] if trainer.world_size == 1 else gather_per_process(state)
    if shards_optimizer(acc):
        acc.save_state(str(tmp / "accelerate_state"))
    if acc.is_main_process:
        save_file(trainable, str(tmp / "trainable.safetensors"))
        if not shards_optimizer(acc):
            torch.save(trainer.optimizer.state_dict(), tmp / "optimizer.pt")
        # torch_rng (process 0's) is the single-process format; each process's state is kept beside it.
        rng = {"torch_rng": rng_states[0]}
        rng.update(
            {f"torch_rng_rank{r}": s.clone() for r, s in enumerate(rng_states)} if trainer.world_size > 1 else {}
        )
        rng.update({f"cuda_rng_rank{r}": s.clone() for r, s in enumerate(cuda_states or [])})
        save_file(rng, str(tmp / "rng.safetensors"))
        state = {
            "step": trainer.step_index,
            "history": trainer.history,
            "python_rng": _jsonable(trainer.rng.getstate()),
            "config": asdict(trainer.config),
            "world_size": trainer.world_size,
        }
        (tmp / "trainer_state.json").write_text(json.dumps(state))
        plain_file_modes(tmp)  # safetensors writes 0600; the final weights and everything else: 0666 less umask
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(root.glob("checkpoint-*"))[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
    return final


def load(trainer, directory: str | Path) -> None:
    """Restore a checkpoint (on every process); each process takes back its own torch RNG state."""
    from safetensors.torch import load_file

    acc = trainer.accelerator
    directory = Path(directory)
    sharded_state = directory / "accelerate_state"
    trainable = load_file(str(directory / "trainable.safetensors"))
    params = dict(trainer.model.named_parameters())
    unknown = sorted(set(trainable) - set(params))
    if unknown:
        raise ValueError(f"{directory}: checkpoint holds weights this model lacks: {', '.join(unknown[:5])}")
    if shards_optimizer(acc):
        if not sharded_state.is_dir():
            raise ValueError(
                f"{directory}: written without DeepSpeed / FSDP (no accelerate_state/); resume it "
                "with the launch configuration that wrote it"
            )
        acc.load_state(str(sharded_state))  # weights and sharded optimizer state
    else:
        with torch.no_grad():
            for name, value in trainable.items():
                params[name].copy_(value)
        trainer.optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
    rng = load_file(str(directory / "rng.safetensors"))
    torch.set_rng_state(rng.get(f"torch_rng_rank{trainer.rank}", rng["torch_rng"]))
    if f"cuda_rng_rank{trainer.rank}" in rng and acc.device.type == "cuda":
        torch.cuda.set_rng_state(rng[f"cuda_rng_rank{trainer.rank}"], acc.device)
    state = json.loads((directory / "trainer_state.json").read_text())
    trainer.step_index, trainer.history = state["step"], state["history"]
    trainer.rng.setstate(_tupled(state["python_rng"]))


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under root (temporary, half-written ones are ignored)."""
    found = sorted(Path(root).glob("checkpoint-*")) if Path(root).is_dir() else []
    return found[-1] if found else None


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tupled(value):
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def resumable_checkpoints(out: Path, config, model_spec: str | None) -> list[Path]:
    """The run's checkpoints, newest first, after checking that this recipe can continue them."""
    found = sorted((out / "checkpoints").glob("checkpoint-*"), reverse=True) if (out / "checkpoints").is_dir() else []
    if not found:
        raise ValueError(f"--resume: no checkpoint under {out / 'checkpoints'}")
    saved_run = out / "config.json"
    if saved_run.is_file():
        try:
            earlier = json.loads(saved_run.read_text())
        except ValueError:
            earlier = {}
        if "model" in earlier and earlier["model"] != model_spec:
            raise ValueError(
                f"--resume: the run in {out} trained model {earlier['model']!r}, this recipe names "
                f"{model_spec!r}; resume with the same model or start a new run"
            )
    for checkpoint in found:
        try:
            state = json.loads((checkpoint / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue  # unreadable: load_first_good reports it and falls back
        saved = state.get("config", {})
        for key in WEIGHT_SETTINGS:
            if key in saved and saved[key] != getattr(config, key):
                raise ValueError(
                    f"--resume: {checkpoint.name} was trained with grpo.{key}={saved[key]!r}, the recipe "
                    f"says {getattr(config, key)!r}; its weights need the same value"
                )
        break
    return found


def load_first_good(trainer, candidates: list[Path]) -> Path:
    """Load the newest checkpoint that reads back whole; a damaged newer one is reported and passed over."""
    problems = []
    for checkpoint in candidates:
        try:
            load(trainer, checkpoint)
            if problems:
                log.warning("resuming from %s: %s", checkpoint, "; ".join(problems))
            return checkpoint
        except Exception as exc:  # noqa: BLE001 (any damage: missing files, truncated tensors, bad JSON)
            problems.append(f"{checkpoint.name} is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    raise ValueError(f"--resume: no readable checkpoint under {candidates[0].parent} ({'; '.join(problems)})")
