"""The device side: :class:`RemoteVerifier`, the engine's Verifier over one ``Generate`` stream per generation.

``generate(prompt, DraftModelProposer(...), RemoteVerifier(...), policy, ...)`` runs the
same round loop as in-process verification. Public API: construct, ``open(prompt_ids)`` (optional),
``verify(committed, draft) -> Verdict`` (one thread at a time; any thread; the verdict carries the round's
:class:`~gelato.decoding.types.RoundMeasurement`, also kept in ``stats``), ``stream(committed, n, on_token)
-> Burst`` (:mod:`gelato.device.bursts`: the edge generates up to ``n`` tokens itself and streams each; a stream dropped mid-burst
resumes on a new one with the tokens received so far committed, and asks for the rest), ``close()`` (from any thread,
also while a ``verify`` waits: that call then raises :class:`EdgeCancelledError`). Faults:

- every round waits at most ``rpc_timeout`` for its verdict; an open, which prefills, waits while the edge
  has acknowledged it (stream headers, sent on arrival) up to ``open_timeout + open_s_per_token x prompt
  tokens`` (60 s + 20 ms per token), however little of the unreachable window is left;
- a dropped stream (the edge restarted, the link broke, a reply is late) is resumed on a new stream that
  opens a session with everything committed so far: the output is the same as without the drop;
- NOT_FOUND (idle expiry), FAILED_PRECONDITION (the edge disagrees about the position) and INTERNAL (an
  edge bug, or the cluster replica holding the stream died) resynchronise the same way, at most
  ``max_resyncs`` times a round (INTERNAL after a backoff); RESOURCE_EXHAUSTED (edge or quota full) is retried with backoff for ``busy_after`` s;
- if the edge stays unreachable for ``unreachable_after`` seconds, counted from the round's first
  attempt, :class:`EdgeUnavailableError` is raised carrying the tokens committed so far; a TLS handshake
  failure raises :class:`EdgeTLSError` at once; any other refusal raises :class:`EdgeRejectedError`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace

import grpc
import torch

from gelato.decoding.payload_modes import PayloadMode
from gelato.decoding.rejection import sample_deferred_residual, sample_from_draws
from gelato.decoding.sampling import SamplingParams
from gelato.decoding.seeds import residual_generator, verification_seed
from gelato.decoding.types import Draft, RoundCommit, Verdict
from gelato.device.bursts import BurstRounds
from gelato.device.edge_client import EdgeClient, EdgeStream, is_tls_failure, looks_like_plaintext_to_tls, speaks_tls
from gelato.device.messages import RemoteStats, draft_message, measure, message_measurement
from gelato.wire.codec import (
    MAX_STREAM_TOKENS,
    decode_verdict,
    encode_redraw,
    payload_config,
    payload_to_proto,
    sampling_to_proto,
)
from gelato.wire.errors import EdgeCancelledError, EdgeRejectedError, EdgeTLSError, EdgeUnavailableError, TransportError
from gelato.wire.payload import PayloadConfig
from gelato.wire.proto import gelato_pb2 as pb

__all__ = ["EdgeClient", "RemoteStats", "RemoteVerifier", "draft_message", "measure", "message_measurement"]

log = logging.getLogger("gelato.device.client")

TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})
# INTERNAL: an edge bug, or (behind an ingress such as gelato cluster's Ray Serve) the replica holding the
# stream died; both end the stream, and a resume on a new one (at most max_resyncs times) loses nothing.
LOST = grpc.StatusCode.INTERNAL
RESYNC = frozenset({grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION, LOST})
BUSY = grpc.StatusCode.RESOURCE_EXHAUSTED


class RemoteVerifier(BurstRounds):
    """Verifier protocol over gRPC: ``verify(committed, draft) -> Verdict`` on one edge stream.

    The session opens lazily on the first ``verify`` (with ``committed`` as the prompt) or explicitly
    with :meth:`open`. ``generator`` samples the residual on the device in the ``dssd`` payload mode.
    """

    def __init__(self, client: EdgeClient | str, params: SamplingParams, *, fingerprint: str, seed: int = 0,
                 payload: str | PayloadConfig = PayloadMode.COMPACT, device_name: str = "device", max_new_tokens: int = 0,
                 rpc_timeout: float = 5.0, open_timeout: float = 60.0, open_s_per_token: float = 0.02,
                 unreachable_after: float = 30.0,
                 busy_after: float = 60.0, backoff_s: tuple[float, float] = (0.02, 0.5), max_resyncs: int = 3,
                 generator: torch.Generator | None = None, send_entropies: bool = False,
                 token: str | None = None, report_times: bool = True, stop_ids: Sequence[int] = ()) -> None:
        self.client = client if isinstance(client, EdgeClient) else EdgeClient(client, token=token)
        self._owns_client = not isinstance(client, EdgeClient)
        self.params = params
        self.fingerprint = fingerprint
        self.seed = seed
        self.payload = payload if isinstance(payload, PayloadConfig) else payload_config(
            payload, params, send_entropies=send_entropies)
        if self.payload.greedy != params.greedy:
            raise ValueError(f"payload config says greedy={self.payload.greedy} but sampling temperature is "
                             f"{params.temperature}")
        self.payload = self.payload.model_copy(update={"session": 0})  # the stream is the session
        self.device_name = device_name
        self.max_new_tokens = max_new_tokens
        self.rpc_timeout = rpc_timeout
        self.open_timeout = open_timeout
        self.open_s_per_token = open_s_per_token
        self.unreachable_after = unreachable_after
        self.busy_after = busy_after
        self.backoff_s = backoff_s
        self.max_resyncs = max_resyncs
        # the device's DSSD residual stream: the seed rule's unless given
        self.generator = generator if generator is not None else residual_generator(seed)
        self.report_times = report_times
        self.stop_ids = frozenset(stop_ids)  # the edge ends a burst after one (sent at open)
        self.max_stream = MAX_STREAM_TOKENS  # the most tokens one burst asks for
        self.stats = RemoteStats()
        self.vocab_size: int | None = None
        self.max_draft: int | None = None  # the edge's largest draft per round (its open reply; None: unbounded)
        self.model_name = ""
        self._stream: EdgeStream | None = None
        self._round = 0
        self._edge_ids: list[int] = []  # what the edge holds as committed on the current stream
        self._prompt_len: int | None = None
        self._committed: list[int] = []
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._busy = False  # a verify or open is using the stream

    @property
    def session_open(self) -> bool:
        return self._stream is not None

    # ------------------------------------------------------------------ session
    def open(self, prompt_ids: Sequence[int]) -> pb.OpenReply:
        """Open the stream and its session now (retrying transient failures); later verifies continue it."""
        committed = list(prompt_ids)
        if self._prompt_len is None:
            self._prompt_len = len(committed)
        self._committed = committed
        return self._with_retries(lambda remaining: self._open(committed, remaining), resync=False)

    def _open(self, committed: list[int], remaining: float) -> pb.OpenReply:
        self._drop_stream()
        seed = verification_seed(self.seed, self._prompt_len or len(committed), len(committed))
        request = pb.OpenRequest(prompt_ids=committed, sampling=sampling_to_proto(self.params, seed),
                                 device_name=self.device_name, tokenizer_fingerprint=self.fingerprint,
                                 report_times=self.report_times, stop_ids=sorted(self.stop_ids),
                                 payload=payload_to_proto(self.payload),
                                 max_new_tokens=max(0, self.max_new_tokens - (len(committed) - (self._prompt_len or 0))))
        stream = self.client.open_stream()
        with self._lock:
            if self._cancelled.is_set():
                stream.cancel()
                raise EdgeCancelledError("the generation was cancelled", committed, self._prompt_len or 0)
            self._stream = stream
        # an edge that acknowledged the open is prefilling, not unreachable: it gets open_timeout plus
        # open_s_per_token per prompt token, however little of the unreachable window is left
        patience = self.open_timeout + self.open_s_per_token * len(committed)
        down = stream.exchange(pb.StreamUp(open=request), min(patience, max(remaining, 1e-3)), patience=patience)
        if down.WhichOneof("kind") != "opened":
            raise TransportError(f"the edge answered open with {down.WhichOneof('kind')}", committed,
                                 self._prompt_len or 0)
        reply = down.opened
        self.vocab_size, self.model_name = reply.vocab_size, reply.model_name
        self.max_draft = int(reply.max_draft_tokens) or None
        self._round = 0
        self._edge_ids = list(committed)
        self.stats.opens += 1
        if self.stats.opens > 1:
            self.stats.reopens += 1
            log.info("resumed on a new stream at %d committed tokens", len(committed))
        return reply

    def _drop_stream(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.cancel()

    def cancel(self) -> None:
        """End the stream at once, from any thread, without a graceful close (a waiting open or verify raises
        EdgeCancelledError; the edge drops the session and any prefill). :meth:`close` still frees the rest."""
        self._cancelled.set()
        self._drop_stream()

    def close(self) -> None:
        """End the stream (the edge frees the session) and the channel if this verifier created it.
        Safe from any thread; a ``verify`` waiting meanwhile raises :class:`EdgeCancelledError`."""
        self._cancelled.set()
        with self._lock:
            stream, self._stream = self._stream, None
            idle = not self._busy
        if stream is not None:
            if idle:  # no round in flight: a graceful close, so the edge has freed the session on return
                try:
                    stream.exchange(pb.StreamUp(close=pb.CloseRequest()), min(self.rpc_timeout, 1.0))
                except grpc.RpcError as exc:
                    log.debug("closing the stream failed: %s", exc.code())
            stream.end()
            stream.cancel()
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> RemoteVerifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ verify
    def verify(self, committed: Sequence[int], draft: Draft) -> Verdict:
        committed = list(committed)
        if self._prompt_len is None:
            self._prompt_len = len(committed)
        self._committed = committed
        t0 = time.perf_counter()
        attempts0, reopens0 = self.stats.attempts, self.stats.reopens
        down, up, rpc_ms = self._with_retries(lambda remaining: self._verify_once(committed, draft, remaining))
        reply = down.verdict
        try:
            verdict = decode_verdict(reply, self.vocab_size or 0)
        except ValueError as exc:  # keep what was committed before it; never a traceback
            raise TransportError(str(exc), committed, self._prompt_len or 0) from None
        if reply.accepted > len(draft.tokens) or reply.round != self._round:
            raise TransportError(f"edge answered round {reply.round} with {reply.accepted} accepted for round "
                                 f"{self._round} of {len(draft.tokens)} tokens", committed, self._prompt_len)
        self._edge_ids = committed + RoundCommit.of(draft.tokens, verdict).edge_ids
        extra = []  # the draws payload's fallback exchanges: (up, down) of each
        if verdict.draws is not None:
            if self.payload.mode != PayloadMode.DRAWS:
                raise TransportError(f"the edge sent draws to a {self.payload.mode} session", committed,
                                     self._prompt_len or 0)
            verdict = self._accept_draws(committed, draft, verdict, extra)
        if verdict.deferred:  # DSSD: sample the residual here; the edge learns the token as a pending id next round
            try:
                verdict = sample_deferred_residual(verdict, draft.q, self.generator)
            except ValueError as exc:
                raise TransportError(f"the edge sent a residual distribution: {exc}", committed,
                                     self._prompt_len) from None
        times = down.times
        timing = measure(up, down, extra, rpc_ms=rpc_ms, total_ms=(time.perf_counter() - t0) * 1e3,
                         server_ms=times.server_ms,
                         queue_ms=times.queue_ms, forward_ms=times.forward_ms, batch=times.batch,
                         attempts=self.stats.attempts - attempts0, reopened=self.stats.reopens - reopens0)
        self.stats.rounds += 1
        self.stats.up_bytes += timing.up_bytes
        self.stats.down_bytes += timing.down_bytes
        self.stats.timings.append(timing)
        return replace(verdict, measured=timing)  # the round's measurement travels with its verdict

    def _accept_draws(self, committed: list[int], draft: Draft, verdict: Verdict, extra: list) -> Verdict:
        """The draws payload: accept one of the verdict's draws with the whole q (decoding/rejection.py); while every
        draw fails, one more exchange (a redraw round) fetches M fresh ones. Resumes like any round."""
        base = committed + list(draft.tokens[:verdict.accepted])  # what the edge holds now
        try:
            return sample_from_draws(verdict, draft.q, self.vocab_size or 0, self.generator,
                                     lambda dense: self._redraw(base, extra, dense))[0]
        except ValueError as exc:
            raise TransportError(f"the edge sent draws: {exc}", committed, self._prompt_len or 0) from None

    def _redraw(self, base: list[int], extra: list, dense: bool = False):
        """One fallback exchange: M fresh draws of the p row after ``base`` (the edge's committed tokens); ``dense``:
        that row itself (a tensor over the vocabulary)."""
        self._committed = base
        up, down = self._with_retries(lambda remaining: self._redraw_once(base, remaining, dense))
        extra.append((up, down))
        self.stats.redraws += 1
        try:
            fresh = decode_verdict(down.verdict, self.vocab_size or 0)
        except ValueError as exc:
            raise TransportError(str(exc), base, self._prompt_len or 0) from None
        if dense and fresh.residual_p is not None:
            return fresh.residual_p
        if dense or fresh.draws is None:
            raise TransportError(f"the edge answered a {'dense ' if dense else ''}redraw without "
                                 f"{'its p row' if dense else 'draws'}", base, self._prompt_len or 0)
        return fresh.draws

    def _redraw_once(self, base: list[int], remaining: float, dense: bool = False):
        if self._stream is None or self._edge_ids != base:
            self._open(base, remaining)  # the stream dropped: a fresh session at what is committed
        up = pb.StreamUp(draft=encode_redraw(round_id=self._round + 1, position=len(base), dense=dense))
        down = self._stream.exchange(up, self.rpc_timeout)
        if down.WhichOneof("kind") != "verdict" or down.verdict.round != self._round + 1:
            raise TransportError("the edge answered a redraw with something else than its verdict", base,
                                 self._prompt_len or 0)
        self._round += 1
        return up, down

    def _verify_once(self, committed: list[int], draft: Draft, remaining: float):
        known = len(self._edge_ids)
        if (self._stream is None or known > len(committed) or committed[:known] != self._edge_ids
                or (self.max_draft is not None and len(committed) - known > self.max_draft + 1)):
            self._open(committed, remaining)  # first round, or resume with what the device committed
            known = len(committed)
        up = draft_message(committed, draft, self._round + 1, self.payload, pending=len(committed) - known)
        t = time.perf_counter()
        down = self._stream.exchange(up, self.rpc_timeout)
        rpc_ms = (time.perf_counter() - t) * 1e3
        if down.WhichOneof("kind") != "verdict":
            raise TransportError(f"the edge answered a round with {down.WhichOneof('kind')}", committed,
                                 self._prompt_len or 0)
        self._round += 1
        return down, up, rpc_ms

    def _with_retries(self, attempt, resync: bool = True):
        """Run ``attempt(remaining_s)`` until it succeeds; every failure drops the stream, and the next
        attempt resumes on a new one. The unreachable window starts at the first attempt."""
        with self._lock:
            self._busy = True
        try:
            return self._retry_loop(attempt, resync)
        finally:
            with self._lock:
                self._busy = False

    def _retry_loop(self, attempt, resync: bool):
        start = time.monotonic()
        resyncs = 0
        closed_at_once = 0  # consecutive "socket closed" failures of a plaintext client
        delay = self.backoff_s[0]
        while True:
            committed = self._committed
            if self._cancelled.is_set():
                raise EdgeCancelledError("the generation was cancelled", committed, self._prompt_len or 0)
            self.stats.attempts += 1
            waited = time.monotonic() - start
            try:
                return attempt(max(self.unreachable_after - waited, 0.0))
            except grpc.RpcError as exc:
                self._drop_stream()
                code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
                details = exc.details() if hasattr(exc, "details") else str(exc)
                if self._cancelled.is_set():
                    raise EdgeCancelledError("the generation was cancelled", committed,
                                             self._prompt_len or 0) from None
                if code == grpc.StatusCode.UNAVAILABLE and is_tls_failure(details):
                    raise EdgeTLSError(f"TLS handshake with edge {self.client.target} failed ({details}); check "
                                       "--tls-ca, --server-name and that the edge serves TLS", committed,
                                       self._prompt_len or 0) from None
                closed_at_once = closed_at_once + 1 if (not self.client.tls and not self.client.ever_ready
                                                        and code == grpc.StatusCode.UNAVAILABLE
                                                        and looks_like_plaintext_to_tls(details)) else 0
                if closed_at_once >= 3 and speaks_tls(self.client.target):
                    raise EdgeTLSError(f"edge {self.client.target} closes every plaintext connection at once: it "
                                       "probably serves TLS (pass --tls-ca or --tls)", committed,
                                       self._prompt_len or 0) from None
                waited = time.monotonic() - start
                if code in TRANSIENT or code == BUSY:
                    window = self.busy_after if code == BUSY else self.unreachable_after
                    if waited >= window:
                        if code == BUSY:
                            raise EdgeRejectedError(code, f"{details} (still busy after {waited:.1f} s)",
                                                    committed, self._prompt_len or 0) from None
                        raise EdgeUnavailableError(
                            f"edge {self.client.target} unreachable for {waited:.1f} s (last status {code.name}: "
                            f"{details}); {len(committed) - (self._prompt_len or 0)} tokens were committed",
                            committed, self._prompt_len or 0, last_code=code, waited_s=waited) from None
                    if code == BUSY:
                        self.stats.busy_retries += 1
                    self.stats.retries += 1
                    log.debug("%s (%s); retrying in %.0f ms", code.name, details, delay * 1e3)
                    time.sleep(min(delay, max(0.0, window - waited)))
                    delay = min(delay * 2, self.backoff_s[1])
                    continue
                if resync and code in RESYNC and resyncs < self.max_resyncs:
                    resyncs += 1
                    log.info("edge answered %s (%s): resuming on a new stream", code.name, details)
                    if code == LOST:  # the edge process behind an ingress died: give the ingress time to notice
                        self.stats.retries += 1
                        time.sleep(delay)
                        delay = min(delay * 2, self.backoff_s[1])
                    continue
                raise EdgeRejectedError(code, details, committed, self._prompt_len or 0) from None
