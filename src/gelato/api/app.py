"""The ASGI app: routes, limits, API keys, errors in OpenAI's shape, streaming round by round.

``create_app(backend, default_speculation, limits)`` returns a FastAPI app; :mod:`gelato.api.server`
runs it under uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from gelato.api.backend import Backend
from gelato.api.errors import APIError, bad_request
from gelato.api.formats import ResponseFormat, round_info, sse
from gelato.api.metrics import CONTENT_TYPE_LATEST, ApiMetrics
from gelato.api.respond import Finish, Limits, Piece, prepare, start_job, text_pieces
from gelato.api.schemas import ChatCompletionRequest, CompletionRequest, parse_request
from gelato.api.speculative import Speculation

_DISCONNECT_POLL_S = 0.1
MODEL_ALIAS = "gelato"  # accepted for whatever pair is served, so examples need not name it


@dataclass
class ServerState:
    backend: Backend
    default: Speculation
    limits: Limits
    metrics: ApiMetrics
    executor: ThreadPoolExecutor
    in_flight: int = 0
    started: float = 0.0

    def acquire(self) -> None:
        if self.in_flight >= self.limits.max_concurrent:
            raise APIError(429, f"the server is busy: {self.in_flight} requests in flight (limit "
                           f"{self.limits.max_concurrent}); retry shortly", code="too_many_requests",
                           headers={"Retry-After": "1"})
        self.in_flight += 1
        self.metrics.running.set(self.in_flight)

    def release(self) -> None:
        self.in_flight -= 1
        self.metrics.running.set(self.in_flight)

    def release_after(self, job) -> None:
        """Release once the job's worker is done with it: abandoned work still counts against max_concurrent."""
        job.when_finished(self.release)


def create_app(backend: Backend, default: Speculation, limits: Limits | None = None) -> FastAPI:
    limits = limits or Limits()
    state = ServerState(backend, default, limits, ApiMetrics(),
                        ThreadPoolExecutor(max_workers=limits.max_concurrent, thread_name_prefix="gelato-generate"),
                        started=time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state.executor.shutdown(wait=False, cancel_futures=True)  # running rounds end at their cancellation

    app = FastAPI(title="gelato", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.gelato = state

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        state.metrics.request_errors.labels(status=str(exc.status)).inc()
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = APIError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None)
        return await api_error(request, err)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return await api_error(request, bad_request(str(exc.errors()[0].get("msg", exc))))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return await api_error(request, APIError(500, f"internal error: {type(exc).__name__}: {exc}"))

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": backend.model_name, "verifier": backend.mode,
                "edge": backend.edge.address if backend.edge else None, "requests_in_flight": state.in_flight,
                "uptime_s": round(time.time() - state.started, 3)}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        check_api_key(request, limits)
        return {"object": "list", "data": [{"id": backend.model_name, "object": "model",
                                            "created": int(state.started), "owned_by": "gelato"}]}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await generate(request, state, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await generate(request, state, chat=True)

    return app


def check_api_key(request: Request, limits: Limits) -> None:
    if not limits.api_keys:
        return
    auth = request.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
    if not any(hmac.compare_digest(key.strip().encode(), k.encode()) for k in limits.api_keys):
        raise APIError(401, "invalid API key", code="invalid_api_key")


async def read_json(request: Request, max_bytes: int):
    """The body as JSON; 413 past ``max_bytes`` (checked before and while reading), 400 if not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise APIError(413, f"the request body is {declared} bytes; the limit is {max_bytes}",
                       code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise APIError(413, f"the request body is over the limit of {max_bytes} bytes",
                           code="request_too_large")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks) or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise bad_request("the request body is nested too deeply") from None


async def generate(request: Request, state: ServerState, chat: bool) -> Response:
    arrived = time.perf_counter()
    check_api_key(request, state.limits)
    body = await read_json(request, state.limits.max_body_bytes)
    req = parse_request(body, ChatCompletionRequest if chat else CompletionRequest)
    backend = state.backend
    if req.model not in (backend.model_name, MODEL_ALIAS):
        raise APIError(404, f"the model {req.model!r} does not exist; this server serves {backend.model_name!r} "
                       f"(also as {MODEL_ALIAS!r})", param="model", code="model_not_found")
    prepared = prepare(req, backend, state.default, state.limits)
    state.acquire()
    try:
        job = start_job(prepared, backend, state.executor)
    except BaseException:
        state.release()
        raise
    fmt = ResponseFormat(chat, backend.model_name, req.include_usage)
    pieces = text_pieces(job, prepared, backend, state.metrics, arrived)
    if req.stream:
        stream = _Stream(pieces, fmt, state, job)
        return StreamingResponse(stream.body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                                 background=BackgroundTask(stream.close))
    try:
        return await _whole(request, pieces, fmt, job)
    finally:
        try:
            await pieces.aclose()
        finally:
            state.release_after(job)


async def _whole(request: Request, pieces, fmt: ResponseFormat, job) -> JSONResponse:
    """Collect the pieces into one response, cancelling the job if the client goes away meanwhile."""
    texts: list[str] = []
    collect = asyncio.ensure_future(_collect(pieces, texts))
    while not collect.done():
        await asyncio.wait({collect}, timeout=_DISCONNECT_POLL_S)
        if not collect.done() and await request.is_disconnected():
            job.cancel()
            collect.cancel()
            await asyncio.gather(collect, return_exceptions=True)  # let the pieces see the cancellation
            return JSONResponse(APIError(499, "client closed the request").body(), status_code=499)
    finish: Finish = collect.result()
    if finish.error is not None:
        raise finish.error
    return JSONResponse(fmt.whole("".join(texts) + finish.text, finish.finish_reason, finish.usage))


async def _collect(pieces, texts: list[str]) -> Finish:
    async for item in pieces:
        if isinstance(item, Piece):
            texts.append(item.text)
        else:
            return item
    raise RuntimeError("generation ended without a finish")


class _Stream:
    """Server-sent events, one chunk per committed round; released exactly once however it ends."""

    def __init__(self, pieces, fmt: ResponseFormat, state: ServerState, job) -> None:
        self.pieces = pieces
        self.job = job
        self.fmt = fmt
        self.state = state
        self._released = False

    async def body(self):
        try:
            async for item in self.pieces:
                if isinstance(item, Piece):
                    info = round_info(item.event, item.tokens) if item.event is not None else None
                    yield sse(self.fmt.chunk(item.text, None, info))
                    continue
                if item.error is not None:
                    self.state.metrics.request_errors.labels(status=str(item.error.status)).inc()
                    yield sse(item.error.body())
                else:
                    yield sse(self.fmt.chunk(item.text, item.finish_reason))
                    if self.fmt.include_usage:
                        yield sse(self.fmt.usage_chunk(item.usage))
                yield sse("[DONE]")
                return
        finally:
            await self.close()

    async def close(self) -> None:
        self.job.cancel()  # also when the body never started (the client left before the first byte)
        try:
            await self.pieces.aclose()
        finally:
            if not self._released:
                self._released = True
                self.state.release_after(self.job)
