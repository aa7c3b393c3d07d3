"""Static-shape verification: the target's verify forward with fixed tensor shapes, replayable as a CUDA graph.

Eager transformers on a GPU pays one kernel launch per op: a small target's forward costs the same ~20 ms
whether it carries 1 or 17 tokens. Fixing every shape lets the forward be captured once and replayed:

- the new tokens of a round are padded to a *token bucket* (1, 2, 4, 8, 16, 32; longer runs go in chunks);
- keys/values live in one preallocated cache per layer, ``[1, kv_heads, max_len, head_dim]`` (the layout of
  transformers' ``StaticCache``), written in place with ``index_copy_`` at the round's positions; attention
  reads a fixed-length prefix of it, the *kv bucket* (64, 128, ... max_len: cost follows the context);
- positions (``position_ids``, the write positions) and the attention mask are computed inside the forward
  from one ``start`` tensor (the cached length): query ``j`` sees exactly positions ``0 .. start + j``, so
  the padding queries and the stale positions past the cache are hidden from every real token.

A masked position enters attention with weight exactly zero, so the logits equal the dynamic path's
(:class:`~gelato.models.cached.CachedCausalLM`) up to float summation order (tests: allclose, greedy-identical).
On CUDA each (token bucket, kv bucket) is captured once with ``torch.cuda.CUDAGraph`` (lazily, on first
use; all graphs share one memory pool) and replayed; elsewhere the very same function runs eagerly.

The engine holds ONE working cache (so graphs capture one set of addresses); sequences
(:class:`StaticSequence`, the interface of CachedCausalLM) take turns in it: when another sequence's round
comes, the resident one's live positions are copied out and the newcomer's copied in (a cost only when
sessions interleave). Only models that fit slot caching qualify (full attention, sdpa or eager).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence

import torch
from transformers.cache_utils import Cache

from gelato.models.cached import CachedTokens, cache_kwargs, first_logit_row
from gelato.models.slots import supports_slots

log = logging.getLogger("gelato.models.static_verify")

TOKEN_BUCKETS = (1, 2, 4, 8, 16, 32)
MIN_KV_BUCKET = 64


class ContextTooLong(ValueError):
    """A sequence would need more positions than the static cache holds."""


def kv_buckets(max_len: int, smallest: int = MIN_KV_BUCKET) -> list[int]:
    """Powers of two from ``smallest`` below ``max_len``, then ``max_len`` itself."""
    out, c = [], min(smallest, max_len)
    while c < max_len:
        out.append(c)
        c *= 2
    return [*out, max_len]


class _StaticView(Cache):
    """The cache one static forward sees: writes at ``write_pos`` [N], reads the first ``kv_len`` positions."""

    def __init__(self, engine: StaticVerifyEngine, write_pos: torch.Tensor, kv_len: int) -> None:
        super().__init__(layers=[])
        self.engine, self.write_pos, self.kv_len = engine, write_pos, kv_len

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        keys, values = self.engine.keys[layer_idx], self.engine.values[layer_idx]
        keys.index_copy_(2, self.write_pos, key_states.to(keys.dtype))
        values.index_copy_(2, self.write_pos, value_states.to(values.dtype))
        return keys[:, :, : self.kv_len], values[:, :, : self.kv_len]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.kv_len

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return self.kv_len, 0


class StaticVerifyEngine:
    """One model's static-shape forward: the working cache, the buckets, and (on CUDA) the captured graphs."""

    def __init__(self, model: torch.nn.Module, vocab_size: int | None = None, *, max_len: int | None = None,
                 token_buckets: Sequence[int] = TOKEN_BUCKETS, graphs: bool | None = None) -> None:
        if not supports_slots(model):
            raise ValueError(f"{type(model).__name__} does not fit static verification (needs full attention, "
                             "sdpa or eager)")
        config = model.config
        self.model = model.eval()
        self.config = config
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.vocab_size = int(vocab_size or config.vocab_size)
        self.embedding_rows = int(model.get_input_embeddings().num_embeddings)
        mpe = getattr(config, "max_position_embeddings", None) or 4096
        self.max_len = int(max_len or mpe)
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")
        self.token_buckets = sorted({int(b) for b in token_buckets})
        if not self.token_buckets or self.token_buckets[0] < 1:
            raise ValueError(f"token buckets must be >= 1, got {list(token_buckets)}")
        self.kv_buckets = kv_buckets(self.max_len)
        self.graphs = self.device.type == "cuda" if graphs is None else bool(graphs)
        if self.graphs and self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a cuda model, this one is on {self.device}")
        heads = int(config.num_attention_heads)
        kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
        shape = (1, kv_heads, self.max_len, head_dim)
        # zeroed, never uninitialised: masked positions still enter attention (weight 0) and must be finite
        self.keys = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(config.num_hidden_layers)]
        self._eager_mask = getattr(config, "_attn_implementation", "sdpa") == "eager"
        self._graphs: dict[tuple[int, int], tuple] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.graphs else None
        self._resident: weakref.ref | None = None
        self.forward_calls = 0
        self.padded_tokens = 0  # padding positions computed (the price of fixed shapes)
        self.swaps = 0  # sequences moved into the working cache from their saved copy
        self.graph_replays = 0

    @property
    def graphs_captured(self) -> int:
        return len(self._graphs)

    @property
    def bytes_allocated(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def sequence(self) -> StaticSequence:
        return StaticSequence(self)

    # ------------------------------------------------------------------ buckets
    def plan(self, start: int, n: int) -> tuple[int, int, int]:
        """(tokens, token bucket, kv bucket) of the next chunk of ``n`` new tokens written from ``start``."""
        room = self.max_len - start
        take = min(n, self.token_buckets[-1])
        bucket = next(b for b in self.token_buckets if b >= take)
        if bucket > room:  # near the end of the cache: a smaller bucket, fewer tokens this chunk
            bucket = max((b for b in self.token_buckets if b <= room), default=0)
            if bucket == 0:  # only when room < the smallest bucket: one unpadded chunk of what is left
                bucket = room
            take = min(take, bucket)
        kv = next(c for c in self.kv_buckets if c >= start + bucket)
        return take, bucket, kv

    # ------------------------------------------------------------------ the forward
    def _forward(self, input_ids: torch.Tensor, start: torch.Tensor, kv_len: int) -> torch.Tensor:
        """The fixed-shape forward: input_ids [1, B] at positions start .. start+B-1; logits [1, B, V]. Every
        shape depends only on (B, kv_len), every value on the tensors: capturable as a CUDA graph."""
        steps = torch.arange(input_ids.shape[1], device=self.device)
        positions = start + steps  # [B]
        mask = (torch.arange(kv_len, device=self.device)[None, :] <= positions[:, None])[None, None]  # [1,1,B,L]
        if self._eager_mask:
            mask = torch.zeros(mask.shape, dtype=self.dtype, device=self.device).masked_fill(
                ~mask, torch.finfo(self.dtype).min)
        view = _StaticView(self, positions, kv_len)
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions[None],
                         **cache_kwargs(self.model, view))
        return out.logits

    def _graph(self, bucket: int, kv_len: int) -> tuple:
        """The captured graph of (bucket, kv_len) and its static buffers (input_ids, start, logits)."""
        key = (bucket, kv_len)
        if key not in self._graphs:
            ids = torch.zeros(1, bucket, dtype=torch.long, device=self.device)
            # warm-up runs really write K/V: at kv_len - bucket .., past every live position (plan() keeps
            # start + bucket <= kv_len), so nothing cached is touched
            start = torch.full((1,), kv_len - bucket, dtype=torch.long, device=self.device)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._forward(ids, start, kv_len)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                logits = self._forward(ids, start, kv_len)
            self._graphs[key] = (graph, ids, start, logits)
        return self._graphs[key]

    def run_chunk(self, tokens: Sequence[int], start: int, bucket: int, kv_len: int) -> torch.Tensor:
        """Logits [len(tokens), V] (float32, CPU, a copy) of ``tokens`` written at ``start``, padded to ``bucket``."""
        n = len(tokens)
        padded = torch.zeros(1, bucket, dtype=torch.long)
        padded[0, :n] = torch.tensor(list(tokens), dtype=torch.long)
        if self.graphs:
            graph, ids, start_buf, logits = self._graph(bucket, kv_len)
            ids.copy_(padded)
            start_buf.fill_(start)
            graph.replay()
            self.graph_replays += 1
        else:
            logits = self._forward(padded.to(self.device), torch.tensor([start], device=self.device), kv_len)
        self.forward_calls += 1
        self.padded_tokens += bucket - n
        return logits[0, :n, : self.vocab_size].to("cpu", torch.float32, copy=True)

    # ------------------------------------------------------------------ residency
    def activate(self, seq: StaticSequence) -> None:
        """Make ``seq``'s positions the working cache's: save the resident's live positions, load ``seq``'s."""
        current = self._resident() if self._resident is not None else None
        if current is seq:
            return
        if current is not None and current.cache_len:
            n = current.cache_len
            current._saved = [(k[:, :, :n].clone(), v[:, :, :n].clone()) for k, v in zip(self.keys, self.values)]
        if seq._saved is not None:
            n = seq.cache_len  # truncated while saved: only the positions still held come back
            for (k, v), key, value in zip(seq._saved, self.keys, self.values):
                key[:, :, :n].copy_(k[:, :, :n])
                value[:, :, :n].copy_(v[:, :, :n])
            seq._saved = None
            self.swaps += 1
        elif seq.cache_len:
            raise RuntimeError("a static sequence lost its cached positions")  # an invariant, never expected
        self._resident = weakref.ref(seq)

    def evict(self, seq: StaticSequence) -> None:
        if self._resident is not None and self._resident() is seq:
            self._resident = None


class StaticSequence(CachedTokens):
    """One sequence verified through a :class:`StaticVerifyEngine` (the interface of CachedCausalLM)."""

    def __init__(self, engine: StaticVerifyEngine) -> None:
        self.engine = engine
        self.model = engine.model
        self.config = engine.config
        self.device = engine.device
        self.vocab_size = engine.vocab_size
        self.tokens_processed = 0
        self.forward_calls = 0
        self._cached_ids: list[int] = []
        self._saved: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # its positions while not resident

    def truncate(self, length: int) -> None:
        """Drop cached positions from ``length`` on: only the length moves."""
        del self._cached_ids[length:]

    def reset(self) -> None:
        self._cached_ids = []
        self._saved = None
        self.engine.evict(self)

    @torch.no_grad()
    def feed(self, ids: Sequence[int], logits_from: int | None = None) -> torch.Tensor:
        """As :meth:`CachedCausalLM.feed`: the cache holds ``ids`` after; logits [len(ids) - logits_from, V]."""
        logits_from = first_logit_row(ids, logits_from)
        engine = self.engine
        if len(ids) > engine.max_len:
            raise ContextTooLong(f"{len(ids)} positions exceed the static verify cache of {engine.max_len}")
        keep = min(self._reusable_prefix(ids), logits_from)
        new = list(ids[keep:])
        bad = [t for t in new if not 0 <= t < engine.embedding_rows]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the model's vocabulary of {engine.embedding_rows}")
        engine.activate(self)
        self.truncate(keep)
        rows, pos = [], keep
        while pos < len(ids):
            take, bucket, kv_len = engine.plan(pos, len(ids) - pos)
            chunk = new[pos - keep: pos - keep + take]
            logits = engine.run_chunk(chunk, pos, bucket, kv_len)
            self._cached_ids.extend(chunk)
            self.tokens_processed += take
            self.forward_calls += 1
            if pos + take > logits_from:
                rows.append(logits[max(0, logits_from - pos):])
            pos += take
        return rows[0] if len(rows) == 1 else torch.cat(rows)


def make_static_engine(model: torch.nn.Module, vocab_size: int | None, enabled: bool | None,
                       max_len: int) -> StaticVerifyEngine | None:
    """The edge's static verify engine, or None. ``enabled`` None: on when the model is on CUDA and fits
    (full attention, sdpa or eager); True on a model that does not fit is a ValueError."""
    device = next(model.parameters()).device
    if enabled is None:
        enabled = device.type == "cuda" and supports_slots(model)
    if not enabled:
        return None
    engine = StaticVerifyEngine(model, vocab_size, max_len=max_len)
    log.info("static-shape verification on %s: cache of %d positions (%.1f MiB), token buckets %s, CUDA graphs %s",
             device, engine.max_len, engine.bytes_allocated / 2**20, engine.token_buckets,
             "on" if engine.graphs else "off")
    return engine
