"""The edge's ``gelato.v1.Edge`` gRPC service: one ``Generate`` stream per generation, Health and Metrics.

:class:`EdgeService` holds the request handling of :class:`gelato.edge.server.EdgeServer` (which builds
the sessions, the model worker and the gRPC server, and inherits these handlers).

One generation is one ``Generate`` stream: ``open``, then one ``draft`` per round, then ``close``; the
session ends with its stream. A draft with ``stream_tokens`` = C > 0 (and no draft tokens) is a burst: the
edge generates up to C tokens itself and writes each as soon as it exists (:meth:`EdgeService._burst`). A refusal ends the stream with a precise status (the device opens a new
stream with everything committed so far where that helps). Requests are parsed by the handlers
themselves, so malformed bytes get INVALID_ARGUMENT (not a generic INTERNAL):

==================== =============================================================================
UNAUTHENTICATED      missing, malformed or unknown bearer token
INVALID_ARGUMENT     undecodable message, empty/oversized prompt, draft longer than the limit, ids
                     outside the vocabulary, bad sampling settings, payload or q values (wire's MalformedMessage); a
                     burst with a draft, over the edge's limit or over the session's max_new_tokens left
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

import grpc
import torch
from google.protobuf.message import DecodeError

from gelato.edge.rounds import check_open, check_round
from gelato.edge.sessions import Session
from gelato.edge.worker import RoundJob, RoundResult
from gelato.models.cached import CachedCausalLM
from gelato.wire.codec import DecodedDraft, decode_draft, payload_from_proto, sampling_from_proto
from gelato.wire.errors import RequestError
from gelato.wire.proto import gelato_pb2 as pb
from gelato.wire.protocol import SERVICE

log = logging.getLogger("gelato.edge.server")  # one logger for the whole edge server


def _parse(message_type, raw) -> object:
    if not isinstance(raw, (bytes, bytearray)):
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{message_type.DESCRIPTOR.name}: request is not bytes")
    try:
        return message_type.FromString(bytes(raw))
    except (DecodeError, ValueError) as exc:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"malformed {message_type.DESCRIPTOR.name} ({len(raw)} bytes): {exc}") from None


class EdgeService:
    """The handlers of the ``Edge`` service. Mixed into :class:`~gelato.edge.server.EdgeServer`, which sets
    what they use: ``config``, ``limits``, ``fingerprint``, ``vocab_size``, ``model``, ``kv_store``, ``kv_context``,
    ``sessions``, ``metrics``, ``auth``, ``worker``, ``stopping`` and ``_live_caches``."""

    async def generate(self, context) -> None:
        """One ``Generate`` stream over any context with grpc.aio's ``read``/``write``/``abort``/``invocation_metadata``."""
        await self._generate(None, context)

    async def health(self) -> bytes:
        return await self._health(None)

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
                    if up.draft.stream_tokens:
                        await self._burst(session, up.draft, context.write)
                    else:
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
        payload = payload_from_proto(req)
        prompt = list(req.prompt_ids)
        check_open(prompt, params, req.max_new_tokens, self.limits)
        self.sessions.reserve_check(device)
        lm = (self.static.sequence() if self.static is not None else self.kv_store.sequence() if self.kv_store is not None
              else CachedCausalLM(self.model, self.vocab_size))
        self._live_caches.add(lm)
        generator = torch.Generator().manual_seed(int(req.sampling.seed))  # the device derives it (client.py)
        session = Session(id=self.sessions.new_id(), lm=lm, committed=prompt, params=params, generator=generator,
                          owner=device, device_name=req.device_name or (device or ""), prompt_len=len(prompt),
                          max_new_tokens=req.max_new_tokens, report_times=req.report_times,
                          stop_ids=frozenset(req.stop_ids), payload=payload)
        self.sessions.add(session)
        try:
            # the newest token is fed with the first draft; the store first reserves room for that round too
            await self.worker.prefill(lm, prompt[:-1],
                                      reserve=min(len(prompt) + self.config.max_draft_tokens, self.kv_context))
        except BaseException:
            self._release(session)
            raise
        session.opened = True
        self.metrics.count("sessions_opened")
        log.debug("opened session %#x for %s (%d prompt tokens)", session.id, session.device_name, len(prompt))
        return session

    def _release(self, session: Session) -> None:
        """Forget the session now; its cache is freed on the model thread (never awaited: may run on cancel)."""
        if self.sessions.remove(session.id) is None:
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
        result = await self.worker.submit_round(self._first_job(session, req))
        return self._reply(session, result, t0)

    async def _burst(self, session: Session, req: pb.DraftUp, write) -> None:
        """A burst: up to ``req.stream_tokens`` zero-draft steps, each written (``await write(bytes)``) as soon
        as it resolves. Every step is a RoundJob on the same worker queue as other sessions' rounds, so it
        joins their batched forward (continuous batching). The burst ends at C tokens or after a stop id."""
        t0 = time.perf_counter()
        job = self._first_job(session, req)
        for i in range(req.stream_tokens):
            if i:
                t0 = time.perf_counter()
                session.touch()
                job = RoundJob(session, DecodedDraft([], None if session.params.greedy else []), req.round, [],
                               list(session.committed), len(session.committed) - 1, step=i)
            result: RoundResult = await self.worker.submit_round(job)
            result.verdict.last = i + 1 == req.stream_tokens or result.verdict.token in session.stop_ids
            await write(self._reply(session, result, t0))
            if result.verdict.last:
                return

    def _first_job(self, session: Session, req: pb.DraftUp) -> RoundJob:
        """The round's job (a burst's first step), after the session's rules (:func:`check_round`)."""
        session.touch()
        pending = list(req.pending_ids)
        held = len(session.committed)
        tokens_left = session.max_new_tokens - session.tokens if session.max_new_tokens else None
        check_round(round_id=req.round, last_round=session.last_round, position=req.position, held=held,
                    n_pending=len(pending), n_draft=len(req.token_ids), limits=self.limits,
                    stream_tokens=req.stream_tokens, tokens_left=tokens_left)
        decoded = decode_draft(req, session.params, self.vocab_size, self.config.paper_payload, session.payload)
        return RoundJob(session, decoded, req.round, pending, session.committed + pending + decoded.tokens,
                        held + len(pending) - 1, step=0 if req.stream_tokens else -1)

    def _reply(self, session: Session, result: RoundResult, t0: float) -> bytes:
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
