"""GRPO checkpoints: written atomically, read back exactly, and chosen when a run resumes.

A checkpoint holds the trainer's state (`GRPOTrainer.state_dict`): the trainable weights, the optimizer state (or
accelerate's sharded state under DeepSpeed / FSDP), every process's RNG states, the step, the history and the
config the weights depend on.
The sampler's randomness is keyed by (seed, step) and prompts by step, so restoring these continues a run
exactly. Resuming picks the newest checkpoint that reads back whole, after checking the recipe against it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch

from .distributed import shards_optimizer

log = logging.getLogger(__name__)

# The trainer's state written as trainer_state.json (the tensors go to safetensors files, the optimizer to torch's).
JSON_STATE = ("step", "history", "python_rng", "config", "world_size")
# Settings a checkpoint's weights depend on: resuming with other values cannot continue that run.
WEIGHT_SETTINGS = ("lora_r", "lora_alpha", "lora_target_modules", "train_text", "train_image")


def save(trainer, root: str | Path, *, keep_last: int = 2) -> Path:
    """Write the trainer's state (`GRPOTrainer.state_dict`) atomically as checkpoint-<step>; keep the last K.

    Call it on every process: the state is gathered where sharded, and only the main process writes (under
    DeepSpeed / FSDP, whose optimizer state is sharded, every process also writes its part through
    `accelerator.save_state`, into accelerate_state/).
    """
    from safetensors.torch import save_file

    from ..model.loading import plain_file_modes

    acc = trainer.accelerator
    state = trainer.state_dict()
    root = Path(root)
    final = root / f"checkpoint-{state['step']:06d}"
    tmp = root / f".{final.name}.tmp"
    if acc.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    acc.wait_for_everyone()
    if state["optimizer"] is None:  # sharded: accelerate writes it (with the weights), every process its part
        acc.save_state(str(tmp / "accelerate_state"))
    if acc.is_main_process:
        save_file(state["trainable"], str(tmp / "trainable.safetensors"))
        if state["optimizer"] is not None:
            torch.save(state["optimizer"], tmp / "optimizer.pt")
        save_file(state["rng"], str(tmp / "rng.safetensors"))
        (tmp / "trainer_state.json").write_text(json.dumps({key: state[key] for key in JSON_STATE}))
        plain_file_modes(tmp)  # safetensors writes 0600; the final weights and everything else: 0666 less umask
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(root.glob("checkpoint-*"))[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
    return final


def load(trainer, directory: str | Path) -> None:
    """Read a checkpoint whole, then restore it into the trainer (`GRPOTrainer.load_state_dict`; on every
    process, each taking back its own RNG states). A damaged file is found before anything changes."""
    from safetensors.torch import load_file

    directory = Path(directory)
    state = json.loads((directory / "trainer_state.json").read_text())
    state["trainable"] = load_file(str(directory / "trainable.safetensors"))
    state["rng"] = load_file(str(directory / "rng.safetensors"))
    if shards_optimizer(trainer.accelerator):
        state["accelerate_state"] = directory / "accelerate_state"
        if not state["accelerate_state"].is_dir():
            raise ValueError(
                f"{directory}: written without DeepSpeed / FSDP (no accelerate_state/); resume it "
                "with the launch configuration that wrote it"
            )
    else:
        state["optimizer"] = torch.load(directory / "optimizer.pt", weights_only=True)
    try:
        trainer.load_state_dict(state)
    except ValueError as exc:
        raise ValueError(f"{directory}: {exc}") from None


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under root (temporary, half-written ones are ignored)."""
    found = sorted(Path(root).glob("checkpoint-*")) if Path(root).is_dir() else []
    return found[-1] if found else None


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
