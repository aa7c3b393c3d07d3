"""The edge server: sessions, (batched) verification and metrics behind the ``gelato.v1.Edge`` gRPC service.

Start it from in-memory objects (tests, benchmarks)::

    server = EdgeServer(target_model, fingerprint=synthetic_fingerprint(64), config=EdgeConfig(max_batch=8))
    with EdgeServerThread(server) as running:      # background event loop, OS-picked port
        print(running.port)

or from a model directory with :func:`serve` (the ``gelato serve`` command). Requests are parsed by the
handlers themselves, so malformed bytes get INVALID_ARGUMENT (not a generic INTERNAL), and every
refusal carries a precise status:

==================== =============================================================================
UNAUTHENTICATED      missing, malformed or unknown bearer token
INVALID_ARGUMENT     undecodable message, empty/oversized prompt, draft longer than the limit, ids
                     outside the vocabulary, bad sampling settings or q distributions
NOT_FOUND            unknown session (closed, expired, or the edge restarted): reopen and resend
PERMISSION_DENIED    the session belongs to another device
FAILED_PRECONDITION  tokenizer fingerprint mismatch; a draft whose position or round does not follow
                     the session (the device resynchronises by reopening)
RESOURCE_EXHAUSTED   all sessions in use; message larger than the size limit (gRPC's own check)
OUT_OF_RANGE         the session would outgrow the model's context
UNAVAILABLE          the edge is shutting down
==================== =============================================================================
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import torch
from google.protobuf.message import DecodeError

from gelato.models.cached import CachedCausalLM
from gelato.decoding.sampling import processed_probs, sample_from
from gelato.decoding.types import Verdict
from gelato.decoding.verifier import residual_distribution, verify_draft, verify_stochastic
from gelato.transport.aio import background_loop
from gelato.transport.auth import TokenAuthenticator, load_tokens, read_pem, server_credentials
from gelato.transport.batching import BatchJob, BatchOutcome, VerifyBatcher, batched_feed, supports_batching
from gelato.transport.codec import DecodedDraft, decode_draft, encode_verdict, sampling_from_proto
from gelato.transport.errors import RequestError
from gelato.wire.payload import PayloadConfig
from gelato.wire.proto import gelato_pb2 as pb
from gelato.transport.sessions import Session, SessionStore, session_seed
from gelato.transport.stats import EdgeMetrics

log = logging.getLogger("gelato.transport.server")

SERVICE = "gelato.v1.Edge"
TRAILER_SERVER_MS = "gelato-server-ms"
TRAILER_QUEUE_MS = "gelato-queue-ms"
TRAILER_FORWARD_MS = "gelato-forward-ms"
TRAILER_BATCH = "gelato-batch"
TRAILER_CACHED = "gelato-cached"


@dataclass
class EdgeConfig:
    max_sessions: int = 64
    max_prompt_tokens: int = 8192  # Open (a resumed session's prompt is everything committed so far)
    max_draft_tokens: int = 32  # per round
    max_context_tokens: int | None = None  # default: the model's max_position_embeddings
    idle_timeout_s: float = 600.0  # sessions unused this long are closed and their cache freed
    max_batch: int = 8  # 1 = unbatched verification
    batch_window_ms: float = 8.0  # waits only while other sessions could still send
    max_message_bytes: int = 4 * 1024 * 1024
    tokens: Mapping[str, str] | None = None  # bearer token -> device name; None disables auth
    tls_cert_chain: bytes | None = None
    tls_private_key: bytes | None = None
    model_name: str = "target"
    paper_payload: PayloadConfig | None = None  # bit widths of paper_topp drafts (default PayloadConfig's)
    grace_s: float = 1.0  # shutdown grace for in-flight calls

    def __post_init__(self) -> None:
        for name in ("max_sessions", "max_prompt_tokens", "max_draft_tokens", "max_batch", "max_message_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_window_ms < 0 or self.idle_timeout_s <= 0:
            raise ValueError("batch_window_ms must be >= 0 and idle_timeout_s > 0")
        if (self.tls_cert_chain is None) != (self.tls_private_key is None):
            raise ValueError("TLS needs both a certificate chain and its private key")


@dataclass
class _JobInfo:
    session: Session
    decoded: DecodedDraft
    round_id: int
    key: tuple
    pending: list[int]


@dataclass
class _RoundResult:
    reply: bytes
    queue_ms: float
    forward_ms: float
    batch: int


class EdgeServer:
    """Target model + sessions + batcher; ``await start()`` serves on a port, ``await stop()`` ends."""

    def __init__(self, model: torch.nn.Module, *, fingerprint: str, vocab_size: int | None = None,
                 config: EdgeConfig | None = None) -> None:
        self.config = config or EdgeConfig()
        self.model = model.eval()
        self.fingerprint = fingerprint
        self.vocab_size = int(vocab_size or model.config.vocab_size)
        if not 0 < self.vocab_size <= int(model.config.vocab_size):
            raise ValueError(f"vocab_size {self.vocab_size} must be in 1..{model.config.vocab_size} "
                             "(the model's output width)")
        mpe = getattr(model.config, "max_position_embeddings", None)
        self.max_context = int(self.config.max_context_tokens or mpe or (1 << 31))
        self.store = SessionStore(self.config.max_sessions)
        self.metrics = EdgeMetrics()
        self.auth = TokenAuthenticator(self.config.tokens)
        self._live_caches: weakref.WeakSet[CachedCausalLM] = weakref.WeakSet()
        self.batchable = supports_batching(CachedCausalLM(self.model, self.vocab_size))
        if self.config.max_batch > 1 and not self.batchable:
            log.warning("the model's KV cache is not a plain DynamicCache: verifying one session at a time")
        self.executor: ThreadPoolExecutor | None = None
        self.batcher: VerifyBatcher | None = None
        self._server: grpc.aio.Server | None = None
        self._expiry: asyncio.Task | None = None
        self.port: int | None = None
        self.stopping = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        cfg = self.config
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gelato-model")
        self.batcher = VerifyBatcher(self._run_batch, self.executor,
                                     max_batch=cfg.max_batch if self.batchable else 1,
                                     window_s=cfg.batch_window_ms / 1000.0,
                                     others_waiting=lambda n: self._idle_sessions_could_send(n))
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", cfg.max_message_bytes),
                                          ("grpc.max_send_message_length", cfg.max_message_bytes),
                                          ("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((self._handlers(),))
        address = f"{host}:{port}"
        if cfg.tls_cert_chain is not None:
            bound = server.add_secure_port(address, server_credentials(cfg.tls_cert_chain, cfg.tls_private_key))
        else:
            bound = server.add_insecure_port(address)
        if not bound:
            raise OSError(f"could not bind the edge server to {address}")
        await server.start()
        self._server = server
        self.port = bound
        self.batcher.start()
        self._expiry = asyncio.get_running_loop().create_task(self._expire_loop(), name="gelato-session-expiry")
        log.info("edge serving %s on %s:%d (%s, batch<=%d, window %.1f ms, auth %s, TLS %s)", cfg.model_name, host,
                 bound, "batched" if self.batcher.max_batch > 1 else "unbatched", self.batcher.max_batch,
                 cfg.batch_window_ms, "on" if self.auth.enabled else "off",
                 "on" if cfg.tls_cert_chain else "off")
        return bound

    async def stop(self, grace: float | None = None) -> None:
        self.stopping = True
        if self._expiry is not None:
            self._expiry.cancel()
        if self._server is not None:
            await self._server.stop(self.config.grace_s if grace is None else grace)
        if self.batcher is not None:
            await self.batcher.stop()
        for session in self.store:
            self.store.remove(session.id)
            if self.executor is not None:
                await asyncio.get_running_loop().run_in_executor(self.executor, session.free)
        if self.executor is not None:
            self.executor.shutdown(wait=True)
        self._server = None

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    # ------------------------------------------------------------------ introspection
    @property
    def active_sessions(self) -> int:
        return len(self.store)

    def cache_tokens(self) -> int:
        """KV cache positions held by every live session cache (open or not yet collected)."""
        return sum(lm.cache_len for lm in list(self._live_caches))

    def metrics_dict(self) -> dict:
        d = self.metrics.to_dict(self.active_sessions, self.cache_tokens())
        d.update(model_name=self.config.model_name, vocab_size=self.vocab_size,
                 max_batch=self.batcher.max_batch if self.batcher else self.config.max_batch,
                 batch_window_ms=self.config.batch_window_ms)
        return d

    def _idle_sessions_could_send(self, in_batch: int) -> bool:
        """Worth waiting for more requests only if other sessions exist besides those already batched."""
        return len(self.store) > in_batch

    # ------------------------------------------------------------------ RPC plumbing
    def _handlers(self) -> grpc.GenericRpcHandler:
        def h(fn):
            return grpc.unary_unary_rpc_method_handler(fn)  # raw bytes in and out: we parse ourselves
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Open": h(self._rpc("Open", pb.OpenRequest, self._open)),
            "Verify": h(self._rpc("Verify", pb.DraftUp, self._verify)),
            "Close": h(self._rpc("Close", pb.CloseRequest, self._close)),
            "Health": h(self._rpc("Health", pb.HealthRequest, self._health)),
            "Metrics": h(self._rpc("Metrics", pb.MetricsRequest, self._metrics)),
        })

    def _rpc(self, name: str, message_type, impl):
        async def handler(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            try:
                if self.stopping:
                    raise RequestError(grpc.StatusCode.UNAVAILABLE, "the edge is shutting down")
                device = self.auth.device_of(context.invocation_metadata())
                if not isinstance(raw, (bytes, bytearray)):
                    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{name}: request is not bytes")
                try:
                    request = message_type.FromString(bytes(raw))
                except (DecodeError, ValueError) as exc:
                    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"malformed {message_type.DESCRIPTOR.name} ({len(raw)} bytes): {exc}") from None
                return await impl(request, context, device)
            except RequestError as exc:
                self.metrics.count("errors", exc.code.name)
                await context.abort(exc.code, exc.message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: report it, keep serving
                log.exception("%s failed", name)
                self.metrics.count("errors", "INTERNAL")
                await context.abort(grpc.StatusCode.INTERNAL, f"{name} failed on the edge: {type(exc).__name__}: {exc}")
        return handler

    # ------------------------------------------------------------------ Open / Close
    async def _open(self, req: pb.OpenRequest, context, device: str | None) -> bytes:
        cfg = self.config
        if req.tokenizer_fingerprint != self.fingerprint:
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"tokenizer fingerprint mismatch: device {req.tokenizer_fingerprint or '(none)'!r} vs "
                               f"edge {self.fingerprint!r} (model {cfg.model_name}); device and edge must share "
                               "one vocabulary")
        params = sampling_from_proto(req.sampling)
        prompt = list(req.prompt_ids)
        if not prompt:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "the prompt is empty")
        if len(prompt) > cfg.max_prompt_tokens:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"prompt has {len(prompt)} tokens; this edge accepts at most {cfg.max_prompt_tokens}")
        bad = next((i for i, t in enumerate(prompt) if t >= self.vocab_size), None)
        if bad is not None:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"prompt_ids[{bad}] = {prompt[bad]} is outside the vocabulary (size {self.vocab_size})")
        if len(prompt) + req.max_new_tokens > self.max_context:
            raise RequestError(grpc.StatusCode.OUT_OF_RANGE,
                               f"prompt ({len(prompt)}) + max_new_tokens ({req.max_new_tokens}) exceeds the "
                               f"model context of {self.max_context} tokens")
        self.store.reserve_check()
        lm = CachedCausalLM(self.model, self.vocab_size)
        self._live_caches.add(lm)
        generator = torch.Generator().manual_seed(session_seed(req.sampling.seed, len(prompt)))
        session = Session(id=self.store.new_id(), lm=lm, committed=prompt, params=params, generator=generator,
                          owner=device, device_name=req.device_name or (device or ""), prompt_len=len(prompt),
                          max_new_tokens=req.max_new_tokens)
        self.store.add(session)
        try:
            if len(prompt) > 1:  # the newest token is fed with the first draft
                await asyncio.get_running_loop().run_in_executor(self.executor, lm.feed, prompt[:-1])
        except BaseException:
            self.store.remove(session.id)
            raise
        self.metrics.count("sessions_opened")
        log.debug("opened session %#x for %s (%d prompt tokens)", session.id, session.device_name, len(prompt))
        return pb.OpenReply(session=session.id, vocab_size=self.vocab_size, max_draft_tokens=cfg.max_draft_tokens,
                            model_name=cfg.model_name).SerializeToString()

    async def _release(self, session: Session) -> None:
        self.store.remove(session.id)
        await asyncio.get_running_loop().run_in_executor(self.executor, session.free)

    async def _close(self, req: pb.CloseRequest, context, device: str | None) -> bytes:
        session = self.store.get(req.session, device)
        await self._release(session)
        self.metrics.count("sessions_closed")
        return pb.CloseReply(rounds=session.rounds, tokens=session.tokens).SerializeToString()

    async def _expire_loop(self) -> None:
        timeout = self.config.idle_timeout_s
        interval = min(max(timeout / 4.0, 0.05), 5.0)
        while True:
            await asyncio.sleep(interval)
            for session in self.store.idle(timeout):
                log.info("session %#x idle for %.1f s: closing it", session.id, timeout)
                await self._release(session)
                self.metrics.count("sessions_expired")

    # ------------------------------------------------------------------ Verify
    async def _verify(self, req: pb.DraftUp, context, device: str | None) -> bytes:
        t0 = time.perf_counter()
        session = self.store.get(req.session, device)
        session.touch()
        key = (req.position, tuple(req.pending_ids), tuple(req.token_ids))
        round_id = req.round
        if session.inflight is not None:
            running_round, running_key, future = session.inflight
            if running_round == round_id and running_key == key:  # a retry while the original still runs
                self.metrics.count("retries_served")
                result = await asyncio.shield(future)
                return self._reply(context, result, t0, cached=True)
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"round {running_round} of this session is still being verified; got round {round_id}")
        if session.last_reply and round_id == session.last_round:
            if key != session.last_request:
                raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                                   f"round {round_id} was already verified with a different draft")
            self.metrics.count("retries_served")
            context.set_trailing_metadata(((TRAILER_CACHED, "1"),
                                           (TRAILER_SERVER_MS, f"{(time.perf_counter() - t0) * 1e3:.3f}")))
            return session.last_reply
        if round_id != session.last_round + 1:
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"round {round_id} is out of order: the session's next round is {session.last_round + 1}")
        n_draft = len(req.token_ids)
        if n_draft > self.config.max_draft_tokens:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"draft has {n_draft} tokens; this edge verifies at most "
                               f"{self.config.max_draft_tokens} per round")
        if len(req.pending_ids) > self.config.max_draft_tokens + 1:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"{len(req.pending_ids)} pending ids; at most {self.config.max_draft_tokens + 1} "
                               "per round (reopen the session to resynchronise)")
        decoded = decode_draft(req, session.params, self.vocab_size, self.config.paper_payload)
        held = len(session.committed)
        pending = list(req.pending_ids)
        if req.position != held + len(pending):
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"position mismatch: the draft continues after {req.position} committed tokens but "
                               f"the edge holds {held} (+{len(pending)} pending); reopen the session")
        if held + len(pending) + n_draft + 1 > self.max_context:
            raise RequestError(grpc.StatusCode.OUT_OF_RANGE,
                               f"the session would reach {held + len(pending) + n_draft + 1} tokens, past the model "
                               f"context of {self.max_context}")
        ids = session.committed + pending + decoded.tokens
        job = BatchJob(session.lm, ids, held + len(pending) - 1, _JobInfo(session, decoded, round_id, key, pending))
        future = self.batcher.submit(job)
        session.inflight = (round_id, key, future)

        def _done(f: asyncio.Future, s: Session = session) -> None:
            if s.inflight is not None and s.inflight[2] is f:
                s.inflight = None
            s.touch()
            if not f.cancelled():
                f.exception()  # mark retrieved: a cancelled caller must not log "never retrieved"
        future.add_done_callback(_done)
        result = await asyncio.shield(future)
        return self._reply(context, result, t0, cached=False)

    def _reply(self, context, result: _RoundResult, t0: float, cached: bool) -> bytes:
        server_ms = (time.perf_counter() - t0) * 1e3
        if not cached:
            self.metrics.observe_latency(server_ms, result.queue_ms)
        context.set_trailing_metadata(((TRAILER_SERVER_MS, f"{server_ms:.3f}"),
                                       (TRAILER_QUEUE_MS, f"{result.queue_ms:.3f}"),
                                       (TRAILER_FORWARD_MS, f"{result.forward_ms:.3f}"),
                                       (TRAILER_BATCH, str(result.batch)),
                                       (TRAILER_CACHED, "1" if cached else "0")))
        return result.reply

    # ------------------------------------------------------------------ model thread
    def _run_batch(self, jobs: list[BatchJob]) -> BatchOutcome:
        """Runs on the model thread: one forward for the live jobs, then per-job verification."""
        t_start = time.perf_counter()
        results: list[object] = [None] * len(jobs)
        live = []
        for i, job in enumerate(jobs):
            if job.payload.session.closed:
                results[i] = RequestError(grpc.StatusCode.NOT_FOUND, "the session was closed during verification")
            else:
                live.append(i)
        logits: dict[int, torch.Tensor] = {}
        if len(live) > 1:
            try:
                outs = batched_feed([jobs[i].lm for i in live], [jobs[i].ids for i in live],
                                    [jobs[i].logits_from for i in live])
                logits = dict(zip(live, outs))
            except Exception:
                log.exception("batched forward failed; verifying the batch one session at a time")
        for i in live:
            if i not in logits:
                try:
                    logits[i] = jobs[i].lm.feed(jobs[i].ids, logits_from=jobs[i].logits_from)
                except Exception as exc:
                    results[i] = exc
        forward_ms = (time.perf_counter() - t_start) * 1e3
        if live:
            self.metrics.observe_batch(len(live), forward_ms)
        for i in live:
            if i in logits:
                try:
                    reply = self._finish(jobs[i], logits[i])
                    results[i] = _RoundResult(reply, (t_start - jobs[i].enqueued) * 1e3, forward_ms, len(live))
                except Exception as exc:
                    jobs[i].lm.truncate(jobs[i].logits_from + 1)
                    results[i] = exc if isinstance(exc, RequestError) else RequestError(
                        grpc.StatusCode.INVALID_ARGUMENT, f"verification failed: {exc}")
        return BatchOutcome(results, forward_ms, len(live))

    def _finish(self, job: BatchJob, logits: torch.Tensor) -> bytes:
        info: _JobInfo = job.payload
        session, decoded = info.session, info.decoded
        n_before = job.logits_from + 1  # committed + pending
        if decoded.defer_residual:
            verdict = verify_stochastic(processed_probs(logits, session.params), decoded.tokens, decoded.q,
                                        session.generator, defer_residual=True)
        elif decoded.truncated_q and not session.params.greedy:
            verdict = _verify_truncated(processed_probs(logits, session.params), decoded, self.vocab_size,
                                        session.generator)
        else:
            verdict = verify_draft(logits, decoded.as_draft(n_before), session.params, session.generator)
        session.lm.truncate(n_before + verdict.accepted)  # crop the rejected positions
        appended = info.pending + decoded.tokens[: verdict.accepted]
        if verdict.residual_p is None:
            appended.append(verdict.token)
        session.committed.extend(appended)
        reply = encode_verdict(verdict, session=session.id, round_id=info.round_id,
                               position=len(session.committed)).SerializeToString()
        session.last_round, session.last_request, session.last_reply = info.round_id, info.key, reply
        session.rounds += 1
        session.tokens += len(appended) - len(info.pending)
        self.metrics.observe_round(len(decoded.tokens), verdict.accepted, len(appended) - len(info.pending))
        return reply

    # ------------------------------------------------------------------ Health / Metrics
    async def _health(self, req, context, device) -> bytes:
        return pb.HealthReply(status="SERVING", active_sessions=self.active_sessions,
                              model_name=self.config.model_name).SerializeToString()

    async def _metrics(self, req, context, device) -> bytes:
        return pb.MetricsReply(json=json.dumps(self.metrics_dict())).SerializeToString()


def _verify_truncated(p: torch.Tensor, decoded: DecodedDraft, vocab_size: int,
                      generator: torch.Generator) -> Verdict:
    """paper_topp under sampling: speculative sampling against the top-p part of q. A drafted token outside
    the sent support counts as rejected (its q is unknown to the edge); the paper's approximation."""
    tokens, qs = decoded.tokens, decoded.q
    outside = next((i for i, (t, q) in enumerate(zip(tokens, qs)) if not bool((q.ids == t).any())), None)
    if outside is None:
        return verify_stochastic(p, tokens, qs, generator)
    verdict = verify_stochastic(p[: outside + 1], tokens[:outside], qs[:outside], generator)
    if verdict.accepted < outside:
        return verdict
    q = qs[outside].to_dense(vocab_size)
    return Verdict(accepted=outside, token=sample_from(residual_distribution(p[outside], q), generator))


# ---------------------------------------------------------------------------- background running

class EdgeServerThread:
    """Runs an :class:`EdgeServer` on a background event loop; a context manager returning itself."""

    def __init__(self, server: EdgeServer, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = server
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> int:
        self._loop = background_loop()
        self.port = asyncio.run_coroutine_threadsafe(self.server.start(self.host, self.requested_port),
                                                     self._loop).result(timeout)
        return self.port

    def call(self, fn: Callable, *args, timeout: float = 30.0):
        """Run ``fn(*args)`` on the server's loop (for consistent snapshots of its state)."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def metrics(self) -> dict:
        return self.call(self.server.metrics_dict)

    def stop(self, grace: float = 0.2, timeout: float = 30.0) -> None:
        if self._loop is not None and self.server._server is not None:  # noqa: SLF001
            asyncio.run_coroutine_threadsafe(self.server.stop(grace), self._loop).result(timeout)

    def __enter__(self) -> EdgeServerThread:
        if self.port is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ---------------------------------------------------------------------------- from a model directory

def build_edge_server(target_dir: str | Path, *, tokenizer_dir: str | Path | None = None, dtype: str = "float32",
                      device: str = "cpu", vocab_size: int | None = None, fingerprint: str | None = None,
                      tokens: str | Path | Sequence[str] | Mapping[str, str] | None = None,
                      tls_cert: str | Path | None = None, tls_key: str | Path | None = None,
                      **config) -> EdgeServer:
    """Load the target (and its tokenizer, for the fingerprint) and build a server; nothing is bound yet."""
    from gelato.models.loading import load_causal_lm, load_tokenizer
    from gelato.transport.fingerprint import tokenizer_fingerprint

    model = load_causal_lm(target_dir, dtype, device)
    if fingerprint is None:
        fingerprint = tokenizer_fingerprint(load_tokenizer(tokenizer_dir or target_dir))
    config.setdefault("model_name", Path(target_dir).name)
    cfg = EdgeConfig(tokens=load_tokens(tokens), tls_cert_chain=read_pem(tls_cert), tls_private_key=read_pem(tls_key),
                     **config)
    return EdgeServer(model, fingerprint=fingerprint, vocab_size=vocab_size, config=cfg)


def serve(target_dir: str | Path, host: str = "127.0.0.1", port: int = 50051, *,
          on_started: Callable[[int], None] | None = None, **kwargs) -> None:
    """Load the target from ``target_dir`` and serve until interrupted (the ``gelato serve`` command)."""
    server = build_edge_server(target_dir, **kwargs)

    async def main() -> None:
        bound = await server.start(host, port)
        if on_started is not None:
            on_started(bound)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread / not supported
                pass
        try:
            await stop.wait()
            log.info("shutting down: finishing in-flight rounds")
        finally:
            await server.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
