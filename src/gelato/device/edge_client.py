"""The device's gRPC channel to one edge (:class:`EdgeClient`) and one generation's stream on it (:class:`EdgeStream`).

A stream is one ``Generate`` call: :meth:`EdgeStream.exchange` sends one ``StreamUp`` and waits (with a
timeout) for its ``StreamDown`` (:meth:`EdgeStream.receive`: a burst's further replies); a reader thread moves replies into a queue so a wait can time out.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

from gelato.wire.auth import bearer_metadata, channel_credentials, read_pem
from gelato.wire.proto import gelato_pb2 as pb
from gelato.wire.protocol import GENERATE, HEALTH, METRICS

_END = object()

# Substrings of gRPC's status details that mean the TLS handshake, not the network, failed.
_TLS_MARKERS = ("ssl", "tls", "handshake", "certificate", "peer name", "wrong_version_number",
                "hostname verification")
# What a plaintext client sees from a TLS edge: the connection closes as soon as it is made.
_PLAINTEXT_TO_TLS = "socket closed"


def is_tls_failure(details: str | None) -> bool:
    text = (details or "").lower()
    return any(marker in text for marker in _TLS_MARKERS)


def looks_like_plaintext_to_tls(details: str | None) -> bool:
    return _PLAINTEXT_TO_TLS in (details or "").lower()


def speaks_tls(target: str, timeout: float = 1.0) -> bool:
    """True when ``host:port`` completes a TLS handshake (certificate not checked): a plaintext client's
    "socket closed" then means the edge wants TLS, not that the network dropped the connection."""
    import socket
    import ssl

    host, _, port = target.rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host or None):
                return True
    except (OSError, ValueError):
        return False


class StreamTimeout(grpc.RpcError):
    """No reply within the wait: the stream is treated as dropped (status DEADLINE_EXCEEDED)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no reply within {seconds:.3g} s")
        self.seconds = seconds

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self) -> str:
        return f"no reply within {self.seconds:.3g} s"


class EdgeStream:
    """One ``Generate`` stream. ``exchange`` is called by one thread at a time; ``cancel`` from any thread."""

    def __init__(self, call_factory, metadata) -> None:
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._replies: queue.SimpleQueue = queue.SimpleQueue()
        self._call = call_factory(iter(self._requests.get, _END), metadata=metadata)
        self.acknowledged = threading.Event()  # the edge answered the stream's headers: it is alive and working
        self._reader = threading.Thread(target=self._read, name="gelato-stream-reader", daemon=True)
        self._reader.start()
        self.broken: grpc.RpcError | None = None

    def _read(self) -> None:
        try:
            self._call.initial_metadata()  # the edge sends its headers as soon as it takes an open
            self.acknowledged.set()
            for reply in self._call:
                self._replies.put(reply)
            self._replies.put(_END)
        except grpc.RpcError as exc:
            self._replies.put(exc)

    def exchange(self, up: pb.StreamUp, timeout: float, patience: float | None = None) -> pb.StreamDown:
        """Send ``up``, return its reply; raises grpc.RpcError (a StreamTimeout after ``timeout`` s, or after
        ``patience`` s if that is longer and the edge acknowledged the stream: it is working, e.g. prefilling)."""
        if self.broken is not None:
            raise self.broken
        self._requests.put(up)
        return self.receive(timeout, patience)

    def receive(self, timeout: float, patience: float | None = None) -> pb.StreamDown:
        """The next reply without sending (the further messages of a burst); raises as :meth:`exchange`."""
        if self.broken is not None:
            raise self.broken
        start = time.monotonic()
        wait = max(timeout, 1e-3)
        while True:
            try:
                reply = self._replies.get(timeout=wait)
                break
            except queue.Empty:
                waited = time.monotonic() - start
                if patience is not None and waited < patience and self.acknowledged.is_set():
                    wait = patience - waited
                    continue
                self.broken = StreamTimeout(waited)
                self.cancel()
                raise self.broken from None
        if reply is _END:
            self.broken = _Ended()
            raise self.broken
        if isinstance(reply, grpc.RpcError):
            self.broken = reply
            raise reply
        return reply

    def end(self) -> None:
        """Half-close: no more requests (the edge ends the stream and frees the session)."""
        self._requests.put(_END)

    def cancel(self) -> None:
        self._call.cancel()
        self._requests.put(_END)


class _Ended(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "the edge ended the stream"


class EdgeClient:
    """A channel to one edge with bearer-token metadata, optional TLS and optional client interceptors."""

    def __init__(self, target: str, *, token: str | None = None, tls: bool = False,
                 root_ca: bytes | str | Path | None = None, server_name: str | None = None,
                 interceptors: Sequence[grpc.UnaryUnaryClientInterceptor] = (),
                 max_message_bytes: int = 4 * 1024 * 1024, keepalive_s: float = 30.0) -> None:
        self.target = target
        self.tls = bool(tls or root_ca is not None)
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes),
                   # reconnect quickly after an edge restart
                   ("grpc.initial_reconnect_backoff_ms", 50), ("grpc.min_reconnect_backoff_ms", 50),
                   ("grpc.max_reconnect_backoff_ms", 500),
                   ("grpc.keepalive_time_ms", int(keepalive_s * 1000)), ("grpc.keepalive_timeout_ms", 10000),
                   ("grpc.http2.bdp_probe", 0)]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if self.tls:
            ca = root_ca if isinstance(root_ca, (bytes, type(None))) else read_pem(root_ca)
            channel = grpc.secure_channel(target, channel_credentials(ca), options=options)
        else:
            channel = grpc.insecure_channel(target, options=options)
        self._raw_channel = channel
        self.ever_ready = False  # a connection was established once (so later closes are not a TLS mismatch)
        channel.subscribe(self._on_state, try_to_connect=False)
        self.channel = grpc.intercept_channel(channel, *interceptors) if interceptors else channel
        self.metadata = bearer_metadata(token)
        self._generate = self._raw_channel.stream_stream(GENERATE, request_serializer=pb.StreamUp.SerializeToString,
                                                         response_deserializer=pb.StreamDown.FromString)
        self._health = self.channel.unary_unary(HEALTH, request_serializer=pb.HealthRequest.SerializeToString,
                                                response_deserializer=pb.HealthReply.FromString)
        self._metrics = self.channel.unary_unary(METRICS, request_serializer=pb.MetricsRequest.SerializeToString,
                                                 response_deserializer=pb.MetricsReply.FromString)

    def _on_state(self, state: grpc.ChannelConnectivity) -> None:
        if state == grpc.ChannelConnectivity.READY:
            self.ever_ready = True

    def open_stream(self) -> EdgeStream:
        """A new ``Generate`` stream (one generation)."""
        return EdgeStream(self._generate, self.metadata)

    def health(self, timeout: float = 5.0) -> pb.HealthReply:
        return self._health(pb.HealthRequest(), timeout=timeout, metadata=self.metadata)

    def metrics(self, timeout: float = 5.0) -> dict:
        return json.loads(self._metrics(pb.MetricsRequest(), timeout=timeout, metadata=self.metadata).json)

    def close(self) -> None:
        self._raw_channel.close()

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
