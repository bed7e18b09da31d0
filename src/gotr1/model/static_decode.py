"""The compiled decode path: each decode step as one static-shape function for `torch.compile`.

The eager sampler hands transformers a cache view and a mask one column longer at every step, and
reads back which rows are still writing; every step therefore has new shapes and a host sync, which
rules out compilation and CUDA graphs. Here the shapes never change within a phase:

- the KV cache is a `Workspace` of fixed buffers. Keys and values that several rows share (a prompt's
  prefill, read by its G chains; the unconditional prefix, read by every CFG row) are held once per
  group of rows and read once per step for the whole group (`attention.segmented_attention`); each
  row's own tokens sit in per-row segments, and the step segment is written at one column that is a
  tensor (`index_copy_`). Unwritten columns are masked;
- every row steps every time (closed chains write a masked pad, as in the eager path);
- token selection (`sampling.select_tokens`, with the step as a tensor) runs inside the function,
  so a step is launched without waiting for the previous one; the text phase asks whether any chain
  is still open only every 16 steps;
- the image step calls the generation head only, never the 100k-row `lm_head`.

The transformer layers are transformers' own modules, called with the workspace as their cache and
the segments as an attention argument, so the projections and MLPs are the eager path's. Segment
lengths are rounded up to `CAPACITY_BUCKET`; the workspace is kept between calls at fixed addresses,
which CUDA graphs (`reduce-overhead`) need. Mode `frozen` compiles with inductor's freezing: weights
become constants (on the CPU, prepacked for oneDNN), which only inference may do.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .attention import DECODING_ATTENTION, decoding_attention
from .compat import cache_kwargs
from .compile_cache import CompileCache, call_signature
from .sampling import select_tokens

log = logging.getLogger(__name__)

# "none": transformers' own forward over a growing cache (the eager path, not this module);
# "static": this module's fixed-shape steps run without compiling (debugging, parity checks);
# "default" / "reduce-overhead": those steps under torch.compile (the latter with CUDA graphs on a GPU);
# "frozen": torch.compile with the weights as constants (inference only: refused while a weight trains).
COMPILE_MODES = ("none", "static", "default", "reduce-overhead", "frozen")
CAPACITY_BUCKET = 16
# The lengths a segment whose length follows the text (a prompt, chains, the unconditional prefix) is rounded up
# to: a compiled step is specialised to its segments' lengths, so every length in a bucket shares one
# compilation. Past the last, multiples of LENGTH_STEP. Steps segments are fixed by the settings and keep
# CAPACITY_BUCKET.
LENGTH_BUCKETS = (16, 32, 64, 128, 256, 384, 512, 640, 768, 896, 1024)
LENGTH_STEP = 256


@dataclass(frozen=True)
class TokenRule:
    """How a phase picks tokens (constants of the compiled function). cap: the text phase's last free step."""

    temperature: float
    top_k: int | None = None
    top_p: float | None = None
    cap: int = 0


def bucketed(capacity: int) -> int:
    """Round a step count up to the bucket size (fewer distinct shapes, fewer compilations)."""
    return max(1, -(-capacity // CAPACITY_BUCKET)) * CAPACITY_BUCKET


def length_bucket(length: int) -> int:
    """Round a text-dependent segment length up to `LENGTH_BUCKETS` (a prompt of 20 tokens and one of 30 share
    a compilation; at most a third of a segment is padding past 128)."""
    for bucket in LENGTH_BUCKETS:
        if length <= bucket:
            return bucket
    return -(-length // LENGTH_STEP) * LENGTH_STEP


@dataclass(frozen=True)
class SegmentShape:
    """Rows `first_row` .. `first_row + groups * group_size` read the segment, `group_size` consecutive
    rows per group; each group holds `length` columns of keys and values."""

    groups: int
    group_size: int
    first_row: int
    length: int


class Segment:
    """Keys and values ([groups, kv_heads, length, head_dim] per layer) with a [groups, group_size, length]
    boolean mask of the columns each reading row sees."""

    def __init__(self, shape: SegmentShape, kv_heads: int, head_dim: int, layers: int, dtype, device):
        size = (shape.groups, kv_heads, shape.length, head_dim)
        self.first_row, self.group_size = shape.first_row, shape.group_size
        self.keys = [torch.zeros(size, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(size, dtype=dtype, device=device) for _ in range(layers)]
        self.mask = torch.zeros((shape.groups, shape.group_size, shape.length), dtype=torch.bool, device=device)

    def tensors(self) -> list[torch.Tensor]:
        return [*self.keys, *self.values, self.mask]

    def load(self, layers, mask: torch.Tensor, repeats: int = 1) -> None:
        """Copy a prefilled `PreallocatedCache`'s layers into the groups (each source row `repeats` times)
        and set their [groups, n] mask, the same for every reader of a group. Columns past `n` are masked."""
        mask = mask.repeat_interleave(repeats, 0)
        n = mask.shape[-1]
        self.mask.zero_()
        self.mask[:, :, :n] = mask[:, None].bool()
        for layer, keys, values in zip(layers, self.keys, self.values):
            length = min(layer.length, n)
            keys[:, :, :length] = layer._keys[:, :, :length].repeat_interleave(repeats, 0)
            values[:, :, :length] = layer._values[:, :, :length].repeat_interleave(repeats, 0)


class _ColumnCache:
    """The cache each attention layer sees during a static step: the step segment, written at `column`."""

    def __init__(self, segment: Segment):
        self.keys, self.values = segment.keys, segment.values
        self.column: torch.Tensor | None = None

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        # Cast as the eager cache's slice assignment does (under autocast a step's dtype can differ from the prefill's).
        keys.index_copy_(2, self.column, key_states.to(keys.dtype))
        values.index_copy_(2, self.column, value_states.to(values.dtype))
        return keys, values


class Workspace:
    """A phase's fixed-shape state: shared and per-row segments, then the step segment (one column per
    row and step) and its column indices."""

    def __init__(self, rows: int, shared: tuple[SegmentShape, ...], steps: int, dims: tuple, dtype, device):
        kv_heads, head_dim, layers = dims
        shapes = (*shared, SegmentShape(rows, 1, 0, steps))
        self.segments = [Segment(s, kv_heads, head_dim, layers, dtype, device) for s in shapes]
        self.step = self.segments[-1]
        self.columns = torch.arange(steps, device=device)
        for segment in self.segments:
            for t in segment.tensors():
                torch._dynamo.mark_static_address(t)
        self.cache = _ColumnCache(self.step)
        self.signature = (rows, shared, steps, dims, dtype, torch.device(device))

    def column(self, index: int) -> torch.Tensor:
        """Step column `index` as a one-element tensor view (no host-to-device copy, same shape every step)."""
        return self.columns[index : index + 1]


def _with_freezing(compiled: Callable) -> Callable:
    """`compiled`, compiling (lazily, at a call) with inductor's freezing on. In torch 2.13 `options`
    alone left the weights graph inputs; it still matters: without it, dynamo reused a `default`
    compilation of the same step function (same backend, guards passing) instead of freezing one."""

    def run(*args):
        with torch._inductor.config.patch(freezing=True):
            return compiled(*args)

    return run


class StaticDecoder:
    """Decode steps of a Janus model's language model over a `Workspace`, optionally compiled.

    mode: "static" runs the static-shape functions without compiling; "default" / "reduce-overhead" are
    `torch.compile` modes; "frozen" is "default" with inductor's freezing (weights as constants).
    cache: where compiling keeps its results between processes (`compile_cache`); None: torch's defaults.
    """

    def __init__(self, model, mode: str = "default", cache: CompileCache | None = None):
        if mode not in COMPILE_MODES[1:]:
            raise ValueError(f"a static decoder's mode is one of {', '.join(COMPILE_MODES[1:])}, got {mode!r}")
        self.model = model
        self.lm = model.model.language_model
        if self.lm.config._attn_implementation not in ("sdpa", DECODING_ATTENTION):
            raise ValueError(
                f"the compiled decode path needs attn_implementation 'sdpa', the model uses "
                f"{self.lm.config._attn_implementation!r}"
            )
        self.mode = mode
        config = self.lm.config
        self.layers = config.num_hidden_layers
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.dims = (config.num_key_value_heads, head_dim, self.layers)
        # The keyword the layers take their cache by, looked up once outside compiled code.
        (self._cache_keyword,) = cache_kwargs(self.lm.layers[0], None)
        self._workspaces: dict[str, Workspace] = {}
        self._compiled: dict[str, Callable] = {}
        self._seen: set[str] = set()  # the call signatures compiled (or loaded) in this process
        self.cache = cache
        self._weights_seen = None

    def workspace(self, phase: str, rows: int, shared: tuple[SegmentShape, ...], steps: int, dtype, device):
        """The phase's workspace, reused (same buffers, same addresses) while its shape stays the same."""
        self._check_frozen_weights()
        signature = (rows, tuple(shared), steps, self.dims, dtype, torch.device(device))
        current = self._workspaces.get(phase)
        if current is None or current.signature != signature:
            self._workspaces.pop(phase, None)  # free the old buffers before allocating new ones
            current = Workspace(rows, tuple(shared), steps, self.dims, dtype, device)
            self._workspaces[phase] = current
        return current

    def release(self) -> None:
        """Free the workspaces (e.g. before a training step needs the memory)."""
        self._workspaces.clear()

    def _weights(self):
        """Which weights a frozen compilation holds: each parameter's identity and in-place version."""
        try:
            return tuple((id(p), p._version) for p in self.model.parameters())
        except RuntimeError:  # inference tensors keep no version counter
            return tuple(id(p) for p in self.model.parameters())

    def _check_frozen_weights(self) -> None:
        """Under `frozen`, drop the compilations once a weight was replaced or changed in place (an
        optimizer step, a loaded adapter): their constants are stale."""
        if self.mode != "frozen":
            return
        seen = self._weights()
        if self._weights_seen is not None and seen != self._weights_seen and self._compiled:
            torch.compiler.reset()
            self._compiled.clear()
            self._seen.clear()
        self._weights_seen = seen

    def compiled(self, name: str, fn: Callable) -> Callable:
        """`fn` compiled once per name in this decoder's mode (or `fn` itself for mode "static")."""
        if self.mode == "static":
            return fn
        if name not in self._compiled:
            if self.mode != "frozen":
                self._compiled[name] = torch.compile(fn, mode=self.mode, fullgraph=True, dynamic=False)
            else:
                compiled = torch.compile(fn, options={"freezing": True}, fullgraph=True, dynamic=False)
                self._compiled[name] = _with_freezing(compiled)
        return self._compiled[name]

    def call(self, name: str, fn: Callable, *args):
        """Run one step of `fn` (compiled under `name`). Under CUDA graphs (`reduce-overhead`) a step's
        outputs live in memory the next replay overwrites, so they are copied out."""
        compiled = self.compiled(name, fn)
        if self.lm.config._attn_implementation != DECODING_ATTENTION:  # the segments need it (the sampler sets it)
            with decoding_attention(self.lm, args[0].columns.device):
                return self.call(name, fn, *args)
        if self.mode != "static":
            signature = call_signature(name, args)
            if signature not in self._seen:
                return self._first_call(name, signature, compiled, args)
        return self._run(compiled, args)

    def _run(self, compiled: Callable, args: tuple):
        if self.mode != "reduce-overhead":
            return compiled(*args)
        torch.compiler.cudagraph_mark_step_begin()
        return tuple(t.clone() for t in compiled(*args))

    def _first_call(self, name: str, signature: str, compiled: Callable, args: tuple):
        """A step's first call at a shape compiles it: into the compile cache's folder, timed and logged with
        what torch's caches gave (hits: compiled code reused, e.g. from an earlier process)."""
        from torch._dynamo.utils import counters

        before = dict(counters["inductor"])
        start = time.perf_counter()
        with self.cache.compiling() if self.cache is not None else contextlib.nullcontext():
            out = self._run(compiled, args)
        seconds = time.perf_counter() - start
        self._seen.add(signature)
        hits = counters["inductor"]["fxgraph_cache_hit"] - before.get("fxgraph_cache_hit", 0)
        misses = counters["inductor"]["fxgraph_cache_miss"] - before.get("fxgraph_cache_miss", 0)
        if self.cache is not None:
            self.cache.record(signature, seconds)
        log.info(
            "%s step (%s): first call %.1f s, %d compiled graph(s) from the cache, %d built%s",
            name, self.mode, seconds, hits, misses, f" ({self.cache.folder})" if self.cache is not None else "",
        )  # fmt: skip
        return out

    def forward(self, space: Workspace, embeds: torch.Tensor, positions: torch.Tensor, column: torch.Tensor):
        """One token per row through the language model: writes its keys/values at `column` of the step
        segment, returns the final hidden state [rows, D]. The caller has already set the mask there."""
        space.cache.column = column
        position_ids = positions[:, None]
        hidden = embeds
        position_embeddings = self.lm.rotary_emb(hidden, position_ids=position_ids)
        for layer in self.lm.layers[: self.layers]:
            hidden = layer(
                hidden,
                attention_mask=None,
                position_ids=position_ids,
                position_embeddings=position_embeddings,
                segments=space.segments,
                **{self._cache_keyword: space.cache},
            )
        return self.lm.norm(hidden)[:, -1]

    def text_step(self, space, hidden, pending, next_pos, boi_hidden, keys, step, column, rule: TokenRule, ids):
        """Pick each row's next chain token from `hidden` (`lm_head`), then feed it; rows no longer pending
        feed a masked pad. At `step == rule.cap` every open chain is closed with <begin_of_image>.
        Returns (tokens, log-probs, hidden, pending, next positions, hidden at <begin_of_image>)."""
        logits = self.model.lm_head(hidden)
        picked, logprobs = select_tokens(
            logits, temperature=rule.temperature, keys=keys, step=step, top_k=rule.top_k, top_p=rule.top_p
        )
        temperature = rule.temperature if rule.temperature > 0 else 1.0
        closing_logprobs = torch.log_softmax(logits.float() / temperature, -1)[:, ids.begin_of_image]
        below_cap = step < rule.cap
        picked = torch.where(below_cap, picked, ids.begin_of_image)
        logprobs = torch.where(below_cap, logprobs, closing_logprobs)
        tokens = torch.where(pending, picked, ids.pad)
        logprobs = torch.where(pending, logprobs, 0.0)
        space.step.mask.index_copy_(2, column, pending.view(-1, 1, 1))
        hidden = self.forward(space, self.lm.get_input_embeddings()(tokens[:, None]), next_pos, column)
        closed = pending & (tokens == ids.begin_of_image)
        boi_hidden = torch.where(closed[:, None], hidden, boi_hidden)
        return tokens, logprobs, hidden, pending & ~closed, next_pos + pending.long(), boi_hidden

    def image_step(
        self, space, hidden, positions, keys, step, column, rule: TokenRule, cfg_weight: float, forced=None, free=None
    ):
        """Pick each image's next VQ code from `hidden` (generation head; with CFG the unconditional rows
        are the second half), then feed it to both halves. An edit gives each row's source code here (`forced`)
        and whether to sample it (`free`): a row not free takes the source's code, with log-prob 0.
        Returns (codes, log-probs, hidden)."""
        logits = self.model.model.generation_head(hidden).float()
        if cfg_weight > 1:
            cond, uncond = logits.chunk(2)
            logits = uncond + cfg_weight * (cond - uncond)
        picked, logprobs = select_tokens(
            logits, temperature=rule.temperature, keys=keys, step=step, top_k=rule.top_k, top_p=rule.top_p
        )
        if forced is not None:
            picked = torch.where(free, picked, forced)
            logprobs = torch.where(free, logprobs, torch.zeros_like(logprobs))
        embeds = self.model.prepare_embeddings_for_image_generation(picked[:, None])
        if cfg_weight > 1:
            embeds = torch.cat([embeds, embeds])
        space.step.mask.index_fill_(2, column, True)
        hidden = self.forward(space, embeds, positions + step, column)
        return picked, logprobs, hidden
