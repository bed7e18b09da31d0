"""One place for the transformers API names that changed within the versions gotr1 supports (5.x), so no
user sees a deprecation warning on every run and older 5.x releases keep working."""

from __future__ import annotations

import functools
import inspect
from typing import Any


@functools.cache
def _takes_cache(forward: Any) -> bool:
    try:
        return "cache" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


def cache_kwargs(module: Any, cache: Any) -> dict[str, Any]:
    """The keyword a decoder (module or callable) takes its KV cache by: ``cache`` (newer transformers 5.x;
    the old name warns there) or ``past_key_values``."""
    forward = getattr(type(module), "forward", None) or module
    return {"cache" if _takes_cache(forward) else "past_key_values": cache}


def returned_cache(output: Any) -> Any:
    """The KV cache a decoder returned: ``output.cache`` (newer transformers 5.x; reading the old name warns
    there) or ``output.past_key_values``."""
    fields = getattr(output, "__dataclass_fields__", {})
    return output.cache if "cache" in fields else output.past_key_values


def enable_activation_checkpointing(module: Any) -> None:
    """Activation (gradient) checkpointing under whichever name this transformers release uses."""
    enable = getattr(module, "activation_checkpointing_enable", None) or module.gradient_checkpointing_enable
    enable()
