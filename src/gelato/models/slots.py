"""Per-sequence slots in one preallocated KV cache: many sequences, one model, no history copies.

The edge verifies many devices' rounds over one shared target. Each sequence owns a *slot*, one row of a
pool whose every layer keeps

    keys, values: [slots, kv_heads, capacity, head_dim]

A sequence's cached positions are ``[0, cache_len)`` of its row. A forward for a batch of sequences

- writes only the new tokens' keys/values, at each row's own positions (``index_put``: cost ~ new tokens);
- attends over the rows in place: when the batch's slots are one contiguous run, the attention reads a
  *view* ``keys[lo:hi, :, :L]``; otherwise (a sparse subset of the pool) it gathers the batch's rows;
- gives each row its own positions (``position_ids``) and a 4-D mask ``[B, 1, N, L]`` that lets query ``j``
  of row ``b`` see exactly positions ``0 .. cache_len_b + j``.

So nothing is copied into a padded batch and back, and rolling back rejected tokens only moves a
length. Storage grows by doubling (slots when more sequences are open, capacity when one gets longer),
an amortised cost that is paid once per doubling, not per round. Only full-attention decoders whose
attention is ``sdpa`` or ``eager`` qualify (:func:`supports_slots`); others keep
:class:`~gelato.models.cached.CachedCausalLM`.

:class:`SlotSequence` has :class:`~gelato.models.cached.CachedCausalLM`'s interface (``feed``,
``truncate``, ``reset``, ``cached_ids``, counters), so the edge treats both alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from transformers.cache_utils import Cache

from gelato.models.cached import CachedTokens, cache_kwargs

_ATTENTION = ("sdpa", "eager")


def supports_slots(model: torch.nn.Module) -> bool:
    """True for decoders whose every layer is full attention over a plain K/V cache (Llama, Qwen2, Mistral
    without a sliding window...) and whose attention takes a custom 4-D mask (sdpa, eager)."""
    config = model.config
    if getattr(config, "_attn_implementation", "eager") not in _ATTENTION:
        return False
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and any(t != "full_attention" for t in layer_types):
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    return all(hasattr(config, name) for name in ("num_hidden_layers", "num_attention_heads", "hidden_size"))


class _BatchView(Cache):
    """The cache one batched forward sees: writes go into the pool's rows, reads come back in place.

    ``rows``: [B] slot of each batch row; ``write_pos``: [B, N] position of each new token;
    ``contiguous``: rows are ``lo .. lo+B-1`` (read a view) or not (gather); ``kv_len``: L.
    """

    def __init__(self, pool: SlotKVPool, rows: torch.Tensor, write_pos: torch.Tensor, kv_len: int) -> None:
        super().__init__(layers=[])
        self.pool, self.rows, self.write_pos, self.kv_len = pool, rows, write_pos, kv_len
        self.lo = int(rows[0])
        self.contiguous = bool(torch.equal(rows, torch.arange(self.lo, self.lo + len(rows))))

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        """key_states, value_states: [B, kv_heads, N, head_dim] -> keys, values: [B, kv_heads, L, head_dim]."""
        keys, values = self.pool.keys[layer_idx], self.pool.values[layer_idx]
        rows = self.rows[:, None]
        keys[rows, :, self.write_pos] = key_states.transpose(1, 2).to(keys.dtype)
        values[rows, :, self.write_pos] = value_states.transpose(1, 2).to(values.dtype)
        if self.contiguous:
            hi = self.lo + len(self.rows)
            return keys[self.lo:hi, :, : self.kv_len], values[self.lo:hi, :, : self.kv_len]
        return keys[self.rows, :, : self.kv_len], values[self.rows, :, : self.kv_len]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.kv_len

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return self.kv_len, 0


class SlotSequence(CachedTokens):
    """One sequence's view of a :class:`SlotKVPool` (the interface of CachedCausalLM)."""

    def __init__(self, pool: SlotKVPool, store=None) -> None:
        self.pool = pool
        self.store = store  # a SlotKVStore that places the sequence in its blocks, or None (one pool)
        self.model = pool.model
        self.config = pool.model.config
        self.device = pool.device
        self.vocab_size = pool.vocab_size
        self.slot: int | None = None
        self.tokens_processed = 0
        self.forward_calls = 0
        self._cached_ids: list[int] = []

    def truncate(self, length: int) -> None:
        """Drop cached positions from ``length`` on: only the length moves."""
        del self._cached_ids[length:]

    def reset(self) -> None:
        """Forget the sequence and give its slot back to the pool (taken again by the next feed)."""
        self._cached_ids = []
        if self.store is not None:
            self.store.release(self)
        elif self.slot is not None:
            self.pool.release(self.slot)
            self.slot = None

    def feed(self, ids: Sequence[int], logits_from: int | None = None) -> torch.Tensor:
        """As :meth:`CachedCausalLM.feed`: the cache holds ``ids`` after; logits [len(ids) - logits_from, V]."""
        owner = self.store if self.store is not None else self.pool
        return owner.feed_batch([self], [ids], [len(ids) - 1 if logits_from is None else logits_from])[0]


class SlotKVPool:
    """Preallocated K/V storage for many sequences of one model (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, vocab_size: int | None = None, *, slots: int = 8,
                 capacity: int = 256, max_capacity: int | None = None) -> None:
        if not supports_slots(model):
            raise ValueError(f"{type(model).__name__} does not fit slot caching (needs full attention, sdpa or eager)")
        if slots < 1 or capacity < 1:
            raise ValueError(f"slots and capacity must be >= 1, got {slots}, {capacity}")
        self.model = model.eval()
        config = model.config
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.vocab_size = int(vocab_size or config.vocab_size)
        self._embedding_rows = int(model.get_input_embeddings().num_embeddings)
        heads = int(config.num_attention_heads)
        self.kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
        self.n_layers = int(config.num_hidden_layers)
        self.max_capacity = int(max_capacity or getattr(config, "max_position_embeddings", None) or 1 << 20)
        self.capacity = min(capacity, self.max_capacity)
        self.keys = [self._zeros(slots, self.capacity) for _ in range(self.n_layers)]
        self.values = [self._zeros(slots, self.capacity) for _ in range(self.n_layers)]
        self._free = list(range(slots))
        self._holders: dict[int, SlotSequence] = {}
        self.forward_calls = 0
        self.grow_events = 0
        self.feed_s = 0.0  # wall time in feed_batch ...
        self.model_s = 0.0  # ... of which in the model's forward: the rest is the batching's own cost

    def _zeros(self, slots: int, capacity: int) -> torch.Tensor:
        return torch.zeros(slots, self.kv_heads, capacity, self.head_dim, dtype=self.dtype, device=self.device)

    @property
    def slots(self) -> int:
        return self.keys[0].shape[0]

    @property
    def free_slots(self) -> int:
        return len(self._free)

    @property
    def bytes_allocated(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def sequence(self) -> SlotSequence:
        return SlotSequence(self)

    # ------------------------------------------------------------------ slots and growth
    def acquire(self, holder: SlotSequence) -> int:
        """The lowest free slot (lowest keeps busy rows contiguous, so batches read views)."""
        if not self._free:
            self._grow(self.slots * 2, self.capacity)
        self._free.sort()
        slot = self._free.pop(0)
        self._holders[slot] = holder
        return slot

    def release(self, slot: int) -> None:
        if self._holders.pop(slot, None) is None:
            raise ValueError(f"slot {slot} is not held")
        self._free.append(slot)

    def _grow(self, slots: int, capacity: int) -> None:
        """Reallocate to ``slots`` x ``capacity``, copying only the positions some held slot still uses. New
        memory is zeroed, never left uninitialised: masked positions still enter attention with zero weight,
        so they must hold finite numbers."""
        old_slots = self.slots
        live = max((h.cache_len for h in self._holders.values()), default=0)
        for store in (self.keys, self.values):
            for i, old in enumerate(store):
                new = self._zeros(slots, capacity)
                if live:
                    new[:old_slots, :, :live] = old[:, :, :live]
                store[i] = new
        self._free.extend(range(old_slots, slots))
        self.capacity = capacity
        self.grow_events += 1

    def _ensure_capacity(self, needed: int) -> None:
        if needed > self.max_capacity:
            raise ValueError(f"{needed} positions exceed the model's context of {self.max_capacity}")
        if needed > self.capacity:
            cap = self.capacity
            while cap < needed:
                cap *= 2
            self._grow(self.slots, min(cap, self.max_capacity))

    # ------------------------------------------------------------------ the batched forward
    @torch.inference_mode()
    def feed_batch(self, seqs: Sequence[SlotSequence], ids_list: Sequence[Sequence[int]],
                   logits_froms: Sequence[int]) -> list[torch.Tensor]:
        """``[s.feed(ids, lf) for ...]`` as ONE forward; row ``i`` of the result is [len(ids_i) - lf_i, V]."""
        if not seqs:
            return []
        t_start = time.perf_counter()
        if any(s.pool is not self for s in seqs):
            raise ValueError("batched sequences must share one pool")
        if len({id(s) for s in seqs}) != len(seqs):
            raise ValueError("a sequence can appear only once in a batch")
        for ids, lf in zip(ids_list, logits_froms):
            if len(ids) == 0:
                raise ValueError("cannot run a forward pass on an empty token sequence")
            if not 0 <= lf < len(ids):
                raise ValueError(f"logits_from={lf} out of range for {len(ids)} tokens")
        keeps = [min(s._reusable_prefix(ids), lf) for s, ids, lf in zip(seqs, ids_list, logits_froms)]
        news = [list(ids[k:]) for ids, k in zip(ids_list, keeps)]
        for new in news:  # the cached prefix was checked when it was fed: only new tokens cost a check
            bad = [t for t in new if not 0 <= t < self._embedding_rows]
            if bad:
                raise ValueError(f"token ids {bad[:5]} are outside the model's vocabulary of {self._embedding_rows}")
        n_max = max(len(n) for n in news)
        self._ensure_capacity(max(keeps) + n_max)
        for s, keep in zip(seqs, keeps):
            s.truncate(keep)
            if s.slot is None:
                s.slot = self.acquire(s)

        order = sorted(range(len(seqs)), key=lambda i: seqs[i].slot)  # slot order: contiguous runs read views
        batch = len(seqs)
        input_ids = torch.zeros(batch, n_max, dtype=torch.long)
        lengths = torch.tensor([keeps[i] for i in order], dtype=torch.long)
        for row, i in enumerate(order):
            input_ids[row, : len(news[i])] = torch.tensor(news[i], dtype=torch.long)
        positions = lengths[:, None] + torch.arange(n_max)[None, :]  # [B, N]
        kv_len = int(positions.max()) + 1
        mask = torch.arange(kv_len)[None, None, None, :] <= positions[:, None, :, None]  # [B, 1, N, L]
        if self.model.config._attn_implementation == "eager":
            mask = torch.zeros(mask.shape, dtype=self.dtype).masked_fill(~mask, torch.finfo(self.dtype).min)
        rows = torch.tensor([seqs[i].slot for i in order], dtype=torch.long)
        view = _BatchView(self, rows.to(self.device), positions.to(self.device), kv_len)
        t_model = time.perf_counter()
        out = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                         position_ids=positions.to(self.device), **cache_kwargs(self.model, view))
        self.model_s += time.perf_counter() - t_model
        self.forward_calls += 1

        results: list[torch.Tensor | None] = [None] * batch
        for row, i in enumerate(order):
            s, n = seqs[i], len(news[i])
            s._cached_ids.extend(news[i])
            s.tokens_processed += n
            s.forward_calls += 1
            results[i] = out.logits[row, logits_froms[i] - keeps[i]: n, : self.vocab_size].float().cpu()
        self.feed_s += time.perf_counter() - t_start
        return results
