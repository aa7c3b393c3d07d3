"""The device side: a gRPC client of the edge and :class:`RemoteVerifier`, the engine's Verifier over the network.

``speculative_generate(prompt, DraftModelProposer(...), RemoteVerifier(...), policy, ...)`` runs the
same round loop as in-process verification. Faults:

- every call has a deadline (``rpc_timeout``; ``open_timeout`` for Open, which prefills the prompt);
- a lost or timed-out round (UNAVAILABLE, DEADLINE_EXCEEDED) is resent with the same round number;
  the edge answers a repeated round from its cache, so a verdict is never computed twice;
- if the edge lost the session (NOT_FOUND after a restart or idle expiry) or disagrees about where
  it stands (FAILED_PRECONDITION), the client reopens a session with everything committed so far and
  resends the round there;
- if the edge stays unreachable for ``unreachable_after`` seconds, :class:`EdgeUnavailableError` is
  raised carrying the tokens committed so far; any other refusal raises :class:`EdgeRejectedError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import torch

from gelato.decoding.sampling import SamplingParams, sample_from
from gelato.decoding.types import Draft, Verdict
from gelato.decoding.verifier import residual_distribution
from gelato.transport.auth import bearer_metadata, channel_credentials, read_pem
from gelato.transport.codec import decode_verdict, encode_draft, payload_config, sampling_to_proto
from gelato.wire.payload import PayloadConfig
from gelato.transport.errors import EdgeRejectedError, EdgeUnavailableError, TransportError
from gelato.wire.proto import gelato_pb2 as pb
from gelato.wire.proto import gelato_pb2_grpc as pb_grpc
from gelato.transport import server as _srv

log = logging.getLogger("gelato.transport.client")

TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
RESYNC = frozenset({grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION})


class EdgeClient:
    """A channel to one edge with bearer-token metadata, optional TLS and optional client interceptors."""

    def __init__(self, target: str, *, token: str | None = None, tls: bool = False,
                 root_ca: bytes | str | Path | None = None, server_name: str | None = None,
                 interceptors: Sequence[grpc.UnaryUnaryClientInterceptor] = (),
                 max_message_bytes: int = 4 * 1024 * 1024) -> None:
        self.target = target
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes),
                   # reconnect quickly after an edge restart
                   ("grpc.initial_reconnect_backoff_ms", 50), ("grpc.min_reconnect_backoff_ms", 50),
                   ("grpc.max_reconnect_backoff_ms", 500)]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if tls or root_ca is not None:
            ca = root_ca if isinstance(root_ca, (bytes, type(None))) else read_pem(root_ca)
            channel = grpc.secure_channel(target, channel_credentials(ca), options=options)
        else:
            channel = grpc.insecure_channel(target, options=options)
        self._raw_channel = channel
        self.channel = grpc.intercept_channel(channel, *interceptors) if interceptors else channel
        self.stub = pb_grpc.EdgeStub(self.channel)
        self.metadata = bearer_metadata(token)

    def wait_ready(self, timeout: float) -> None:
        grpc.channel_ready_future(self._raw_channel).result(timeout=timeout)

    def open(self, request: pb.OpenRequest, timeout: float) -> pb.OpenReply:
        return self.stub.Open(request, timeout=timeout, metadata=self.metadata)

    def verify(self, request: pb.DraftUp, timeout: float) -> tuple[pb.VerdictDown, dict[str, str]]:
        reply, call = self.stub.Verify.with_call(request, timeout=timeout, metadata=self.metadata)
        trailers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in (call.trailing_metadata() or ())}
        return reply, trailers

    def close_session(self, session: int, timeout: float) -> pb.CloseReply:
        return self.stub.Close(pb.CloseRequest(session=session), timeout=timeout, metadata=self.metadata)

    def health(self, timeout: float = 5.0) -> pb.HealthReply:
        return self.stub.Health(pb.HealthRequest(), timeout=timeout, metadata=self.metadata)

    def metrics(self, timeout: float = 5.0) -> dict:
        import json
        return json.loads(self.stub.Metrics(pb.MetricsRequest(), timeout=timeout, metadata=self.metadata).json)

    def close(self) -> None:
        self._raw_channel.close()

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class RoundTiming:
    """Client-side view of one round's network exchange (milliseconds, bytes)."""

    rpc_ms: float  # last (successful) attempt, request out to reply in
    total_ms: float  # including failed attempts, backoff and reopening
    server_ms: float  # edge handler time (queue + forward + verification)
    queue_ms: float
    forward_ms: float
    batch: int
    attempts: int
    reopened: int
    cached: bool
    up_bytes: int  # encoded DraftUp (protobuf payload, no HTTP/2 framing)
    down_bytes: int

    @property
    def network_ms(self) -> float:
        """rpc time not spent in the edge handler: serialization, gRPC/HTTP2, transport."""
        return max(0.0, self.rpc_ms - self.server_ms)


@dataclass
class RemoteStats:
    rounds: int = 0
    attempts: int = 0
    retries: int = 0
    reopens: int = 0
    opens: int = 0
    up_bytes: int = 0
    down_bytes: int = 0
    timings: list[RoundTiming] = field(default_factory=list)

    def summary(self) -> dict:
        t = self.timings
        mean = (lambda xs: sum(xs) / len(xs) if xs else 0.0)
        return {"rounds": self.rounds, "retries": self.retries, "reopens": self.reopens, "opens": self.opens,
                "up_bytes": self.up_bytes, "down_bytes": self.down_bytes,
                "rpc_ms_mean": mean([x.rpc_ms for x in t]), "server_ms_mean": mean([x.server_ms for x in t]),
                "network_ms_mean": mean([x.network_ms for x in t]), "forward_ms_mean": mean([x.forward_ms for x in t]),
                "queue_ms_mean": mean([x.queue_ms for x in t]), "batch_mean": mean([x.batch for x in t])}


class RemoteVerifier:
    """Verifier protocol over gRPC: ``verify(committed, draft) -> Verdict`` against an edge session.

    The session opens lazily on the first ``verify`` (with ``committed`` as the prompt) or explicitly
    with :meth:`open`. ``generator`` samples the residual on the device in the ``dssd`` payload mode.
    """

    def __init__(self, client: EdgeClient | str, params: SamplingParams, *, fingerprint: str, seed: int = 0,
                 payload: str | PayloadConfig = "compact", device_name: str = "device", max_new_tokens: int = 0,
                 rpc_timeout: float = 5.0, open_timeout: float = 60.0, unreachable_after: float = 30.0,
                 backoff_s: tuple[float, float] = (0.02, 0.5), max_resyncs: int = 3,
                 generator: torch.Generator | None = None, send_entropies: bool = False,
                 token: str | None = None) -> None:
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
        self.device_name = device_name
        self.max_new_tokens = max_new_tokens
        self.rpc_timeout = rpc_timeout
        self.open_timeout = open_timeout
        self.unreachable_after = unreachable_after
        self.backoff_s = backoff_s
        self.max_resyncs = max_resyncs
        self.generator = generator
        self.send_entropies = send_entropies
        self.stats = RemoteStats()
        self.session: int | None = None
        self.vocab_size: int | None = None
        self.max_draft_tokens: int | None = None
        self.model_name = ""
        self._round = 0
        self._edge_ids: list[int] = []  # what the edge holds as committed
        self._prompt_len: int | None = None
        self._committed: list[int] = []
        self._stale = False  # the edge lost or disagrees about the session: reopen before the next round
        self._old_lost = False  # the edge no longer has the session (NOT_FOUND): nothing to close

    # ------------------------------------------------------------------ session
    def open(self, prompt_ids: Sequence[int]) -> pb.OpenReply:
        """Open a session now (retrying transient failures); later verifies continue it."""
        committed = list(prompt_ids)
        if self._prompt_len is None:
            self._prompt_len = len(committed)
        self._committed = committed
        return self._call_with_retries(lambda: self._open(committed), resync=False)

    def _open(self, committed: list[int]) -> pb.OpenReply:
        request = pb.OpenRequest(prompt_ids=committed, sampling=sampling_to_proto(self.params, self.seed),
                                 device_name=self.device_name, tokenizer_fingerprint=self.fingerprint,
                                 max_new_tokens=max(0, self.max_new_tokens - (len(committed) - (self._prompt_len or 0))))
        old = self.session
        reply = self.client.open(request, timeout=self.open_timeout)
        self.session = reply.session
        self.vocab_size = reply.vocab_size
        self.max_draft_tokens = reply.max_draft_tokens
        self.model_name = reply.model_name
        self._round = 0
        self._edge_ids = list(committed)
        self._stale = False
        self.stats.opens += 1
        if old is not None:
            self.stats.reopens += 1
            log.info("reopened the edge session at %d committed tokens", len(committed))
        if old is not None and not self._old_lost:
            try:  # the edge still holds the old one (a resync, not a restart or expiry): free it now
                self.client.close_session(old, timeout=min(self.rpc_timeout, 1.0))
            except grpc.RpcError:
                pass
        self._old_lost = False
        return reply

    def close(self) -> None:
        """Close the edge session (best effort) and the channel if this verifier created it."""
        if self.session is not None:
            try:
                self.client.close_session(self.session, timeout=min(self.rpc_timeout, 2.0))
            except grpc.RpcError as exc:
                log.debug("closing session failed: %s", exc.code())
            self.session = None
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
        reply, trailers, request, rpc_ms = self._call_with_retries(lambda: self._verify_once(committed, draft))
        verdict = decode_verdict(reply, self.vocab_size or 0)
        if reply.accepted > len(draft.tokens) or reply.round != self._round or reply.session != self.session:
            raise TransportError(f"edge answered round {reply.round} with {reply.accepted} accepted for round "
                                 f"{self._round} of {len(draft.tokens)} tokens", committed, self._prompt_len)
        self._edge_ids = committed + draft.tokens[: verdict.accepted]
        if verdict.residual_p is None:
            self._edge_ids.append(verdict.token)
        else:  # DSSD: sample the residual here; the edge learns the token as a pending id next round
            if draft.q is None:
                raise TransportError("the edge sent a residual distribution but the draft has no q", committed,
                                     self._prompt_len)
            q = draft.q[verdict.accepted].to_dense(verdict.residual_p.shape[-1])
            verdict = Verdict(accepted=verdict.accepted,
                              token=sample_from(residual_distribution(verdict.residual_p, q), self.generator))
        f = (lambda k: float(trailers.get(k, 0.0) or 0.0))
        timing = RoundTiming(rpc_ms=rpc_ms, total_ms=(time.perf_counter() - t0) * 1e3,
                             server_ms=f(_srv.TRAILER_SERVER_MS), queue_ms=f(_srv.TRAILER_QUEUE_MS),
                             forward_ms=f(_srv.TRAILER_FORWARD_MS), batch=int(f(_srv.TRAILER_BATCH)),
                             attempts=self.stats.attempts - attempts0, reopened=self.stats.reopens - reopens0,
                             cached=trailers.get(_srv.TRAILER_CACHED) == "1",
                             up_bytes=request.ByteSize(), down_bytes=reply.ByteSize())
        self.stats.rounds += 1
        self.stats.up_bytes += timing.up_bytes
        self.stats.down_bytes += timing.down_bytes
        self.stats.timings.append(timing)
        return verdict

    def _verify_once(self, committed: list[int], draft: Draft):
        known = len(self._edge_ids)
        if (self.session is None or self._stale or known > len(committed) or committed[:known] != self._edge_ids
                or (self.max_draft_tokens is not None and len(committed) - known > self.max_draft_tokens + 1)):
            try:
                self._open(committed)  # first round, or resynchronise with what the device committed
            except grpc.RpcError as exc:
                if exc.code() in TRANSIENT:
                    raise
                raise EdgeRejectedError(exc.code(), exc.details(), committed, self._prompt_len or 0) from None
            known = len(committed)
        round_id = self._round + 1
        request = encode_draft(draft, session=self.session, round_id=round_id, position=len(committed),
                               pending_ids=committed[known:], cfg=self.payload)
        t = time.perf_counter()
        reply, trailers = self.client.verify(request, timeout=self.rpc_timeout)
        rpc_ms = (time.perf_counter() - t) * 1e3
        self._round = round_id
        return reply, trailers, request, rpc_ms

    def _call_with_retries(self, attempt, resync: bool = True):
        """Run ``attempt`` until it succeeds, retrying transient faults and resynchronising lost sessions."""
        first_failure: float | None = None
        resyncs = 0
        delay = self.backoff_s[0]
        while True:
            self.stats.attempts += 1
            try:
                return attempt()
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
                details = exc.details() if hasattr(exc, "details") else str(exc)
                committed = self._committed
                if code in TRANSIENT:
                    now = time.monotonic()
                    first_failure = first_failure or now
                    waited = now - first_failure
                    if waited >= self.unreachable_after:
                        raise EdgeUnavailableError(
                            f"edge {self.client.target} unreachable for {waited:.1f} s (last status {code.name}: "
                            f"{details}); {len(committed) - (self._prompt_len or 0)} tokens were committed",
                            committed, self._prompt_len or 0, last_code=code, waited_s=waited) from None
                    self.stats.retries += 1
                    log.debug("transient %s (%s); retrying in %.0f ms", code.name, details, delay * 1e3)
                    time.sleep(min(delay, max(0.0, self.unreachable_after - waited)))
                    delay = min(delay * 2, self.backoff_s[1])
                    continue
                if resync and code in RESYNC and resyncs < self.max_resyncs:
                    resyncs += 1
                    log.info("edge answered %s (%s): reopening the session", code.name, details)
                    self._stale = True  # reopen with everything committed so far, then resend the round
                    self._old_lost = code == grpc.StatusCode.NOT_FOUND
                    first_failure = None
                    continue
                raise EdgeRejectedError(code, details, committed, self._prompt_len or 0) from None
