"""The compiled decode path: each decode step as one static-shape function for `torch.compile`.

The eager sampler hands transformers a cache view and a mask one column longer at every step, and
reads back which rows are still writing; every step therefore has new shapes and a host sync, which
rules out compilation and CUDA graphs. Here the shapes never change within a phase:

- the KV cache is a fixed [rows, heads, capacity, head_dim] workspace per layer, written at one
  column that is a tensor (`index_copy_`), and attention reads the whole workspace under a boolean
  [rows, 1, 1, capacity] mask whose unwritten columns are False;
- every row steps every time (closed chains write a masked pad, as in the eager path);
- token selection (`sampling.select_tokens`, with the step as a tensor) runs inside the function,
  so a step is launched without waiting for the previous one; the text phase asks whether any chain
  is still open only every 16 steps;
- the image step calls the generation head only, never the 100k-row `lm_head`.

The transformer layers are transformers' own modules, called with the workspace as their cache, so
the arithmetic is the eager path's. Capacities are rounded up to `CAPACITY_BUCKET` so a new prompt
length rarely means a new compilation; the workspace is kept between calls at a fixed address, which
CUDA graphs (`reduce-overhead`) need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .attention import DECODING_ATTENTION
from .compat import cache_kwargs
from .sampling import select_tokens

# "none": transformers' own forward over a growing cache (the eager path, not this module);
# "static": this module's fixed-shape steps run without compiling (debugging, parity checks);
# "default" / "reduce-overhead": those steps under torch.compile (the latter with CUDA graphs on a GPU).
COMPILE_MODES = ("none", "static", "default", "reduce-overhead")
CAPACITY_BUCKET = 256


@dataclass(frozen=True)
class TokenRule:
    """How a phase picks tokens (constants of the compiled function). cap: the text phase's last free step."""

    temperature: float
    top_k: int | None = None
    top_p: float | None = None
    cap: int = 0


def bucketed(capacity: int) -> int:
    """Round a cache capacity up to the bucket size (fewer distinct shapes, fewer compilations)."""
    return -(-capacity // CAPACITY_BUCKET) * CAPACITY_BUCKET


class _ColumnCache:
    """The cache each attention layer sees during a static step: fixed buffers written at `column`."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor]):
        self.keys, self.values = keys, values
        self.column: torch.Tensor | None = None

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        # Cast as the eager cache's slice assignment does (under autocast a step's dtype can differ from the prefill's).
        keys.index_copy_(2, self.column, key_states.to(keys.dtype))
        values.index_copy_(2, self.column, value_states.to(values.dtype))
        return keys, values


class Workspace:
    """A phase's fixed-shape state: per-layer KV buffers, the attention mask and the column indices."""

    def __init__(self, rows: int, capacity: int, heads: int, head_dim: int, layers: int, dtype, device):
        shape = (rows, heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.mask = torch.zeros((rows, 1, 1, capacity), dtype=torch.bool, device=device)
        self.columns = torch.arange(capacity, device=device)
        for t in (*self.keys, *self.values, self.mask):
            torch._dynamo.mark_static_address(t)
        self.cache = _ColumnCache(self.keys, self.values)
        self.signature = (rows, capacity, heads, head_dim, layers, dtype, torch.device(device))

    def load(self, layers, mask: torch.Tensor, row_offset: int = 0, repeats: int = 1) -> None:
        """Copy a prefilled `PreallocatedCache`'s layers and its [rows, width] mask into the workspace's rows
        from `row_offset`, each source row `repeats` times (a prompt's prefill shared by its G chains)."""
        mask = mask.repeat_interleave(repeats, 0)
        rows, width = mask.shape
        end = row_offset + rows
        self.mask[row_offset:end].zero_()
        self.mask[row_offset:end, 0, 0, :width] = mask.bool()
        for layer, keys, values in zip(layers, self.keys, self.values):
            n = layer.length
            keys[row_offset:end, :, :n] = layer._keys[:, :, :n].repeat_interleave(repeats, 0)
            values[row_offset:end, :, :n] = layer._values[:, :, :n].repeat_interleave(repeats, 0)

    def column(self, index: int) -> torch.Tensor:
        """Column `index` as a one-element tensor view (no host-to-device copy, same shape every step)."""
        return self.columns[index : index + 1]


class StaticDecoder:
    """Decode steps of a Janus model's language model over a `Workspace`, optionally compiled.

    mode: "static" runs the static-shape functions without compiling; "default" / "reduce-overhead" are
    `torch.compile` modes.
    """

    def __init__(self, model, mode: str = "default"):
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
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        # The keyword the layers take their cache by, looked up once outside compiled code.
        (self._cache_keyword,) = cache_kwargs(self.lm.layers[0], None)
        self._workspaces: dict[str, Workspace] = {}
        self._compiled: dict[str, Callable] = {}

    def workspace(self, phase: str, rows: int, capacity: int, dtype, device) -> Workspace:
        """The phase's workspace, reused (same buffers, same addresses) while its shape stays the same."""
        signature = (rows, capacity, self.kv_heads, self.head_dim, self.layers, dtype, torch.device(device))
        current = self._workspaces.get(phase)
        if current is None or current.signature != signature:
            self._workspaces.pop(phase, None)  # free the old buffers before allocating new ones
            current = Workspace(rows, capacity, self.kv_heads, self.head_dim, self.layers, dtype, device)
            self._workspaces[phase] = current
        return current

    def release(self) -> None:
        """Free the workspaces (e.g. before a training step needs the memory)."""
        self._workspaces.clear()

    def compiled(self, name: str, fn: Callable) -> Callable:
        """`fn` compiled once per name in this decoder's mode (or `fn` itself for mode "static")."""
        if self.mode == "static":
            return fn
        if name not in self._compiled:
            self._compiled[name] = torch.compile(fn, mode=self.mode, fullgraph=True, dynamic=False)
        return self._compiled[name]

    def call(self, name: str, fn: Callable, *args):
        """Run one step of `fn` (compiled under `name`). Under CUDA graphs (`reduce-overhead`) a step's
        outputs live in memory the next replay overwrites, so they are copied out."""
        compiled = self.compiled(name, fn)
        if self.mode != "reduce-overhead":
            return compiled(*args)
        torch.compiler.cudagraph_mark_step_begin()
        return tuple(t.clone() for t in compiled(*args))

    def forward(self, space: Workspace, embeds: torch.Tensor, positions: torch.Tensor, column: torch.Tensor):
        """One token per row through the language model: writes its keys/values at `column`, returns the
        final hidden state [rows, D]. The caller has already set the mask at `column`."""
        space.cache.column = column
        position_ids = positions[:, None]
        hidden = embeds
        position_embeddings = self.lm.rotary_emb(hidden, position_ids=position_ids)
        for layer in self.lm.layers[: self.layers]:
            hidden = layer(
                hidden,
                attention_mask=space.mask,
                position_ids=position_ids,
                position_embeddings=position_embeddings,
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
        space.mask.index_copy_(3, column, pending.view(-1, 1, 1, 1))
        hidden = self.forward(space, self.lm.get_input_embeddings()(tokens[:, None]), next_pos, column)
        closed = pending & (tokens == ids.begin_of_image)
        boi_hidden = torch.where(closed[:, None], hidden, boi_hidden)
        return tokens, logprobs, hidden, pending & ~closed, next_pos + pending.long(), boi_hidden

    def image_step(self, space, hidden, positions, keys, step, column, rule: TokenRule, cfg_weight: float):
        """Pick each image's next VQ code from `hidden` (generation head; with CFG the unconditional rows
        are the second half), then feed it to both halves. Returns (codes, log-probs, hidden)."""
        logits = self.model.model.generation_head(hidden).float()
        if cfg_weight > 1:
            cond, uncond = logits.chunk(2)
            logits = uncond + cfg_weight * (cond - uncond)
        picked, logprobs = select_tokens(
            logits, temperature=rule.temperature, keys=keys, step=step, top_k=rule.top_k, top_p=rule.top_p
        )
        embeds = self.model.prepare_embeddings_for_image_generation(picked[:, None])
        if cfg_weight > 1:
            embeds = torch.cat([embeds, embeds])
        space.mask.index_fill_(3, column, True)
        hidden = self.forward(space, embeds, positions + step, column)
        return picked, logprobs, hidden
