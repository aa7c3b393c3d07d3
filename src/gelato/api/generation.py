"""One request's generation: the synchronous round loop in a worker thread, its rounds as async events.

The worker runs the round loop (:func:`gelato.generation.generate`, drafting ahead for the pipelined
policies) and hands each committed round's record to the event loop (an
``asyncio.Queue`` fed through ``call_soon_threadsafe``). :meth:`GenerationJob.cancel` makes the next
round raise :class:`GenerationCancelled` inside the loop; the verifier (an edge session) is closed in a
``finally`` whatever happened.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from gelato.api.backend import GenerationCancelled, GenerationParts
from gelato.decoding.types import RoundRecord
from gelato.generation import generate


@dataclass(frozen=True)
class RoundEvent:
    """A committed round: its record (``record.tokens``: the ids it committed; ``record.measured``: its
    messages' bytes, measured by the verifier)."""

    record: RoundRecord
    joules: float | None  # modelled device energy of the round (None without a system model)
    at: float  # time.perf_counter() when the round was committed

    @property
    def up_bytes(self) -> int:
        return self.record.measured.up_bytes if self.record.measured is not None else 0

    @property
    def down_bytes(self) -> int:
        return self.record.measured.down_bytes if self.record.measured is not None else 0


@dataclass(frozen=True)
class TokenEvent:
    """One token of an edge burst, as soon as it arrived (its round's RoundEvent follows the burst's last)."""

    token: int
    at: float


@dataclass(frozen=True)
class DoneEvent:
    stop_reason: str  # "eos" | "length" | "cancelled" | "error"
    error: BaseException | None = None


class Cancellation:
    """A cancel flag (call it: is it set?) that also runs callbacks when set, from any thread: an edge open
    waiting for its prefill is ended at once, not after it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], object]] = []

    def __call__(self) -> bool:
        return self._event.is_set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def on_cancel(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` when cancelled (now, if already)."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(fn)
                return
        fn()

    def set(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn()
            except Exception:  # best effort: the job also checks the flag
                pass


class GenerationJob:
    def __init__(self, make_parts: Callable[[Callable[[], bool]], GenerationParts], prompt_ids: Sequence[int],
                 max_new_tokens: int, eos_token_id: int | None) -> None:
        """``make_parts(cancelled)`` builds the request's proposer/verifier/policy/clock (in the worker)."""
        self.make_parts = make_parts
        self.prompt_ids = list(prompt_ids)
        self.max_new_tokens = max_new_tokens
        self.eos_token_id = eos_token_id
        self._cancel = Cancellation()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.finished = threading.Event()
        self._finish_lock = threading.Lock()
        self._on_finished: list[Callable[[], object]] = []

    def start(self, executor: Executor) -> None:
        self._loop = asyncio.get_running_loop()
        executor.submit(self._run)

    def cancel(self) -> None:
        self._cancel.set()

    def when_finished(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` on the event loop once the worker thread is done with this job (now, if it is)."""
        with self._finish_lock:
            if not self.finished.is_set():
                self._on_finished.append(fn)
                return
        fn()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    async def events(self) -> AsyncIterator[RoundEvent | TokenEvent | DoneEvent]:
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, DoneEvent):
                return

    # ---------------------------------------------------------------- worker thread
    def _emit(self, event) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    def _run(self) -> None:
        parts = None
        try:
            if self._cancel.is_set():  # abandoned while queued: never open a session or prefill for it
                raise GenerationCancelled()
            parts = self.make_parts(self._cancel)

            def on_round(record: RoundRecord) -> None:
                joules = record.charge.e_round if record.charge is not None else None
                self._emit(RoundEvent(record, joules, time.perf_counter()))
                if self._cancel.is_set():
                    raise GenerationCancelled()

            def on_token(token: int) -> None:  # a burst's token, streamed at once
                self._emit(TokenEvent(token, time.perf_counter()))

            result = generate(self.prompt_ids, parts.proposer, parts.verifier, parts.policy, self.max_new_tokens,
                              self.eos_token_id, parts.clock, background_verify=True, on_round=on_round,
                              on_token=on_token)
            self._emit(DoneEvent(result.stop_reason))
        except GenerationCancelled:
            self._emit(DoneEvent("cancelled"))
        except BaseException as exc:  # reported to the client as an error event / 5xx
            self._emit(DoneEvent("cancelled") if self._cancel.is_set() else DoneEvent("error", exc))
        finally:
            if parts is not None:
                try:
                    parts.close()
                except Exception:  # closing is best effort; the edge expires idle sessions anyway
                    pass
            with self._finish_lock:
                self.finished.set()
                callbacks, self._on_finished = self._on_finished, []
            for fn in callbacks:
                self._loop.call_soon_threadsafe(fn)
