"""One entry point from a checkpoint path (or hub id) to a ready Janus model and tokenizer.

Two layouts load:
* transformers' Janus layout (`model_type: janus`), read by `JanusForConditionalGeneration`;
* DeepSeek's original layout (`model_type: multi_modality`, the GoT-R1 release), converted in memory
  by `original_layout` (and written once with `convert_checkpoint` so later loads are direct).
Missing or unplaceable weights are errors that name them, never silently random weights.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, JanusForConditionalGeneration

from .original_layout import convert_original_state_dict, infer_transformers_config
from .tokens import IMAGE_PLACEHOLDER, SpecialTokenIds, janus_generation_config, prepare_tokenizer

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message is one line naming the path and the problem."""


class PromptTooLong(ValueError):
    """A prompt that leaves no room for the chain and the image in the model's context (one line)."""


@dataclass
class JanusBundle:
    """A Janus model with the tokenizer and token ids that belong to it."""

    model: JanusForConditionalGeneration
    tokenizer: object
    ids: SpecialTokenIds
    source: str = ""
    layout: str = "transformers"

    @property
    def image_grid(self) -> int:
        """Image tokens per side (24 for Janus-Pro's 384 px images)."""
        return int(self.model.config.vq_config.num_patches)

    @property
    def num_image_tokens(self) -> int:
        return self.image_grid**2

    @property
    def image_size(self) -> int:
        """Side in pixels of a decoded image."""
        levels = len(self.model.config.vq_config.channel_multiplier)
        return self.image_grid * 2 ** (levels - 1)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def context_length(self) -> int | None:
        """Positions the language model was built for (None when its config does not say)."""
        return getattr(self.model.config.text_config, "max_position_embeddings", None) or None

    def prompt_budget(self, reasoning_tokens: int) -> int | None:
        """Prompt tokens (chat template included) that fit in the context beside `reasoning_tokens` of chain,
        `<begin_of_image>` and the image; None when the context is not known."""
        if self.context_length is None:
            return None
        return self.context_length - reasoning_tokens - 1 - self.num_image_tokens

    def fingerprint(self) -> str:
        """What the weights are, cheaply: a hash over every tensor's name, shape, dtype and 4096 of its values
        taken at a fixed stride, plus the vocabulary size. Any training step, another checkpoint, another
        dtype or a random model of another seed gives another fingerprint; the same weights anywhere the same.
        """
        import hashlib

        digest = hashlib.sha256(f"vocab={len(self.tokenizer)}".encode())
        with torch.no_grad():
            for name, tensor in sorted(self.model.state_dict().items()):
                flat = tensor.detach().reshape(-1)
                stride = max(1, flat.numel() // 4096)
                sample = flat[::stride][:4096].to("cpu", copy=True).contiguous()
                digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
                digest.update(sample.view(torch.uint8).numpy().tobytes() if sample.numel() else b"")
        return digest.hexdigest()[:16]

    def provenance(self) -> dict[str, str]:
        """What made a run's outputs besides its settings: the weights, their dtype and the device class."""
        parameter = next(self.model.parameters())
        return {
            "model_fingerprint": self.fingerprint(),
            "dtype": str(parameter.dtype).removeprefix("torch."),
            "device": parameter.device.type,
        }

    def check_prompt(self, prompt: str, reasoning_tokens: int, *, chain_given: bool = False) -> None:
        """PromptTooLong when ``prompt`` (with the chat template), ``reasoning_tokens`` of chain (the cap, or a
        given chain's length), ``<begin_of_image>`` and the image exceed the model's context: past its trained
        positions the model would draw noise. The one place gotr1 checks a prompt's length."""
        from .tokens import encode_prompt

        budget = self.prompt_budget(reasoning_tokens)
        if budget is None:
            return
        beside = f"the chain's {reasoning_tokens} tokens" if chain_given else f"{reasoning_tokens} reasoning tokens"
        if budget <= 0:
            raise PromptTooLong(
                f"{beside} and {self.num_image_tokens} image tokens leave no room for a prompt in the model's "
                f"context of {self.context_length} tokens"
            )
        length = len(encode_prompt(self.tokenizer, prompt, self.ids.bos))
        if length > budget:
            hint = "" if chain_given else " (shorten it or lower the reasoning cap)"
            raise PromptTooLong(
                f"prompt {prompt[:40]!r}: {length} tokens with the chat template; the model's context of "
                f"{self.context_length} tokens leaves {budget} beside {beside} and {self.num_image_tokens} image "
                f"tokens{hint}"
            )

    def preferred_cfg_weight(self) -> float:
        """The checkpoint's own CFG weight (its generation_config.guidance_scale), else the release's 5."""
        return float(getattr(self.model.generation_config, "guidance_scale", None) or 5.0)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the transformers layout (safetensors) that `load_janus` reads directly."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        plain_file_modes(out)
        return out


def plain_file_modes(folder: str | os.PathLike) -> None:
    """Give every file under `folder` the mode a plain open() gives (0666 less the umask). safetensors writes
    through a private temporary file (mode 0600), so without this its weights are the only files of a
    checkpoint its group cannot read."""
    umask = os.umask(0)
    os.umask(umask)
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~umask)


def resolve_checkpoint(path_or_id: str | os.PathLike) -> Path:
    """A local checkpoint directory: the path itself, or a hub snapshot for an `org/name` id."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: not a checkpoint directory (no config.json)")
        return path
    if path.exists():
        raise CheckpointError(f"{path}: expected a checkpoint directory, got a file")
    text = str(path_or_id)
    looks_like_hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~")) and os.sep == "/"
    if not looks_like_hub_id:
        raise CheckpointError(f"{text}: no such checkpoint directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text))
    except Exception as exc:  # network, auth, or missing repo: one line either way
        raise CheckpointError(
            f"{text}: not a local directory and the hub download failed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


def read_config(directory: Path) -> dict:
    try:
        return json.loads((directory / "config.json").read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{directory / 'config.json'}: invalid JSON (line {exc.lineno}: {exc.msg})") from None


def load_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint: safetensors (single or sharded), else PyTorch pickles (weights only)."""
    from safetensors.torch import load_file

    for index_name, loader in (
        ("model.safetensors.index.json", load_file),
        ("pytorch_model.bin.index.json", _load_bin),
    ):
        index = directory / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(loader(str(directory / shard)))
            return state
    if (directory / "model.safetensors").is_file():
        return load_file(str(directory / "model.safetensors"))
    if (directory / "pytorch_model.bin").is_file():
        return _load_bin(str(directory / "pytorch_model.bin"))
    raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin")


def _load_bin(path: str) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def _load_tokenizer(directory: Path):
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except Exception as exc:
        raise CheckpointError(f"{directory}: cannot load its tokenizer ({type(exc).__name__}: {exc})") from None
    prepare_tokenizer(tokenizer)
    return tokenizer


def _resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {
            "float32": torch.float32,
            "fp32": torch.float32,
            "bfloat16": torch.bfloat16,
            "bf16": torch.bfloat16,
            "float16": torch.float16,
            "fp16": torch.float16,
        }[str(dtype)]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16") from None


def _load_original(directory: Path, config: dict, tokenizer) -> JanusForConditionalGeneration:
    from accelerate import init_empty_weights

    state = load_state_dict(directory)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    try:
        janus_config = infer_transformers_config(
            config,
            shapes,
            image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER),
            pad_token_id=SpecialTokenIds.from_tokenizer(tokenizer).pad,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        converted = convert_original_state_dict(state)
    except ValueError as exc:
        raise CheckpointError(f"{directory}: {exc}") from None
    del state
    with init_empty_weights(include_buffers=False):
        model = JanusForConditionalGeneration(janus_config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    wrong = sorted(k for k in set(expected) & set(converted) if tuple(expected[k].shape) != tuple(converted[k].shape))
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {', '.join(missing[:10])}")
    if unexpected:
        problems.append(f"unplaceable {len(unexpected)}: {', '.join(unexpected[:10])}")
    if wrong:
        problems.append(f"wrong shape {len(wrong)}: {', '.join(wrong[:10])}")
    if problems:
        raise CheckpointError(f"{directory}: original-layout weights do not fit ({'; '.join(problems)})")
    model.load_state_dict(converted, strict=True, assign=True)
    return model


def _load_transformers(directory: Path) -> JanusForConditionalGeneration:
    try:
        model, info = JanusForConditionalGeneration.from_pretrained(str(directory), output_loading_info=True)
    except Exception as exc:
        raise CheckpointError(
            f"{directory}: cannot load Janus weights ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    missing = list(info.get("missing_keys") or [])
    mismatched = [str(m[0]) if isinstance(m, tuple) else str(m) for m in info.get("mismatched_keys") or []]
    if missing or mismatched:
        raise CheckpointError(
            f"{directory}: weights missing or of the wrong shape (missing: {', '.join(sorted(missing)[:10]) or '-'}; "
            f"mismatched: {', '.join(sorted(mismatched)[:10]) or '-'})"
        )
    return model


def load_janus(
    path_or_id: str | os.PathLike, *, dtype: str | torch.dtype | None = None, device: str | torch.device | None = None
) -> JanusBundle:
    """Load a Janus / GoT-R1 checkpoint of either layout, ready for sampling (eval mode)."""
    directory = resolve_checkpoint(path_or_id)
    config = read_config(directory)
    model_type = config.get("model_type")
    tokenizer = _load_tokenizer(directory)
    if model_type == "multi_modality":
        model, layout = _load_original(directory, config, tokenizer), "original"
    elif model_type == "janus":
        model, layout = _load_transformers(directory), "transformers"
    else:
        raise CheckpointError(
            f"{directory / 'config.json'}: model_type {model_type!r} is neither 'janus' "
            "(transformers layout) nor 'multi_modality' (original DeepSeek/GoT-R1 layout)"
        )
    ids = SpecialTokenIds.from_tokenizer(tokenizer)
    if len(tokenizer) > model.config.text_config.vocab_size:
        log.warning(
            "tokenizer has %d tokens but the model %d embeddings; resizing (new rows are untrained)",
            len(tokenizer),
            model.config.text_config.vocab_size,
        )
        model.resize_token_embeddings(len(tokenizer))
    target = (
        torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    model = model.to(device=target, dtype=_resolve_dtype(dtype, target)).eval()
    preferred_cfg = getattr(getattr(model, "generation_config", None), "guidance_scale", None)
    model.generation_config = janus_generation_config(ids, model.config.vision_config.num_image_tokens, preferred_cfg)
    return JanusBundle(model=model, tokenizer=tokenizer, ids=ids, source=str(path_or_id), layout=layout)


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, dtype: str | None = None) -> Path:
    """Write any loadable checkpoint in the transformers layout (safetensors), tokenizer included."""
    bundle = load_janus(src, dtype=dtype or "float32", device="cpu")
    return bundle.save(dst)
