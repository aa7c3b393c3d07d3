"""Batched verification: Verify calls of different sessions run as one target forward.

Each session keeps its own KV cache (a :class:`CachedCausalLM`). A batch is built by left-padding every
layer's cached keys/values to a common length ``P`` and right-padding the new tokens to a common
length ``N``; the attention mask is zero on both paddings and ``position_ids`` are explicit, so each row
sees exactly its own sequence. After the forward, each row's keys/values (its real past plus its new
tokens) are split back into its session's cache. At temperature 0 the verdicts equal those of
unbatched verification (tested); logits differ only by float rounding (~1e-7).

Requests are gathered by :class:`VerifyBatcher`: the first request of a batch waits at most
``window_s`` for others (only while other sessions could still send), up to ``max_batch``; batches run
one at a time on a single model thread, and requests arriving meanwhile form the next batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from gelato.models.cached import CachedCausalLM

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
                past_key_values=batch_cache, use_cache=True)

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


# ----------------------------------------------------------------------------- request gathering

@dataclass
class BatchJob:
    """One Verify request waiting for the model: what to feed and, later, its outcome."""

    lm: CachedCausalLM
    ids: list[int]
    logits_from: int
    payload: Any = None  # whatever the finishing step needs (session, decoded draft...)
    enqueued: float = field(default_factory=time.perf_counter)
    future: asyncio.Future | None = None


@dataclass
class BatchOutcome:
    results: list[Any]  # one per job: a result or an Exception
    forward_ms: float
    size: int


class VerifyBatcher:
    """Gathers jobs into batches and runs ``run_batch(jobs) -> BatchOutcome`` on the model executor."""

    def __init__(self, run_batch: Callable[[list[BatchJob]], BatchOutcome], executor: Executor,
                 max_batch: int = 8, window_s: float = 0.002,
                 others_waiting: Callable[[int], bool] | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch = max_batch
        self.window_s = max(0.0, window_s)
        self.others_waiting = others_waiting or (lambda n: True)
        self._queue: asyncio.Queue[BatchJob] | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="gelato-verify-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            if job.future is not None and not job.future.done():
                job.future.cancel()

    def submit(self, job: BatchJob) -> asyncio.Future:
        """Queue a job; its future resolves with the job's result (independent of the caller's fate)."""
        assert self._queue is not None, "batcher not started"
        job.future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(job)
        return job.future

    async def _gather(self, first: BatchJob) -> list[BatchJob]:
        batch = [first]
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0 or not self.others_waiting(len(batch)):
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = await self._gather(first) if self.max_batch > 1 else [first]
            try:
                outcome = await loop.run_in_executor(self.executor, self.run_batch, batch)
                results = outcome.results
            except Exception as exc:  # run_batch isolates per-job errors; this is a last resort
                results = [exc] * len(batch)
            for job, result in zip(batch, results):
                if job.future is None or job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)
