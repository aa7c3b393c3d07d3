"""KV memory that follows the sessions: fixed-size blocks of slots per capacity class, inside a byte budget.

A single :class:`~gelato.models.slots.SlotKVPool` gives every slot the capacity of the longest sequence
and never shrinks. :class:`SlotKVStore` keeps many small pools instead, each a *block* of a fixed
``slots x capacity`` that never grows:

- capacities come in classes ``min_capacity * sqrt(2)**k`` (rounded up to 64 positions, capped at the
  model's context), so a sequence costs at most ~1.41x its own context, never the longest one's;
- a block of class ``c`` has ``min(block_slots, block_positions // c)`` slots (at least 1): short
  sequences share a block and batch in one forward, a long one gets a block of its own;
- more sequences than free slots -> a new block: nothing is copied, no other sequence is disturbed;
- a sequence that outgrows its class moves to a slot of the next class that fits, copying only its own
  positions (an amortised cost, paid once per class it passes);
- a block with no sequence left is freed once it has stayed empty ``keep_empty_s`` (1 s: a client looping
  opens and cancels reuses it instead of zeroing a new one each time), at the next :meth:`trim` (the edge
  calls it when its model thread is idle) - or at once when its bytes are needed for another class; one
  block of the smallest class is never freed (the idle baseline);
- every allocation is checked against ``budget_bytes``: one that would exceed it raises
  :class:`KVMemoryExhausted` and allocates nothing, so the bytes held never exceed the budget.

A batch of sequences in several blocks runs one forward per block (sequences of one block batch as in a
single pool). Everything runs on the model thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import time
from collections.abc import Sequence

import torch

from gelato.models.slots import SlotKVPool, SlotSequence


class KVMemoryExhausted(RuntimeError):
    """Storing more positions would take the KV cache past its budget (nothing was allocated).
    ``never_fits``: not even with every other sequence gone."""

    def __init__(self, message: str, never_fits: bool = False) -> None:
        super().__init__(message)
        self.never_fits = never_fits


def default_kv_budget(device: torch.device | str = "cpu") -> int:
    """Half the memory free on ``device`` now (for CPU: MemAvailable, else a quarter of physical memory)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0] * 0.5)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    import os
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4


def _trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc keeps them otherwise: RSS would never come down)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def capacity_classes(min_capacity: int, max_capacity: int) -> list[int]:
    """``min_capacity * sqrt(2)**k`` rounded up to a multiple of 64 (or of ``min_capacity``, if smaller), up
    to and including ``max_capacity``."""
    classes, k, step = [], 0, min(64, min_capacity)
    while True:
        c = math.ceil(min_capacity * 2 ** (k / 2) / step) * step
        if c >= max_capacity:
            classes.append(max_capacity)
            return classes
        if not classes or c > classes[-1]:
            classes.append(c)
        k += 1


class SlotKVStore:
    """Sequences' KV caches in blocks of slots (see the module docstring); ``sequence()`` makes one."""

    def __init__(self, model: torch.nn.Module, vocab_size: int | None = None, *, budget_bytes: int | None = None,
                 min_capacity: int = 256, block_slots: int = 8, block_positions: int = 4096,
                 max_capacity: int | None = None, keep_empty_s: float = 1.0) -> None:
        if min_capacity < 1 or block_slots < 1 or block_positions < 1:
            raise ValueError("min_capacity, block_slots and block_positions must be >= 1")
        self.model = model.eval()
        self.config = model.config
        self.vocab_size = int(vocab_size or self.config.vocab_size)
        self.block_slots, self.block_positions = block_slots, block_positions
        mpe = getattr(self.config, "max_position_embeddings", None) or 1 << 20
        self.max_capacity = int(min(max_capacity or mpe, mpe))
        self.classes = capacity_classes(min(min_capacity, self.max_capacity), self.max_capacity)
        self.budget_bytes = budget_bytes
        self.keep_empty_s = keep_empty_s
        self._empty_since: dict[int, float] = {}  # id(block) -> when its last sequence left
        self.blocks: list[SlotKVPool] = []
        self.bytes_used = 0  # bytes_allocated, kept as one int so other threads (metrics) can read it
        self.blocks_made = 0
        self.forward_calls = 0
        self.feed_s = 0.0
        self.model_s = 0.0
        self.migrations = 0
        self.peak_bytes = 0
        base = self._new_block(self.classes[0], self.block_slots)  # the idle baseline, never freed
        self.device, self.dtype = base.device, base.dtype
        self.bytes_per_position = 2 * base.n_layers * base.kv_heads * base.head_dim * base.keys[0].element_size()
        if budget_bytes is not None and base.bytes_allocated > budget_bytes:
            raise KVMemoryExhausted(f"the KV budget of {budget_bytes / 2**20:.1f} MiB is below one block of "
                                    f"{base.bytes_allocated / 2**20:.1f} MiB ({self.block_slots} slots x "
                                    f"{self.classes[0]} positions)")
        self._base = base

    # ------------------------------------------------------------------ accounting
    @property
    def bytes_allocated(self) -> int:
        return self.bytes_used

    @property
    def slots(self) -> int:
        return sum(b.slots for b in self.blocks)

    @property
    def capacity(self) -> int:
        return max(b.capacity for b in self.blocks)

    @property
    def grow_events(self) -> int:
        return self.blocks_made - 1

    @property
    def holders(self) -> int:
        return sum(len(b._holders) for b in self.blocks)  # noqa: SLF001

    def block_bytes(self, capacity: int, slots: int) -> int:
        return slots * capacity * self.bytes_per_position

    def sequence(self) -> SlotSequence:
        return SlotSequence(self._base, store=self)

    # ------------------------------------------------------------------ blocks
    def _new_block(self, capacity: int, slots: int) -> SlotKVPool:
        block = SlotKVPool(self.model, self.vocab_size, slots=slots, capacity=capacity, max_capacity=capacity)
        self.blocks.append(block)
        self.bytes_used += block.bytes_allocated
        self.blocks_made += 1
        self.peak_bytes = max(self.peak_bytes, self.bytes_allocated)
        return block

    def _block_for(self, capacity: int) -> SlotKVPool:
        """A block of class ``capacity`` with a free slot: the first existing one, else a new one (as many
        slots as the budget allows, up to the class's share), else KVMemoryExhausted."""
        for block in self.blocks:
            if block.capacity == capacity and block.free_slots:
                self._empty_since.pop(id(block), None)
                return block
        slots = max(1, min(self.block_slots, self.block_positions // capacity))
        if self.budget_bytes is not None and self.block_bytes(capacity, slots) > self.budget_bytes - self.bytes_allocated:
            self.trim(force=True)  # empty blocks kept for reuse give their bytes to this class first
        room = None if self.budget_bytes is None else self.budget_bytes - self.bytes_allocated
        while room is not None and slots > 1 and self.block_bytes(capacity, slots) > room:
            slots //= 2
        if room is not None and self.block_bytes(capacity, slots) > room:
            need = self.block_bytes(capacity, 1)
            raise KVMemoryExhausted(
                f"the KV cache is at its budget: {capacity} positions need {need / 2**20:.1f} MiB, "
                f"{max(room, 0) / 2**20:.1f} MiB of the {self.budget_bytes / 2**20:.1f} MiB budget are free",
                never_fits=need > self.budget_bytes - self._base.bytes_allocated)
        return self._new_block(capacity, slots)

    def _drop_if_empty(self, block: SlotKVPool) -> None:
        if block is not self._base and not block._holders and block in self.blocks:  # noqa: SLF001
            self._empty_since.setdefault(id(block), time.monotonic())
            if self.keep_empty_s <= 0:
                self.trim(force=True)

    def trim(self, force: bool = False) -> int:
        """Free the blocks empty for ``keep_empty_s`` (every empty one with ``force``); the bytes freed."""
        now, freed = time.monotonic(), 0
        for block in list(self.blocks):
            since = self._empty_since.get(id(block))
            if since is not None and not block._holders and (force or now - since >= self.keep_empty_s):  # noqa: SLF001
                self.blocks.remove(block)
                del self._empty_since[id(block)]
                self.bytes_used -= block.bytes_allocated
                freed += block.bytes_allocated
                block.keys.clear()
                block.values.clear()
        if freed:
            _trim_heap()
        return freed

    def release(self, seq: SlotSequence) -> None:
        """Give ``seq``'s slot back (from :meth:`SlotSequence.reset`); a block left empty is freed."""
        block = seq.pool
        if seq.slot is not None:
            block.release(seq.slot)
            seq.slot = None
        seq.pool = self._base
        self._drop_if_empty(block)
        if self._empty_since:
            self.trim()

    def class_for(self, positions: int) -> int:
        if positions > self.max_capacity:
            raise ValueError(f"{positions} positions exceed the model's context of {self.max_capacity}")
        return next(c for c in self.classes if c >= positions)

    def reserve(self, seq: SlotSequence, positions: int) -> None:
        """Make ``seq``'s slot hold ``positions`` positions: take one, or move to a larger class (copying
        its own cached positions only). Raises KVMemoryExhausted (seq unchanged) or ValueError."""
        if seq.slot is not None and seq.pool.capacity >= positions:
            return
        target = self._block_for(self.class_for(max(positions, 1)))
        slot = target.acquire(seq)
        if seq.slot is not None:
            old, old_slot, live = seq.pool, seq.slot, seq.cache_len
            if live:
                for new_store, old_store in ((target.keys, old.keys), (target.values, old.values)):
                    for new, prev in zip(new_store, old_store):
                        new[slot, :, :live] = prev[old_slot, :, :live]
            old.release(old_slot)
            self.migrations += 1
            seq.pool, seq.slot = target, slot
            self._drop_if_empty(old)
        else:
            seq.pool, seq.slot = target, slot

    # ------------------------------------------------------------------ the batched forward
    def feed_batch(self, seqs: Sequence[SlotSequence], ids_list: Sequence[Sequence[int]],
                   logits_froms: Sequence[int]) -> list[torch.Tensor]:
        """As :meth:`SlotKVPool.feed_batch` for sequences of this store: one forward per block involved."""
        t0 = time.perf_counter()
        if any(s.store is not self for s in seqs):
            raise ValueError("batched sequences must share one store")
        # A block's forward pads every row to the batch's longest new run, and the padding is written too
        # (past the row's length): each row needs room for its kept prefix plus that run.
        keeps = [min(s._reusable_prefix(ids), lf) for s, ids, lf in zip(seqs, ids_list, logits_froms)]
        n_max = max(len(ids) - k for ids, k in zip(ids_list, keeps))
        for s, keep in zip(seqs, keeps):
            self.reserve(s, keep + n_max)
        groups: dict[int, list[int]] = {}
        for i, s in enumerate(seqs):
            groups.setdefault(id(s.pool), []).append(i)
        results: list[torch.Tensor | None] = [None] * len(seqs)
        for rows in groups.values():
            block = seqs[rows[0]].pool
            before = block.model_s
            outs = block.feed_batch([seqs[i] for i in rows], [ids_list[i] for i in rows],
                                    [logits_froms[i] for i in rows])
            self.model_s += block.model_s - before
            self.forward_calls += 1
            for i, out in zip(rows, outs):
                results[i] = out
        self.feed_s += time.perf_counter() - t0
        return results
