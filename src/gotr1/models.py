"""Which model a command means: a checkpoint path or hub id, the shipped shapes model, or a tiny random one."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

BUILTIN_TINY_RANDOM = "tiny-random"
# The shapes-world model made by `gotr1 shapes build-tokenizer` + `pretrain`, shipped in the package.
DEFAULT_MODEL = Path(__file__).parent / "worlds" / "shapes" / "default_model"


def load_model(spec: str | None, dtype=None, device=None):
    """spec None -> the shipped shapes model; 'tiny-random' -> a random tiny Janus; else a checkpoint."""
    from .model.loading import JanusBundle, load_janus
    from .model.tiny import build_tiny_janus
    from .model.tokens import SpecialTokenIds

    if spec is None and (DEFAULT_MODEL / "config.json").is_file():
        log.info("no model given: using the built-in shapes-world model (%s)", DEFAULT_MODEL)
        return load_janus(DEFAULT_MODEL, dtype=dtype, device=device)
    if spec in (None, BUILTIN_TINY_RANDOM):
        if spec is None:
            log.warning(
                "no model given and the built-in model is missing: using a tiny RANDOMLY initialised "
                "Janus, so chains and images are noise. Pass --model PATH for a real checkpoint."
            )
        model, tokenizer = build_tiny_janus()
        if device:
            model = model.to(device)
        return JanusBundle(model, tokenizer, SpecialTokenIds.from_tokenizer(tokenizer), source=BUILTIN_TINY_RANDOM)
    return load_janus(spec, dtype=dtype, device=device)
