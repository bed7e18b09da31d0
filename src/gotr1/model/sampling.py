"""Token selection: temperature, top-k / top-p, greedy, and batch-independent random draws.

Sampling inverts each row's cumulative distribution at a uniform drawn from a counter-based hash
keyed by (row seed, step). A row's draws therefore depend only on its own seed, never on which rows
share its batch or on how many draws happened before: the same prompt and seed give the same chain
and image whether sampled alone, in a group, or after a resume. One hash per row and step keeps the
cost far below per-vocabulary noise.
"""

from __future__ import annotations

import torch

_U64 = 1 << 64


def _signed(c: int) -> int:
    return c - _U64 if c >= 1 << 63 else c


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 tensors (wrapping arithmetic)."""
    x = x + _GOLDEN
    x = (x ^ _shift_right(x, 30)) * _MIX1
    x = (x ^ _shift_right(x, 27)) * _MIX2
    return x ^ _shift_right(x, 31)


def row_keys(seeds: torch.Tensor, *streams: int | torch.Tensor) -> torch.Tensor:
    """Derive independent int64 keys from per-row seeds and any number of stream ids."""
    key = splitmix64(seeds.to(torch.int64))
    for s in streams:
        s = torch.as_tensor(s, dtype=torch.int64, device=key.device)
        key = splitmix64(key ^ splitmix64(s))
    return key


def uniforms_at(keys: torch.Tensor, step: int | torch.Tensor) -> torch.Tensor:
    """The `step`-th draw of each row's SplitMix64 stream: one float64 uniform in [0, 1) per row.

    `step` may be an int64 tensor (the compiled decode path: no new constant per step); int64
    multiplication wraps modulo 2**64, so both give the same offset."""
    if isinstance(step, torch.Tensor):
        offset = step.to(torch.int64) * _GOLDEN
    else:
        offset = _signed((step * _GOLDEN) % _U64)
    return _shift_right(splitmix64(keys + offset), 11).to(torch.float64) * (1.0 / (1 << 53))


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Mask to -inf everything outside the top-k tokens and outside the top-p nucleus."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens ranked above it already reach top_p; the best token always stays.
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def select_tokens(
    logits: torch.Tensor,
    *,
    temperature: float,
    keys: torch.Tensor | None,
    step: int | torch.Tensor = 0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row; return (tokens, log-probs under the distribution they were drawn from).

    keys: each row's stream key (see `row_keys`); step: which draw of the stream to use.
    temperature 0 means greedy; its log-probs are those of the untempered, filtered distribution.
    """
    scaled = logits.float()
    if temperature > 0:
        scaled = scaled / temperature
    scaled = filter_logits(scaled, top_k, top_p)
    logprobs = torch.log_softmax(scaled.double(), dim=-1)
    if temperature > 0:
        if keys is None:
            raise ValueError("sampling with temperature > 0 needs per-row keys")
        cdf = logprobs.exp().cumsum(-1)
        u = uniforms_at(keys, step)[:, None] * cdf[:, -1:]
        # First index whose CDF exceeds u: zero-probability (filtered) tokens have empty intervals.
        tokens = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=scaled.shape[-1] - 1)
    else:
        tokens = torch.argmax(scaled, dim=-1)
    return tokens, logprobs.gather(-1, tokens[:, None]).squeeze(-1).float()
