"""Which scaled-dot-product-attention kernels the sampler and the teacher-forced forward may use.

On CUDA under bf16, PyTorch (2.11 measured) prefers cuDNN's attention, which builds an execution plan
for every new sequence shape. KV-cached decoding has a new key length at every step and GRPO batches
have a new padded width at every micro-batch, so each call paid ~11 ms of CPU for planning (backward:
~100 ms) on an H100 — a GRPO step of the shapes model went from 1.3 s (float32) to 7.6 s (bf16).
Flash / memory-efficient attention have no such per-shape cost, so cuDNN's kernel is left out there.
Elsewhere (CPU) nothing is restricted.
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

_WITHOUT_CUDNN = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def attention_backends(device: torch.device | str):
    """Context for a forward on `device`: on CUDA, every SDPA backend but cuDNN's; elsewhere a no-op."""
    if torch.device(device).type != "cuda":
        return contextlib.nullcontext()
    return sdpa_kernel(_WITHOUT_CUDNN)
