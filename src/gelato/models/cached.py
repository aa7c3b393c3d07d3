"""A causal LM with a KV cache that lives for a whole generation.

The cache is kept in sync with a token sequence by its longest common prefix: feeding a sequence
re-uses every cached position whose token still matches and crops the rest, so rolling back rejected
draft tokens is a crop, never a recomputation of the prefix. ``tokens_processed`` counts every token
that went through a forward pass, so tests can prove that no round recomputes the prefix.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence

import torch
from transformers import DynamicCache


@functools.lru_cache(maxsize=64)
def _cache_argument(forward_type: type) -> str:
    params = inspect.signature(forward_type.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_kwargs(model: torch.nn.Module, cache) -> dict:
    """``{"cache": cache}`` where the model's forward takes the current cache argument (transformers >= 5.24),
    else ``{"past_key_values": cache}``: no deprecation warning, and no break within the pinned range."""
    return {_cache_argument(type(model)): cache, "use_cache": True}


class CachedTokens:
    """The token ids a KV cache holds, and how much of a new sequence it can reuse (its longest common prefix)."""

    _cached_ids: list[int]

    @property
    def cache_len(self) -> int:
        return len(self._cached_ids)

    @property
    def cached_ids(self) -> list[int]:
        return list(self._cached_ids)

    def _reusable_prefix(self, ids: Sequence[int]) -> int:
        cached = self._cached_ids
        n = min(len(cached), len(ids))
        if list(ids[:n]) == cached[:n]:
            return n
        i = 0
        while i < n and cached[i] == ids[i]:
            i += 1
        return i


def first_logit_row(ids: Sequence[int], logits_from: int | None) -> int:
    """The first position whose logits a forward over ``ids`` returns (default: the last); ValueError naming
    the problem for an empty sequence or a position outside it."""
    if len(ids) == 0:
        raise ValueError("cannot run a forward pass on an empty token sequence")
    if logits_from is None:
        logits_from = len(ids) - 1
    if not 0 <= logits_from < len(ids):
        raise ValueError(f"logits_from={logits_from} out of range for {len(ids)} tokens")
    return logits_from


class CachedCausalLM(CachedTokens):
    def __init__(self, model: torch.nn.Module, vocab_size: int | None = None) -> None:
        """``vocab_size`` below the model's output width drops padding rows (pairs such as Qwen2.5
        0.5B/7B pad their embeddings to different sizes)."""
        self.model = model.eval()
        self.config = model.config
        self.device = next(model.parameters()).device
        self.vocab_size = int(vocab_size or model.config.vocab_size)
        self._embedding_rows = int(model.get_input_embeddings().num_embeddings)
        self.tokens_processed = 0
        self.forward_calls = 0
        self.reset()

    def reset(self) -> None:
        """Forget the cache (a new sequence)."""
        self._cache = DynamicCache(config=self.config)
        self._cached_ids: list[int] = []

    def truncate(self, length: int) -> None:
        """Drop cached positions from ``length`` on (no-op if the cache is shorter)."""
        drop = len(self._cached_ids) - length
        if drop > 0:
            self._cache.crop(-drop)
            del self._cached_ids[length:]

    @torch.inference_mode()
    def feed(self, ids: Sequence[int], logits_from: int | None = None) -> torch.Tensor:
        """Make the cache hold exactly ``ids`` and return float32 logits for positions ``logits_from..len(ids)-1``.

        Only the positions not already cached (and at least those from ``logits_from``, default the last
        one) are computed. Row ``j`` of the result is the next-token logits after ``ids[:logits_from + j + 1]``.
        """
        logits_from = first_logit_row(ids, logits_from)
        keep = min(self._reusable_prefix(ids), logits_from)
        self.truncate(keep)
        new = list(ids[keep:])
        bad = [t for t in new if not 0 <= t < self._embedding_rows]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the model's vocabulary of {self._embedding_rows}")
        input_ids = torch.tensor([new], dtype=torch.long, device=self.device)
        out = self.model(input_ids=input_ids, **cache_kwargs(self.model, self._cache))
        self._cached_ids.extend(new)
        self.tokens_processed += len(new)
        self.forward_calls += 1
        return out.logits[0, logits_from - keep :, : self.vocab_size].float().cpu()
