"""Running an :class:`~gelato.edge.server.EdgeServer`: on a background loop (tests, benchmarks), from a
model directory (:func:`build_edge_server`), or as the ``gelato serve`` process (:func:`serve`)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from gelato.edge.server import EdgeConfig, EdgeServer
from gelato.wire.aio import background_loop
from gelato.wire.auth import load_tokens, read_pem

log = logging.getLogger("gelato.edge.server")


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
    from gelato.wire.fingerprint import tokenizer_fingerprint

    model = load_causal_lm(target_dir, dtype, device)
    if fingerprint is None:
        fingerprint = tokenizer_fingerprint(load_tokenizer(tokenizer_dir or target_dir))
    config.setdefault("model_name", Path(target_dir).name)
    cfg = EdgeConfig(tokens=load_tokens(tokens), tls_cert_chain=read_pem(tls_cert), tls_private_key=read_pem(tls_key),
                     **config)
    return EdgeServer(model, fingerprint=fingerprint, vocab_size=vocab_size, config=cfg)


def serve(target_dir: str | Path, host: str = "127.0.0.1", port: int = 50051, *,
          on_started: Callable[[int], None] | None = None, metrics_port: int | None = None, **kwargs) -> None:
    """Load the target from ``target_dir`` and serve until interrupted (the ``gelato serve`` command); with
    ``metrics_port``, Prometheus metrics on ``http://host:metrics_port/metrics`` too."""
    server = build_edge_server(target_dir, **kwargs)

    async def main() -> None:
        bound = await server.start(host, port)
        if metrics_port is not None:
            from gelato.edge.prometheus import start_metrics_server
            try:
                start_metrics_server(server, metrics_port, host)
            except OSError as exc:
                await server.stop(0)
                raise OSError(f"could not serve metrics on {host}:{metrics_port}: {exc.strerror or exc}") from None
            log.info("Prometheus metrics on http://%s:%d/metrics", host, metrics_port)
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
