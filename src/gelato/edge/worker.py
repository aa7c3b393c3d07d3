"""The edge's model thread: verification rounds (batched across sessions) and prompt prefill, interleaved fairly.

All model work runs on one thread. The scheduler gives rounds priority: it runs every waiting round
(up to ``max_batch`` per forward, after waiting at most ``window_s`` for more while other ready sessions
could still send), then ONE prefill chunk from the next opening session (round-robin), then rounds
again. So a long prompt delays a round by at most one chunk, however many devices open long prompts at
once. A chunk is ``prefill_chunk`` tokens when no other session could send a round; otherwise it is
sized to take about ``prefill_budget_ms``, from the per-token time this prompt's previous chunk took (a
chunk's cost grows with its position, since it attends over everything before it; a prompt's first
chunk uses the last chunk of any prompt), and never fewer than ``MIN_PREFILL_CHUNK`` tokens.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import torch

from gelato.decoding.rejection import verify_rows
from gelato.decoding.types import RoundCommit
from gelato.edge.sessions import Session
from gelato.edge.stats import EdgeMetrics
from gelato.models.cached import CachedCausalLM
from gelato.models.kv_store import KVMemoryExhausted
from gelato.models.slots import SlotSequence
from gelato.wire.codec import DecodedDraft, encode_verdict
from gelato.wire.errors import RequestError
from gelato.wire.proto import gelato_pb2 as pb

log = logging.getLogger("gelato.edge.worker")

MIN_PREFILL_CHUNK = 16


@dataclass
class RoundJob:
    """One round waiting for the model: feed ``ids`` (logits from ``logits_from``), then verify."""

    session: Session
    decoded: DecodedDraft
    round_id: int
    pending: list[int]
    ids: list[int]
    logits_from: int
    step: int = -1  # a burst's step (0: its first, which carries the round's pending ids); -1: an ordinary round
    enqueued: float = field(default_factory=time.perf_counter)
    future: asyncio.Future | None = None


@dataclass
class RoundResult:
    verdict: pb.VerdictDown
    queue_ms: float
    forward_ms: float
    batch: int


@dataclass
class _Prefill:
    lm: CachedCausalLM | SlotSequence
    ids: list[int]
    future: asyncio.Future
    reserve: int = 0  # positions to hold before the first chunk (prompt + the first round): admission
    done: int = 0
    ms_per_token: float | None = None  # of the previous chunk


def finish_round(job: RoundJob, logits: torch.Tensor) -> pb.VerdictDown:
    """Verify one round (or one step of a burst: an empty draft) from its target ``logits`` (len(draft) + 1,
    vocab) and advance the session."""
    session, decoded = job.session, job.decoded
    n_before = job.logits_from + 1  # committed + pending
    verdict = verify_rows(logits, decoded.tokens, decoded.q, session.params, session.generator, rule=decoded.rule,
                          draws=decoded.draws, redraw=decoded.redraw)
    session.lm.truncate(n_before + verdict.accepted)  # crop the rejected positions
    appended = job.pending + RoundCommit.of(decoded.tokens, verdict).edge_ids
    session.committed.extend(appended)
    session.last_round = job.round_id
    session.rounds += job.step <= 0  # a burst is one round, however many steps
    session.tokens += len(appended) - len(job.pending)
    return encode_verdict(verdict, round_id=job.round_id, position=len(session.committed), streamed=job.step >= 0)


class ModelWorker:
    """Owns the model thread; ``submit_round`` and ``prefill`` are awaited from the server's event loop."""

    def __init__(self, metrics: EdgeMetrics, *, max_batch: int = 8, window_s: float = 0.008,
                 prefill_chunk: int = 256, prefill_budget_ms: float = 4.0,
                 others_waiting: Callable[[int], bool] | None = None, on_idle: Callable[[], object] | None = None,
                 idle_s: float = 0.5) -> None:
        if max_batch < 1 or prefill_chunk < 1 or prefill_budget_ms <= 0:
            raise ValueError(f"max_batch and prefill_chunk must be >= 1 and prefill_budget_ms > 0, got {max_batch}, "
                             f"{prefill_chunk}, {prefill_budget_ms}")
        self.metrics = metrics
        self.max_batch = max_batch
        self.window_s = max(0.0, window_s)
        self.prefill_chunk = prefill_chunk
        self.prefill_budget_ms = prefill_budget_ms
        self.others_waiting = others_waiting or (lambda n: True)
        self.on_idle, self.idle_s = on_idle, idle_s  # run on the model thread after idle_s without work
        self.last_ms_per_token: float | None = None  # of the last prefill chunk of any prompt
        self.executor: ThreadPoolExecutor | None = None
        self._rounds: collections.deque[RoundJob] = collections.deque()
        self._prefills: collections.deque[_Prefill] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gelato-model")
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="gelato-model-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for item in [*self._rounds, *self._prefills]:
            if item.future is not None and not item.future.done():
                item.future.cancel()
        self._rounds.clear()
        self._prefills.clear()

    def shutdown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)

    async def run(self, fn: Callable, *args):
        """Run ``fn(*args)`` on the model thread (e.g. freeing a cache)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # ------------------------------------------------------------------ submitting work
    def submit_round(self, job: RoundJob) -> asyncio.Future:
        job.future = asyncio.get_running_loop().create_future()
        self._rounds.append(job)
        self._wake.set()
        return job.future

    async def prefill(self, lm: CachedCausalLM | SlotSequence, ids: list[int], reserve: int = 0) -> None:
        """Fill ``lm``'s cache with ``ids`` in chunks interleaved with other work; a slot store first reserves
        ``reserve`` positions (raising KVMemoryExhausted, as a RequestError, when its budget cannot hold them)."""
        if not ids and not reserve:
            return
        item = _Prefill(lm, list(ids), asyncio.get_running_loop().create_future(), reserve)
        self._prefills.append(item)
        self._wake.set()
        await item.future

    @property
    def prefilling(self) -> int:
        return sum(1 for item in self._prefills if not item.future.done())

    # ------------------------------------------------------------------ scheduling
    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.idle_s if self.on_idle is not None else None)
            except TimeoutError:
                await loop.run_in_executor(self.executor, self.on_idle)  # e.g. free KV blocks left empty
                continue
            self._wake.clear()
            while self._rounds or self._prefills:
                if self._rounds:
                    batch = await self._gather()
                    try:
                        results = await loop.run_in_executor(self.executor, self._run_batch, batch)
                    except Exception as exc:  # _run_batch isolates per-job errors; a last resort
                        results = [exc] * len(batch)
                    for job, result in zip(batch, results):
                        _resolve(job.future, result)
                while self._prefills and self._prefills[0].future.done():  # its stream is gone: the session
                    self._prefills.popleft()  # was released, and a step now would take a slot nothing frees
                if self._prefills:
                    item = self._prefills.popleft()
                    try:
                        finished = await loop.run_in_executor(self.executor, self._prefill_step, item)
                    except Exception as exc:
                        _resolve(item.future, memory_error(exc))
                        continue
                    if finished:
                        _resolve(item.future, None)
                    elif not item.future.done():  # cancelled (stream gone) -> drop it
                        self._prefills.append(item)

    async def _gather(self) -> list[RoundJob]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window_s
        while 1 < self.max_batch and len(self._rounds) < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0 or not self.others_waiting(len(self._rounds)):
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                break
        return [self._rounds.popleft() for _ in range(min(self.max_batch, len(self._rounds)))]

    def chunk_tokens(self, item: _Prefill) -> int:
        """Tokens of ``item``'s next prefill chunk (see the module docstring)."""
        # a prompt's first chunk is sized from the last chunk of any prompt (an estimate: the later a chunk
        # sits, the more it costs per token), so a client looping fresh opens cannot make rounds wait full chunks
        ms_per_token = item.ms_per_token or self.last_ms_per_token
        if ms_per_token is None or not self.others_waiting(0):
            return self.prefill_chunk
        fit = int(self.prefill_budget_ms / max(ms_per_token, 1e-6))
        return max(min(MIN_PREFILL_CHUNK, self.prefill_chunk), min(self.prefill_chunk, fit))

    def _prefill_step(self, item: _Prefill) -> bool:
        if item.done == 0 and item.reserve and getattr(item.lm, "store", None) is not None:
            item.lm.store.reserve(item.lm, item.reserve)
        if not item.ids:
            return True
        end = min(len(item.ids), item.done + self.chunk_tokens(item))
        t0 = time.perf_counter()
        item.lm.feed(item.ids[:end])
        item.ms_per_token = self.last_ms_per_token = (time.perf_counter() - t0) * 1e3 / (end - item.done)
        item.done = end
        self.metrics.count("prefill_chunks")
        return end >= len(item.ids)

    def _run_batch(self, jobs: list[RoundJob]) -> list[object]:
        """On the model thread: one forward for the live jobs, then per-job verification."""
        t_start = time.perf_counter()
        results: list[object] = [None] * len(jobs)
        live = []
        for i, job in enumerate(jobs):
            if job.session.closed:
                results[i] = RequestError(grpc.StatusCode.NOT_FOUND, "the session was closed during verification")
            else:
                live.append(i)
        logits: dict[int, torch.Tensor] = {}
        if len(live) > 1 and all(isinstance(jobs[i].session.lm, SlotSequence) for i in live):
            try:
                lm = jobs[live[0]].session.lm
                owner = lm.store if lm.store is not None else lm.pool
                outs = owner.feed_batch([jobs[i].session.lm for i in live], [jobs[i].ids for i in live],
                                        [jobs[i].logits_from for i in live])
                logits = dict(zip(live, outs))
            except KVMemoryExhausted:
                pass  # one at a time below: only the sessions that do not fit are stopped
            except Exception:
                log.exception("batched forward failed; verifying the batch one session at a time")
        for i in live:
            if i not in logits:
                try:
                    logits[i] = jobs[i].session.lm.feed(jobs[i].ids, logits_from=jobs[i].logits_from)
                except Exception as exc:
                    results[i] = memory_error(exc, during="session")
        forward_ms = (time.perf_counter() - t_start) * 1e3
        if live:
            self.metrics.observe_batch(len(live), forward_ms)
        for i in live:
            if i in logits:
                job = jobs[i]
                before = len(job.session.committed) + len(job.pending)
                try:
                    verdict = finish_round(job, logits[i])
                    results[i] = RoundResult(verdict, (t_start - job.enqueued) * 1e3, forward_ms, len(live))
                    self.metrics.observe_round(len(job.decoded.tokens), int(verdict.accepted),
                                               len(job.session.committed) - before, streamed=job.step >= 0,
                                               new_round=job.step <= 0)
                except Exception as exc:
                    job.session.lm.truncate(job.logits_from + 1)
                    results[i] = exc if isinstance(exc, RequestError) else RequestError(
                        grpc.StatusCode.INVALID_ARGUMENT, f"verification failed: {exc}")
        return results


def memory_error(exc: Exception, during: str = "open") -> Exception:
    """A KVMemoryExhausted as the status a device understands; other errors unchanged."""
    if not isinstance(exc, KVMemoryExhausted):
        return exc
    if during == "open" and exc.never_fits:
        return RequestError(grpc.StatusCode.OUT_OF_RANGE, f"this prompt can never fit the edge's KV memory: {exc}")
    what = ("this open does not fit the edge's KV memory now" if during == "open" else
            "the session outgrew the edge's KV memory and was stopped")
    return RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{what} ({exc}); retry later")


def _resolve(future: asyncio.Future | None, result: object) -> None:
    if future is None or future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
