"""gotr1: an open, complete GoT-R1 (reasoning-chain text-to-image generation with Janus-Pro)."""

__version__ = "0.1.0"
