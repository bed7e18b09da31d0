"""Which model a command means: a built-in model by name, a checkpoint path or hub id, or a tiny random one.

Built-in models are checkpoints a suite ships in the package (`Suite.models`, read from its light
declaration, `registry.LazySuite`): the shapes world ships its SFT model (`shapes-sft`) and the GoT-R1 model
GRPO made from it (`shapes-grpo`), the default of every command, so that a newcomer meets the model after RL,
which is what GoT-R1 is about.
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import registry

log = logging.getLogger(__name__)

BUILTIN_TINY_RANDOM = "tiny-random"
RANDOM_PREFIX = "random:"  # random:<size>: a published Janus-Pro configuration with random weights
DEFAULT_MODEL_NAME = "shapes-grpo"


def builtin_models() -> dict[str, tuple[str, Path]]:
    """Every built-in model: name -> (the suite that ships it, its checkpoint folder). Reads the suites' light
    declarations only: no world's rewards or benchmark's data are imported to find a model."""
    return registry.shipped_models()


def builtin_model(name: str = DEFAULT_MODEL_NAME) -> Path | None:
    """The folder of a built-in model that is installed (has its config), else None."""
    entry = builtin_models().get(name)
    return entry[1] if entry and (entry[1] / "config.json").is_file() else None


def model_suite(spec: str | None) -> str | None:
    """The suite whose built-in model `spec` names (None, the default, included), else None."""
    entry = builtin_models().get(spec or DEFAULT_MODEL_NAME)
    return entry[0] if entry else None


def model_name(spec: str | None) -> str:
    """A short name for a model spec, as a server reports it: built-in names as they are, paths by folder."""
    if spec is None:
        return DEFAULT_MODEL_NAME
    if spec in builtin_models() or spec == BUILTIN_TINY_RANDOM:
        return spec
    path = Path(spec)
    return path.name if path.exists() else spec


def load_model(spec: str | None, dtype=None, device=None):
    """spec None -> the default built-in model; a built-in name (shapes-grpo, shapes-sft) -> that model;
    'tiny-random' -> a random tiny Janus; 'random:<size>' (random:janus-pro-1b, random:janus-pro-7b) -> that
    published configuration with random weights, for benchmarks and memory checks; else a checkpoint folder
    (either layout) or hub id.

    An existing folder wins over a built-in name it happens to share."""
    from .model.loading import JanusBundle, load_janus
    from .model.tiny import build_tiny_janus
    from .model.tokens import SpecialTokenIds

    name = DEFAULT_MODEL_NAME if spec is None else spec
    if name.startswith(RANDOM_PREFIX) and not Path(name).is_dir():
        return _random_model(name, dtype, device)
    if name in builtin_models() and not Path(name).is_dir():
        path = builtin_model(name)
        if path is not None:
            log.info("using the built-in model %s (%s)", name, path)
            return load_janus(path, dtype=dtype, device=device)
        if spec is not None:
            raise FileNotFoundError(f"--model {spec}: this installation does not include the built-in model {spec}")
    if spec in (None, BUILTIN_TINY_RANDOM):
        if spec is None:
            log.warning(
                "no model given and the built-in model is missing: using a tiny RANDOMLY initialised "
                "Janus, so chains and images are noise. Pass --model PATH for a real checkpoint."
            )
        model, tokenizer = build_tiny_janus()
        if dtype:
            import torch

            model = model.to(getattr(torch, str(dtype).removeprefix("torch.")))
        if device:
            model = model.to(device)
        return JanusBundle(model, tokenizer, SpecialTokenIds.from_tokenizer(tokenizer), source=BUILTIN_TINY_RANDOM)
    return load_janus(spec, dtype=dtype, device=device)


def _random_model(spec: str, dtype, device):
    """'random:<size>' -> `model.real_size.build_random_janus(size)`; an unknown size is a one-line error."""
    from .model.real_size import build_random_janus, sizes

    size = spec.removeprefix(RANDOM_PREFIX)
    if size.lower() not in sizes():
        accepted = ", ".join(RANDOM_PREFIX + s for s in sizes())
        raise ValueError(f"--model {spec}: unknown random model size {size!r}; use one of: {accepted}")
    log.warning("--model %s: the published %s configuration with RANDOM weights (for benchmarks only)", spec, size)
    return build_random_janus(size, dtype=dtype, device=device)
