"""Batched verification: Verify calls of different sessions run as one target forward.

Each session keeps its own KV cache (a :class:`CachedCausalLM`). A batch is built by left-padding every
layer's cached keys/values to a common length ``P`` and right-padding the new tokens to a common
length ``N``; the attention mask is zero on both paddings and ``position_ids`` are explicit, so each row
sees exactly its own sequence. After the forward, each row's keys/values (its real past plus its new
tokens) are split back into its session's cache. At temperature 0 the verdicts equal those of
unbatched verification (tested); logits differ only by float rounding (~1e-7).

Rounds are gathered into batches by :class:`gelato.transport.worker.ModelWorker`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from gelato.models.cached import CachedCausalLM, cache_kwargs

# The one place that reaches into CachedCausalLM's cache; a public export/import of its KV tensors on
# CachedCausalLM would remove these private accesses.


def _layers(lm: CachedCausalLM):
    return lm._cache.layers  # noqa: SLF001


def supports_batching(lm: CachedCausalLM) -> bool:
    """True when every cache layer is a plain (non-sliding) DynamicLayer holding keys/values tensors."""
    return all(type(layer) is DynamicLayer for layer in _layers(lm))


def _prepare(lm: CachedCausalLM, ids: Sequence[int], logits_from: int) -> tuple[int, list[int]]:
    """Crop the cache to the reusable prefix (as CachedCausalLM.feed does); return (kept, new tokens)."""
    if len(ids) == 0:
        raise ValueError("cannot run a forward pass on an empty token sequence")
    if not 0 <= logits_from < len(ids):
        raise ValueError(f"logits_from={logits_from} out of range for {len(ids)} tokens")
    keep = min(lm._reusable_prefix(ids), logits_from)  # noqa: SLF001
    lm.truncate(keep)
    return keep, list(ids[keep:])


@torch.inference_mode()
def batched_feed(lms: Sequence[CachedCausalLM], seqs: Sequence[Sequence[int]],
                 logits_froms: Sequence[int]) -> list[torch.Tensor]:
    """``[lm.feed(ids, logits_from) for ...]`` as ONE forward of the shared model; same contract per row."""
    if not lms:
        return []
    model = lms[0].model
    if any(lm.model is not model for lm in lms):
        raise ValueError("batched sessions must share one model")
    if len({id(lm) for lm in lms}) != len(lms):
        raise ValueError("a session can appear only once in a batch")
    device = lms[0].device
    prepared = [_prepare(lm, ids, lf) for lm, ids, lf in zip(lms, seqs, logits_froms)]
    keeps = [k for k, _ in prepared]
    news = [n for _, n in prepared]
    B, P, N = len(lms), max(keeps), max(len(n) for n in news)

    input_ids = torch.zeros(B, N, dtype=torch.long, device=device)
    mask = torch.zeros(B, P + N, dtype=torch.long, device=device)
    position_ids = torch.zeros(B, N, dtype=torch.long, device=device)
    for i, (keep, new) in enumerate(prepared):
        input_ids[i, : len(new)] = torch.tensor(new, dtype=torch.long, device=device)
        mask[i, P - keep : P + len(new)] = 1
        position_ids[i] = keep + torch.arange(N, device=device)

    cache_data = None
    if P > 0:
        n_layers = len(_layers(lms[0]))
        cache_data = []
        for layer in range(n_layers):
            ref = next(_layers(lm)[layer] for lm, k in zip(lms, keeps) if k > 0)
            _, heads, _, head_dim = ref.keys.shape
            vheads, vdim = ref.values.shape[1], ref.values.shape[3]
            keys = ref.keys.new_zeros(B, heads, P, head_dim)
            values = ref.values.new_zeros(B, vheads, P, vdim)
            for i, (lm, k) in enumerate(zip(lms, keeps)):
                if k:
                    src = _layers(lm)[layer]
                    keys[i, :, P - k :] = src.keys[0]
                    values[i, :, P - k :] = src.values[0]
            cache_data.append((keys, values))
    batch_cache = DynamicCache(ddp_cache_data=cache_data, config=model.config)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                **cache_kwargs(model, batch_cache))

    results = []
    for i, (lm, ids, lf) in enumerate(zip(lms, seqs, logits_froms)):
        keep, new = prepared[i]
        n = len(new)
        rows = [(layer.keys[i : i + 1, :, P - keep : P + n].clone(),
                 layer.values[i : i + 1, :, P - keep : P + n].clone()) for layer in batch_cache.layers]
        lm._cache = DynamicCache(ddp_cache_data=rows, config=model.config)  # noqa: SLF001
        lm._cached_ids = list(ids)  # noqa: SLF001
        lm.tokens_processed += n
        lm.forward_calls += 1
        results.append(out.logits[i, lf - keep : n, : lm.vocab_size].float().cpu())
    return results
