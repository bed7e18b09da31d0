"""Which attention kernels the sampler and the teacher-forced forward use.

On CUDA under bf16, PyTorch (2.11 measured) prefers cuDNN's attention, which builds an execution plan
for every new sequence shape. KV-cached decoding has a new key length at every step and GRPO batches
have a new padded width at every micro-batch, so each call paid ~11 ms of CPU for planning (backward:
~100 ms) on an H100 — a GRPO step of the shapes model went from 1.3 s (float32) to 7.6 s (bf16).
Flash / memory-efficient attention have no such per-shape cost, so cuDNN's kernel is left out there.

On the CPU, PyTorch's SDPA kernel (flash, blocked for long queries) is slow for decoding's single query:
for Janus-Pro-1B's 16 heads x 128 dims in bf16, 32 rows over 1024 cached keys took 66 ms a layer
against 26 ms for two batched matmuls and a float32 softmax (torch 2.13, 2-core EPYC). While the sampler
decodes, a CPU model's attention therefore runs `single_query_attention` for one-token queries (the
arithmetic of transformers' own "eager" attention) when the cache is one contiguous buffer, as the compiled
path's workspace is; everything else stays with SDPA.
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

_WITHOUT_CUDNN = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
DECODING_ATTENTION = "gotr1_decoding"


def single_query_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention as two batched matmuls with a float32 softmax; `attention_mask` boolean (True = attend),
    additive, or None."""
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        mask = attention_mask[:, :, :, : key.shape[-2]]
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


def _decoding_attention(module, query, key, *args, **kwargs):
    # Only over a contiguous cache (the compiled path's whole workspace): CPU bf16 `bmm` copies a cache view
    # shorter than its buffer at every call (32 rows x 700 keys: 87 ms against SDPA's 41 ms on the view), and
    # the ever larger copies fragment the heap.
    if query.shape[2] == 1 and query.device.type == "cpu" and key.is_contiguous():
        return single_query_attention(module, query, key, *args, **kwargs)
    return sdpa_attention_forward(module, query, key, *args, **kwargs)


AttentionInterface.register(DECODING_ATTENTION, _decoding_attention)
AttentionMaskInterface.register(DECODING_ATTENTION, sdpa_mask)


@contextlib.contextmanager
def decoding_attention(model, device: torch.device | str):
    """Context for sampling with `model` (a language model) on `device`: on CUDA, every SDPA backend but
    cuDNN's; on the CPU, an SDPA model decodes single queries over a contiguous cache with `single_query_attention`."""
    config = model.config
    swap = torch.device(device).type == "cpu" and config._attn_implementation == "sdpa"
    if swap:
        config._attn_implementation = DECODING_ATTENTION
    try:
        with attention_backends(device):
            yield
    finally:
        if swap:
            config._attn_implementation = "sdpa"


def attention_backends(device: torch.device | str):
    """Context for a forward on `device`: on CUDA, every SDPA backend but cuDNN's; elsewhere a no-op."""
    if torch.device(device).type != "cuda":
        return contextlib.nullcontext()
    return sdpa_kernel(_WITHOUT_CUDNN)
