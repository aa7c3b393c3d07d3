"""Running the app: under uvicorn in the foreground (``gelato api``) or in a background thread (tests)."""

from __future__ import annotations

import threading
import time

import uvicorn

from gelato.api.app import create_app
from gelato.api.backend import Backend
from gelato.api.respond import Limits
from gelato.api.speculative import Speculation


def serve(backend: Backend, default: Speculation, limits: Limits, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "info") -> None:
    """Serve until interrupted."""
    uvicorn.run(create_app(backend, default, limits), host=host, port=port, log_level=log_level,
                timeout_graceful_shutdown=5)


class ApiServerThread:
    """The app under uvicorn on a background thread, on an OS-picked port; a context manager."""

    def __init__(self, backend: Backend, default: Speculation, limits: Limits | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = create_app(backend, default, limits)
        config = uvicorn.Config(self.app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.host = host
        self.port: int | None = None
        self._thread = threading.Thread(target=self.server.run, name="gelato-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def state(self):
        return self.app.state.gelato

    def start(self, timeout: float = 30.0) -> ApiServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        self.state.executor.shutdown(wait=False, cancel_futures=True)
        self.state.backend.close()

    def __enter__(self) -> ApiServerThread:
        return self.start() if self.port is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
