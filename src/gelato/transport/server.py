"""The edge server: sessions, (batched) verification and metrics behind the ``gelato.v1.Edge`` gRPC service.

Start it from in-memory objects (tests, benchmarks)::

    server = EdgeServer(target_model, fingerprint=synthetic_fingerprint(64), config=EdgeConfig(max_batch=8))
    with EdgeServerThread(server) as running:      # background event loop, OS-picked port
        print(running.port)

or from a model directory with :func:`gelato.transport.process.serve` (the ``gelato serve`` command).
One generation is one ``Generate`` stream: ``open``, then one ``draft`` per round, then ``close``; the
session ends with its stream. A refusal ends the stream with a precise status (the device opens a new
stream with everything committed so far where that helps). Requests are parsed by the handlers
themselves, so malformed bytes get INVALID_ARGUMENT (not a generic INTERNAL):

==================== =============================================================================
UNAUTHENTICATED      missing, malformed or unknown bearer token
INVALID_ARGUMENT     undecodable message, empty/oversized prompt, draft longer than the limit, ids
                     outside the vocabulary, bad sampling settings or q distributions
NOT_FOUND            the session expired (idle too long): open a new stream with the committed tokens
FAILED_PRECONDITION  tokenizer fingerprint mismatch; a draft before open, or whose position or round
                     does not follow the session (the device resynchronises on a new stream)
RESOURCE_EXHAUSTED   all sessions in use, or this credential's quota (the device backs off and retries);
                     message larger than the size limit (gRPC's own check)
OUT_OF_RANGE         the prompt leaves no room in the model's context, or a session would outgrow it
UNAVAILABLE          the edge is shutting down
==================== =============================================================================
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
import torch
from google.protobuf.message import DecodeError

from gelato.models.cached import CachedCausalLM
from gelato.models.kv_store import SlotKVStore, default_kv_budget
from gelato.models.slots import SlotSequence, supports_slots
from gelato.models.static_verify import make_static_engine
from gelato.transport.auth import TokenAuthenticator, check_key_pair, server_credentials
from gelato.transport.codec import decode_draft, sampling_from_proto
from gelato.transport.errors import RequestError
from gelato.transport.rounds import Limits, check_open, check_round
from gelato.transport.sessions import Session, SessionStore
from gelato.transport.stats import EdgeMetrics
from gelato.transport.worker import ModelWorker, RoundJob, RoundResult
from gelato.wire.payload import PayloadConfig
from gelato.wire.proto import gelato_pb2 as pb
from gelato.wire.protocol import SERVICE

log = logging.getLogger("gelato.transport.server")


@dataclass
class EdgeConfig:
    max_sessions: int = 64
    max_sessions_per_device: int = 16  # per credential (bearer token); only with auth
    max_prompt_tokens: int = 8192  # Open (a resumed session's prompt is everything committed so far)
    max_draft_tokens: int = 32  # per round
    max_context_tokens: int | None = None  # default: the model's max_position_embeddings
    static_verify: bool | None = None  # static-shape verify forwards (CUDA graphs on cuda); None: on for cuda
    static_max_len: int = 8192  # the static path's cache length (caps the edge's context when it is on)
    idle_timeout_s: float = 600.0  # a stream silent this long is ended and its session's cache freed
    max_batch: int = 8  # 1 = unbatched verification
    batch_window_ms: float = 8.0  # waits only while other ready sessions could still send
    prefill_chunk: int = 128  # prompt tokens per prefill step between verification rounds (at most)
    prefill_budget_ms: float = 4.0  # while other sessions could send rounds: a chunk's target time
    kv_memory: int | None = None  # bytes of KV cache at most (None: half the memory free at start)
    max_message_bytes: int = 4 * 1024 * 1024
    keepalive_s: float = 30.0  # ping idle connections this often; drop them after keepalive_timeout_s
    keepalive_timeout_s: float = 10.0
    max_connection_idle_s: float = 300.0  # close connections without streams after this long
    max_connection_age_s: float = 24 * 3600.0  # then let streams finish for another max_connection_idle_s
    tokens: Mapping[str, str] | None = None  # bearer token -> device name; None disables auth
    tls_cert_chain: bytes | None = None
    tls_private_key: bytes | None = None
    model_name: str = "target"
    paper_payload: PayloadConfig | None = None  # bit widths of paper_topp drafts (default PayloadConfig's)
    grace_s: float = 1.0  # shutdown grace for in-flight calls

    def __post_init__(self) -> None:
        for name in ("max_sessions", "max_sessions_per_device", "max_prompt_tokens", "max_draft_tokens",
                     "max_batch", "prefill_chunk", "max_message_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kv_memory is not None and self.kv_memory < 1:
            raise ValueError(f"kv_memory must be >= 1 byte, got {self.kv_memory}")
        if self.batch_window_ms < 0 or self.idle_timeout_s <= 0 or self.prefill_budget_ms <= 0:
            raise ValueError("batch_window_ms must be >= 0, idle_timeout_s and prefill_budget_ms > 0")
        for name in ("keepalive_s", "keepalive_timeout_s", "max_connection_idle_s", "max_connection_age_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if (self.tls_cert_chain is None) != (self.tls_private_key is None):
            raise ValueError("TLS needs both a certificate chain and its private key")
        if self.tls_cert_chain is not None:
            check_key_pair(self.tls_cert_chain, self.tls_private_key)

    def grpc_options(self) -> list[tuple[str, int]]:
        ms = (lambda s: max(1, int(s * 1000)))
        return [("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", self.max_message_bytes),
                ("grpc.so_reuseport", 0),
                ("grpc.keepalive_time_ms", ms(self.keepalive_s)),
                ("grpc.keepalive_timeout_ms", ms(self.keepalive_timeout_s)),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.max_connection_idle_ms", ms(self.max_connection_idle_s)),
                ("grpc.max_connection_age_ms", ms(self.max_connection_age_s)),
                ("grpc.max_connection_age_grace_ms", ms(self.max_connection_idle_s)),
                ("grpc.http2.bdp_probe", 0)]  # no bandwidth-probe pings on the (metered) link


def _parse(message_type, raw) -> object:
    if not isinstance(raw, (bytes, bytearray)):
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{message_type.DESCRIPTOR.name}: request is not bytes")
    try:
        return message_type.FromString(bytes(raw))
    except (DecodeError, ValueError) as exc:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"malformed {message_type.DESCRIPTOR.name} ({len(raw)} bytes): {exc}") from None


class EdgeServer:
    """Target model + sessions + model worker; ``await start()`` serves on a port, ``await stop()`` ends."""

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
        self.static = make_static_engine(self.model, self.vocab_size, self.config.static_verify,
                                         min(self.max_context, self.config.static_max_len))
        if self.static is not None:  # sessions take turns in its one cache: one session per forward
            self.max_context = self.static.max_len
        self.limits = Limits(self.config.max_prompt_tokens, self.config.max_draft_tokens, self.max_context,
                             self.vocab_size)
        self.store = SessionStore(self.config.max_sessions,
                                  self.config.max_sessions_per_device if self.config.tokens else None)
        self.metrics = EdgeMetrics()
        self.auth = TokenAuthenticator(self.config.tokens)
        self._live_caches: weakref.WeakSet[CachedCausalLM | SlotSequence] = weakref.WeakSet()
        # Sessions' KV caches are slots in blocks of a store inside the KV budget (models/kv_store.py): batched
        # rounds copy no history, a session costs what its context needs, and closed sessions' memory returns.
        device = next(self.model.parameters()).device
        self.kv_budget = int(self.config.kv_memory or default_kv_budget(device))
        self.pool = (SlotKVStore(self.model, self.vocab_size, budget_bytes=self.kv_budget,
                                 block_slots=min(8, self.config.max_sessions),
                                 max_capacity=min(self.max_context, 1 << 20))
                     if supports_slots(self.model) and self.static is None else None)
        self.pool_context = self.pool.max_capacity if self.pool is not None else self.max_context
        self.batchable = self.pool is not None
        if self.config.max_batch > 1 and not self.batchable and self.static is None:
            log.warning("the model's attention does not fit slot caching: verifying one session at a time")
        self.worker = ModelWorker(self.metrics, max_batch=self.config.max_batch if self.batchable else 1,
                                  window_s=self.config.batch_window_ms / 1000.0,
                                  prefill_chunk=self.config.prefill_chunk,
                                  prefill_budget_ms=self.config.prefill_budget_ms, others_waiting=self._others_could_send,
                                  on_idle=self.pool.trim if self.pool is not None else None)
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None
        self.stopping = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind and serve; raises OSError (one line) when ``host:port`` cannot be bound."""
        cfg = self.config
        server = grpc.aio.server(options=cfg.grpc_options())
        server.add_generic_rpc_handlers((self._handlers(),))
        address = f"{host}:{port}"
        try:
            if cfg.tls_cert_chain is not None:
                bound = server.add_secure_port(address, server_credentials(cfg.tls_cert_chain, cfg.tls_private_key))
            else:
                bound = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpc raises before returning 0 on a bad host or a port in use
            raise OSError(f"could not bind the edge server to {address} (port in use or bad host): {exc}") from None
        if not bound:
            raise OSError(f"could not bind the edge server to {address} (port in use or bad host)")
        await server.start()
        self._server = server
        self.port = bound
        self.worker.start()
        log.info("edge serving %s on %s:%d (%s, batch<=%d, window %.1f ms, auth %s, TLS %s)", cfg.model_name, host,
                 bound, "batched" if self.worker.max_batch > 1 else "unbatched", self.worker.max_batch,
                 cfg.batch_window_ms, "on" if self.auth.enabled else "off", "on" if cfg.tls_cert_chain else "off")
        return bound

    def start_hosted(self) -> None:
        """Run the model worker without binding a port: a host that owns the gRPC ingress (a Ray Serve replica,
        ``gelato.cluster``) feeds :meth:`generate`, :meth:`health` and :meth:`metrics_json` itself. Call on the
        event loop that will run them."""
        if self.worker.executor is None:
            self.worker.start()
            log.info("edge hosted (%s, batch<=%d, auth %s)", self.config.model_name, self.worker.max_batch,
                     "on" if self.auth.enabled else "off")

    async def generate(self, context) -> None:
        """One ``Generate`` stream over any context with grpc.aio's ``read``/``write``/``abort``/``invocation_metadata``."""
        await self._generate(None, context)

    async def health(self) -> bytes:
        return await self._health(None)

    async def stop(self, grace: float | None = None) -> None:
        self.stopping = True
        if self._server is not None:
            await self._server.stop(self.config.grace_s if grace is None else grace)
        await self.worker.stop()
        for session in self.store:
            self.store.remove(session.id)
            await self.worker.run(session.free)
        self.worker.shutdown()
        self._server = None

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    # ------------------------------------------------------------------ introspection
    @property
    def active_sessions(self) -> int:
        return len(self.store)

    def kv_holders(self) -> int:
        """Sessions' caches holding KV storage right now (0 when no session is open and nothing leaked)."""
        return self.pool.holders if self.pool is not None else 0

    def cache_tokens(self) -> int:
        """KV cache positions held by every live session cache (open or not yet collected)."""
        return sum(lm.cache_len for lm in list(self._live_caches))

    def metrics_dict(self) -> dict:
        d = self.metrics.to_dict(self.active_sessions, self.cache_tokens())
        d.update(model_name=self.config.model_name, vocab_size=self.vocab_size, max_batch=self.worker.max_batch,
                 batch_window_ms=self.config.batch_window_ms, prefilling=self.worker.prefilling)
        if self.pool is not None:
            d.update(kv_slots=self.pool.slots, kv_capacity=self.pool.capacity, kv_bytes=self.pool.bytes_allocated,
                     kv_budget_bytes=self.kv_budget, kv_peak_bytes=self.pool.peak_bytes,
                     kv_blocks=len(self.pool.blocks), kv_held_slots=self.pool.holders,
                     kv_migrations=self.pool.migrations,
                     kv_grow_events=self.pool.grow_events, kv_forwards=self.pool.forward_calls,
                     kv_feed_ms=self.pool.feed_s * 1e3, kv_model_ms=self.pool.model_s * 1e3)
        if self.static is not None:
            d.update(static_forwards=self.static.forward_calls, static_graphs=self.static.graphs_captured,
                     static_swaps=self.static.swaps, static_padded_tokens=self.static.padded_tokens)
        return d

    def _others_could_send(self, in_batch: int) -> bool:
        """Worth waiting for more rounds only if ready sessions exist besides those already batched."""
        return len(self.store) - self.worker.prefilling > in_batch

    # ------------------------------------------------------------------ RPC plumbing
    def _handlers(self) -> grpc.GenericRpcHandler:
        unary = grpc.unary_unary_rpc_method_handler  # raw bytes in and out: we parse ourselves
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Generate": grpc.stream_stream_rpc_method_handler(self._generate),
            "Health": unary(self._unary("Health", pb.HealthRequest, self._health)),
            "Metrics": unary(self._unary("Metrics", pb.MetricsRequest, self._metrics)),
        })

    async def _refuse(self, context, exc: RequestError) -> None:
        self.metrics.count("errors", exc.code.name)
        await context.abort(exc.code, exc.message)

    def _unary(self, name: str, message_type, impl):
        async def handler(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            try:
                self.auth.device_of(context.invocation_metadata())
                return await impl(_parse(message_type, raw))
            except RequestError as exc:
                await self._refuse(context, exc)
        return handler

    async def _generate(self, request_iterator, context: grpc.aio.ServicerContext) -> None:
        """One generation: open, rounds, close; the session lives exactly as long as this stream."""
        session: Session | None = None
        try:
            if self.stopping:
                raise RequestError(grpc.StatusCode.UNAVAILABLE, "the edge is shutting down")
            device = self.auth.device_of(context.invocation_metadata())
            while True:
                try:
                    raw = await asyncio.wait_for(context.read(), self.config.idle_timeout_s)
                except TimeoutError:
                    self.metrics.count("sessions_expired")
                    raise RequestError(grpc.StatusCode.NOT_FOUND,
                                       f"the stream was idle for {self.config.idle_timeout_s:g} s and its session "
                                       "was closed; open a new stream with the committed tokens") from None
                if raw is grpc.aio.EOF:
                    return
                up = _parse(pb.StreamUp, raw)
                kind = up.WhichOneof("kind")
                if kind == "open":
                    if session is not None:
                        raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, "this stream already has a session")
                    await context.send_initial_metadata(())  # "taken": the device waits out a long prefill
                    session = await self._open(up.open, device)
                    await context.write(pb.StreamDown(opened=pb.OpenReply(
                        vocab_size=self.vocab_size, max_draft_tokens=self.config.max_draft_tokens,
                        model_name=self.config.model_name)).SerializeToString())
                elif kind == "draft":
                    if session is None:
                        raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, "a draft came before open")
                    await context.write(await self._round(session, up.draft))
                elif kind == "close":
                    reply = pb.CloseReply(rounds=session.rounds if session else 0,
                                          tokens=session.tokens if session else 0)
                    if session is not None:
                        self._release(session)  # before the reply: closed means freed
                    await context.write(pb.StreamDown(closed=reply).SerializeToString())
                    return
                else:
                    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "StreamUp holds neither open, draft nor close")
        except RequestError as exc:
            await self._refuse(context, exc)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            if context.cancelled() or _is_failed_write(exc):  # the client went away: nothing to answer, no bug
                log.debug("the client of a Generate stream went away: %s", type(exc).__name__)
                self.metrics.count("clients_gone")
                return
            log.exception("Generate failed")  # a bug: report it, keep serving
            await self._refuse(context, RequestError(grpc.StatusCode.INTERNAL,
                                                     f"the edge failed: {type(exc).__name__}: {exc}"))
        finally:
            if session is not None:
                self._release(session)

    # ------------------------------------------------------------------ open / close
    async def _open(self, req: pb.OpenRequest, device: str | None) -> Session:
        if req.tokenizer_fingerprint != self.fingerprint:
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"tokenizer fingerprint mismatch: device {req.tokenizer_fingerprint or '(none)'!r} vs "
                               f"edge {self.fingerprint!r} (model {self.config.model_name}); device and edge must "
                               "share one vocabulary")
        params = sampling_from_proto(req.sampling)
        prompt = list(req.prompt_ids)
        check_open(prompt, params, req.max_new_tokens, self.limits)
        self.store.reserve_check(device)
        lm = (self.static.sequence() if self.static is not None else self.pool.sequence() if self.pool is not None
              else CachedCausalLM(self.model, self.vocab_size))
        self._live_caches.add(lm)
        generator = torch.Generator().manual_seed(int(req.sampling.seed))  # the device derives it (client.py)
        session = Session(id=self.store.new_id(), lm=lm, committed=prompt, params=params, generator=generator,
                          owner=device, device_name=req.device_name or (device or ""), prompt_len=len(prompt),
                          max_new_tokens=req.max_new_tokens, report_times=req.report_times)
        self.store.add(session)
        try:
            # the newest token is fed with the first draft; the store first reserves room for that round too
            await self.worker.prefill(lm, prompt[:-1],
                                      reserve=min(len(prompt) + self.config.max_draft_tokens, self.pool_context))
        except BaseException:
            self._release(session)
            raise
        session.opened = True
        self.metrics.count("sessions_opened")
        log.debug("opened session %#x for %s (%d prompt tokens)", session.id, session.device_name, len(prompt))
        return session

    def _release(self, session: Session) -> None:
        """Forget the session now; its cache is freed on the model thread (never awaited: may run on cancel)."""
        if self.store.remove(session.id) is None:
            return
        if session.opened:  # an open that failed or was cancelled during prefill was never counted as opened
            self.metrics.count("sessions_closed")
        if self.worker.executor is not None:
            try:
                self.worker.executor.submit(session.free)
            except RuntimeError:  # the worker already shut down: nothing to free it on
                session.free()

    # ------------------------------------------------------------------ rounds
    async def _round(self, session: Session, req: pb.DraftUp) -> bytes:
        t0 = time.perf_counter()
        session.touch()
        pending = list(req.pending_ids)
        held = len(session.committed)
        check_round(round_id=req.round, last_round=session.last_round, position=req.position, held=held,
                    n_pending=len(pending), n_draft=len(req.token_ids), limits=self.limits)
        decoded = decode_draft(req, session.params, self.vocab_size, self.config.paper_payload)
        job = RoundJob(session, decoded, req.round, pending, session.committed + pending + decoded.tokens,
                       held + len(pending) - 1)
        result: RoundResult = await self.worker.submit_round(job)
        session.touch()
        server_ms = (time.perf_counter() - t0) * 1e3
        self.metrics.observe_latency(server_ms, result.queue_ms)
        down = pb.StreamDown(verdict=result.verdict)
        if session.report_times:
            down.times.CopyFrom(pb.EdgeTimes(server_ms=server_ms, queue_ms=result.queue_ms,
                                             forward_ms=result.forward_ms, batch=result.batch))
        return down.SerializeToString()

    # ------------------------------------------------------------------ Health / Metrics
    async def _health(self, req) -> bytes:
        return pb.HealthReply(status="SERVING", active_sessions=self.active_sessions,
                              model_name=self.config.model_name).SerializeToString()

    async def _metrics(self, req) -> bytes:
        return pb.MetricsReply(json=json.dumps(self.metrics_dict())).SerializeToString()


def _is_failed_write(exc: Exception) -> bool:
    """gRPC's error for a message that could not be sent because the call already ended (a vanished client)."""
    return type(exc).__name__ == "ExecuteBatchError"


def __getattr__(name: str):  # the process helpers moved to gelato.transport.process
    if name in ("EdgeServerThread", "build_edge_server", "serve"):
        from gelato.transport import process
        return getattr(process, name)
    raise AttributeError(f"module 'gelato.transport.server' has no attribute {name!r}")
