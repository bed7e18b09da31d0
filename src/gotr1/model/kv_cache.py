"""A KV cache that writes into preallocated buffers.

transformers' DynamicCache concatenates on every step, copying the whole cache each time: quadratic
memory traffic over the 600 + 576 steps of a GoT-R1 sample. The sampler knows the final length up
front, so each layer here allocates it once and hands attention a view of the filled part. Batch
operations (share a prompt prefix across G samples, join conditional and unconditional rows) act on
the buffers directly.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """One layer's keys/values in a [batch, heads, capacity, head_dim] buffer, filled left to right."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        b, h, _, d = key_states.shape
        self._keys = key_states.new_zeros((b, h, self.capacity, d))
        self._values = value_states.new_zeros((b, h, self.capacity, value_states.shape[-1]))
        self.is_initialized = True

    def adopt(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        """Take over filled buffers (used when joining batches)."""
        self.dtype, self.device = keys.dtype, keys.device
        self._keys, self._values, self.length = keys, values, length
        self.capacity = keys.shape[2]
        self.is_initialized = True
        self._refresh()

    def _refresh(self) -> None:
        self.keys = self._keys[:, :, : self.length]
        self.values = self._values[:, :, : self.length]

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:  # the caller under-estimated; grow rather than fail
            self.capacity = max(end, self.capacity + self.capacity // 2)
            self._keys = with_capacity(self._keys, self.capacity)
            self._values = with_capacity(self._values, self.capacity)
        self._keys[:, :, self.length : end] = key_states
        self._values[:, :, self.length : end] = value_states
        self.length = end
        self._refresh()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._keys = self._keys.repeat_interleave(repeats, dim=0)
            self._values = self._values.repeat_interleave(repeats, dim=0)
            self._refresh()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._keys, self._values = self._keys[indices], self._values[indices]
            self._refresh()


class PreallocatedCache(Cache):
    """A Cache of `PreallocatedLayer`s, one per decoder layer."""

    def __init__(self, num_layers: int, capacity: int):
        super().__init__(layers=[PreallocatedLayer(capacity) for _ in range(num_layers)])

    @classmethod
    def adopting(cls, keys: list[torch.Tensor], values: list[torch.Tensor], length: int) -> PreallocatedCache:
        """A cache over existing per-layer buffers whose first `length` columns are filled (no copy)."""
        cache = cls(len(keys), keys[0].shape[2])
        for layer, k, v in zip(cache.layers, keys, values):
            layer.adopt(k, v, length)
        return cache

    @classmethod
    def join_batches(cls, first: PreallocatedCache, second: PreallocatedCache) -> PreallocatedCache:
        """Rows of `first` then rows of `second`; both must hold the same number of positions."""
        capacity = max(first.layers[0].capacity, second.layers[0].capacity)
        joined = cls(len(first.layers), capacity)
        for out, a, b in zip(joined.layers, first.layers, second.layers):
            if a.length != b.length:
                raise ValueError(f"cannot join caches of {a.length} and {b.length} positions")
            out.adopt(
                torch.cat([with_capacity(a._keys, capacity), with_capacity(b._keys, capacity)]),
                torch.cat([with_capacity(a._values, capacity), with_capacity(b._values, capacity)]),
                a.length,
            )
        return joined


class SharedPrefixLayer(DynamicLayer):
    """One layer of a cache whose rows all read one prefix ([1, heads, n, head_dim], kept once) and each add one
    step. Attention gets the prefix broadcast to the rows, one layer at a time (a transient [rows, heads, n + 1,
    head_dim]), where a per-row copy would hold rows x n columns in every layer at once. A row that reads fewer
    columns masks the rest; the step's own keys and values are kept (`step_keys`, `step_values`)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.prefix_keys, self.prefix_values = keys, values
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True
        self.step_keys: torch.Tensor | None = None
        self.step_values: torch.Tensor | None = None

    def update(self, key_states, value_states, *args, **kwargs):
        self.step_keys, self.step_values = key_states, value_states
        rows = key_states.shape[0]
        keys = torch.cat([self.prefix_keys.expand(rows, -1, -1, -1), key_states], 2)
        values = torch.cat([self.prefix_values.expand(rows, -1, -1, -1), value_states], 2)
        return keys, values

    def get_seq_length(self) -> int:
        return self.prefix_keys.shape[2]


def shared_prefix_cache(prefix: PreallocatedCache, length: int) -> Cache:
    """A cache of `SharedPrefixLayer`s over the first `length` columns of a one-row `prefix` (no copy)."""
    return Cache(layers=[SharedPrefixLayer(k._keys[:, :, :length], k._values[:, :, :length]) for k in prefix.layers])


def with_capacity(buffer: torch.Tensor, capacity: int) -> torch.Tensor:
    """[B, H, L, D] -> [B, H, capacity, D] with zeros after the L filled columns (itself if already that long)."""
    missing = capacity - buffer.shape[2]
    if missing <= 0:
        return buffer
    return torch.cat([buffer, buffer.new_zeros((*buffer.shape[:2], missing, buffer.shape[3]))], 2)
