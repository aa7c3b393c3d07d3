"""One edge replica: a Ray Serve deployment hosting a real :class:`gelato.edge.server.EdgeServer`.

Serve's gRPC proxy carries each device's ``Generate`` stream (bidirectional, beta in Ray 2.60) to ONE
replica for the stream's life; the replica hands it to the edge's own handler through a small context
adapter, so sessions, batching, limits, auth and statuses are the edge's, unchanged. Requests cross the
proxy as raw bytes (:func:`gelato.cluster.ingress.add_edge_to_server` registers no deserializer), so
malformed messages get the edge's precise INVALID_ARGUMENT. A refusal sets the status on Serve's gRPC
context and raises: Serve then answers the device with that status.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import grpc

from gelato.wire.errors import RequestError

log = logging.getLogger("gelato.cluster.replica")

_DONE = object()


class _Reply:
    """Serve serializes what a gRPC method yields with ``SerializeToString``: the edge's replies are bytes already."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:  # noqa: N802 (protobuf's name)
        return self.data


class _StreamContext:
    """What :meth:`EdgeServer.generate` needs of a ``grpc.aio`` servicer context, over Serve's input stream."""

    def __init__(self, request_stream, grpc_context, max_message_bytes: int | None = None) -> None:
        self._requests = request_stream.__aiter__()
        self._grpc_context = grpc_context
        self._max_bytes = max_message_bytes
        self.replies: asyncio.Queue = asyncio.Queue()
        self.refused: tuple[grpc.StatusCode, str] | None = None

    def invocation_metadata(self):
        return self._grpc_context.invocation_metadata() if self._grpc_context is not None else ()

    async def send_initial_metadata(self, metadata) -> None:
        """The edge's early "taken" acknowledgement; Serve's context sends its headers itself (a no-op here)."""

    def cancelled(self) -> bool:
        """Whether the device went away; Serve's context does not say, so a failed write tells the edge."""
        probe = getattr(self._grpc_context, "cancelled", None)
        return bool(probe()) if callable(probe) else False

    async def read(self):
        try:
            data = await self._requests.__anext__()
        except StopAsyncIteration:
            return grpc.aio.EOF
        if self._max_bytes is not None and len(data) > self._max_bytes:  # never parsed (the servers refuse first)
            await self.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"message of {len(data)} bytes is larger than the edge's {self._max_bytes}")
        return data

    async def write(self, data: bytes) -> None:
        self.replies.put_nowait(data)

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.refused = (code, details)
        raise grpc.aio.AbortError()


class EdgeRefused(Exception):
    """Raised by a replica method after it set the edge's status on Serve's gRPC context."""


def _refuse(grpc_context, code: grpc.StatusCode, details: str) -> EdgeRefused:
    if grpc_context is not None:
        grpc_context.set_code(code)
        grpc_context.set_details(details)
    return EdgeRefused(f"{code.name}: {details}")


class EdgeReplica:
    """The deployment's class (``gelato.cluster.app.edge_app`` wraps it with ``serve.deployment``)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import torch

        from gelato.edge.process import build_edge_server

        torch.set_num_threads(int(spec.get("threads", 1)))
        self.edge = build_edge_server(spec["target_dir"], **spec.get("edge", {}))
        self.replica = _replica_id()
        self.pid = os.getpid()
        self.started = time.time()
        self._handle = None

    def _ready(self) -> None:
        self.edge.start_hosted()  # on the replica's event loop, once

    # ------------------------------------------------------------------ the edge's RPCs, through Serve's ingress
    async def Generate(self, request_stream, grpc_context=None):  # noqa: N802 (the RPC's name)
        self._ready()
        ctx = _StreamContext(request_stream, grpc_context, self.edge.config.max_message_bytes)
        task = asyncio.ensure_future(self.edge.generate(ctx))
        task.add_done_callback(lambda _: ctx.replies.put_nowait(_DONE))
        try:
            while (item := await ctx.replies.get()) is not _DONE:
                yield _Reply(item)
            try:
                task.result()
            except grpc.aio.AbortError:
                pass
        finally:
            if not task.done():  # the device went away: end the edge's handler (it frees the session)
                task.cancel()
        if ctx.refused is not None:
            raise _refuse(grpc_context, *ctx.refused)

    async def Health(self, request: bytes, grpc_context=None):  # noqa: N802
        self._authorize(grpc_context)
        return _Reply(await self.edge.health())

    async def Metrics(self, request: bytes, grpc_context=None):  # noqa: N802
        self._authorize(grpc_context)
        import json

        from gelato.wire.proto import gelato_pb2 as pb
        return _Reply(pb.MetricsReply(json=json.dumps(self.metrics_dict())).SerializeToString())

    def _authorize(self, grpc_context) -> None:
        self._ready()
        try:
            self.edge.auth.device_of(grpc_context.invocation_metadata() if grpc_context is not None else ())
        except RequestError as exc:
            self.edge.metrics.count("errors", exc.code.name)
            raise _refuse(grpc_context, exc.code, exc.message) from None

    async def __call__(self, request):
        """HTTP ingress: ``/metrics`` and ``/status`` of every replica (any replica answers)."""
        from ray import serve

        from gelato.cluster.metrics import http_response
        if self._handle is None:
            ctx = serve.get_replica_context()
            self._handle = serve.get_deployment_handle(ctx.deployment, ctx.app_name)
        return await http_response(request, self._handle)

    # ------------------------------------------------------------------ for `gelato cluster status` and metrics
    def metrics_dict(self) -> dict:
        d = self.edge.metrics_dict()
        d.update(replica=self.replica, pid=self.pid)
        return d

    async def replica_status(self) -> dict:
        self._ready()
        return {"replica": self.replica, "pid": self.pid, "node": _node_ip(),
                "sessions": self.edge.active_sessions, "max_sessions": self.edge.config.max_sessions,
                "prefilling": self.edge.worker.prefilling, "healthy": self._healthy(),
                "uptime_s": round(time.time() - self.started, 1), "metrics": self.metrics_dict()}

    def _healthy(self) -> bool:
        task = self.edge.worker._task  # noqa: SLF001 (the scheduler task: dead means no round will run)
        return not self.edge.stopping and (task is None or not task.done())

    def check_health(self) -> None:
        """Serve calls this periodically; raising marks the replica unhealthy and Serve replaces it."""
        if not self._healthy():
            raise RuntimeError("the edge's model worker stopped")


def _replica_id() -> str:
    try:
        from ray import serve
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside a replica (a plain instance)
        return f"pid-{os.getpid()}"


def _node_ip() -> str:
    try:
        import ray
        return ray.util.get_node_ip_address()
    except Exception:
        return "127.0.0.1"
