"""Which attention kernels the sampler and the teacher-forced forward use.

On CUDA under bf16, PyTorch (2.11 measured) prefers cuDNN's attention, which builds an execution plan
for every new sequence shape. KV-cached decoding has a new key length at every step and GRPO batches
have a new padded width at every micro-batch, so each call paid ~11 ms of CPU for planning (backward:
~100 ms) on an H100 — a GRPO step of the shapes model went from 1.3 s (float32) to 7.6 s (bf16).
Flash / memory-efficient attention have no such per-shape cost, so cuDNN's kernel is left out there.

The compiled decode path keeps its KV cache in segments, some shared by groups of rows (a prompt's
prefill read by its G chains, the unconditional prefix read by every CFG row); while the sampler
decodes, an SDPA model's attention is therefore `gotr1_decoding`: `segmented_attention` when a call
passes segments, transformers' SDPA otherwise. (A single query over one contiguous cache as two
matmuls also beat the CPU's SDPA kernel, 26 against 66 ms for Janus-Pro-1B's 32 rows x 1024 keys in
bf16; the segmented form keeps that arithmetic.)
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

_WITHOUT_CUDNN = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
DECODING_ATTENTION = "gotr1_decoding"


def segmented_attention(module, query: torch.Tensor, segments, scaling: float) -> torch.Tensor:
    """One query per row over keys held in segments (see `static_decode.Segment`): a segment read by
    groups of rows holds each group's keys once, and its scores for all the group's queries come from
    one matmul, so a prefix shared by G rows is read once, not G times.

    The softmax runs over all of a row's segments together (float32), as if they were one cache; the
    outputs of the segments are summed. Returns [rows, 1, heads, head_dim], as attention functions do.
    """
    rows, heads, _, dim = query.shape
    layer = module.layer_idx
    kv_heads = segments[0].keys[layer].shape[1]
    per_kv = heads // kv_heads  # query heads per key/value head (grouped-query attention)
    query = query.reshape(rows, kv_heads, per_kv, dim)
    # Each segment's readers: `groups` groups of `size` consecutive rows from its first row.
    shapes = [
        (*seg.mask.shape[:2], slice(seg.first_row, seg.first_row + seg.mask.shape[0] * seg.mask.shape[1]))
        for seg in segments
    ]
    scores, row_max = [], query.new_full((rows, kv_heads, per_kv), float("-inf"), dtype=torch.float32)
    for seg, (groups, size, readers) in zip(segments, shapes):
        # [groups, kv_heads, size * per_kv, dim] @ [groups, kv_heads, dim, length]
        q = query[readers].view(groups, size, kv_heads, per_kv, dim).transpose(1, 2)
        s = torch.matmul(q.reshape(groups, kv_heads, size * per_kv, dim), seg.keys[layer].transpose(2, 3))
        s = (s.float() * scaling).view(groups, kv_heads, size, per_kv, -1).transpose(1, 2)
        s = s.masked_fill(~seg.mask[:, :, None, None, :], float("-inf")).reshape(groups * size, kv_heads, per_kv, -1)
        row_max[readers] = torch.maximum(row_max[readers], s.amax(-1))
        scores.append(s)
    total = torch.zeros_like(row_max)
    for (_, _, readers), s in zip(shapes, scores):
        s.sub_(row_max[readers, ..., None]).exp_()
        total[readers] += s.sum(-1)
    out = torch.zeros((rows, kv_heads, per_kv, dim), dtype=torch.float32, device=query.device)
    for seg, (groups, size, readers), p in zip(segments, shapes, scores):
        p = (p / total[readers, ..., None]).to(query.dtype)
        p = p.view(groups, size, kv_heads, per_kv, -1).transpose(1, 2).reshape(groups, kv_heads, size * per_kv, -1)
        o = torch.matmul(p, seg.values[layer]).view(groups, kv_heads, size, per_kv, dim).transpose(1, 2)
        out[readers] += o.reshape(groups * size, kv_heads, per_kv, dim).float()
    return out.to(query.dtype).view(rows, 1, heads, dim)


def _decoding_attention(module, query, key, value, attention_mask, *args, segments=None, **kwargs):
    if segments is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, *args, **kwargs)
    scaling = kwargs.get("scaling")
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    return segmented_attention(module, query, segments, scaling), None


AttentionInterface.register(DECODING_ATTENTION, _decoding_attention)
AttentionMaskInterface.register(DECODING_ATTENTION, sdpa_mask)


@contextlib.contextmanager
def decoding_attention(model, device: torch.device | str):
    """Context for sampling with `model` (a language model) on `device`: on CUDA, every SDPA backend but
    cuDNN's; an SDPA model's attention is `gotr1_decoding` (segments when a step passes them, else SDPA)."""
    config = model.config
    swap = config._attn_implementation == "sdpa"
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
