"""Device-edge transport: wire format, gRPC edge server, device client, auth, limits, link emulation.

- :mod:`~gelato.transport.server`: :class:`EdgeConfig`, :class:`EdgeServer` (builds and runs the edge);
  :mod:`~gelato.transport.service`: its gRPC handlers (one ``Generate`` stream per generation, Health/Metrics)
- :mod:`~gelato.transport.rounds`: the Open and round-ordering rules; :mod:`~gelato.transport.worker`: the
  model thread (batched rounds, chunked prefill); :mod:`~gelato.transport.process`: :class:`EdgeServerThread`,
  :func:`build_edge_server`, :func:`serve` (``gelato serve``)
- :mod:`~gelato.transport.channel`: :class:`EdgeClient`, :class:`EdgeStream`; :mod:`~gelato.transport.client`:
  :class:`RemoteVerifier` (the engine's Verifier over a stream, with resume, backoff and deadlines)
- sessions' KV caches are slots in blocks of a :class:`gelato.models.kv_store.SlotKVStore` inside the
  ``--kv-memory`` budget: a batched round is one forward per block; :mod:`~gelato.transport.prometheus`:
  the edge's Prometheus endpoint
- :mod:`~gelato.transport.link`: :class:`LinkEmulator`, a user-space rate/delay/fading/loss TCP proxy
- :mod:`~gelato.wire.payload` / :mod:`~gelato.transport.codec`: messages and their sizes
- :mod:`~gelato.transport.auth`, :mod:`~gelato.transport.errors`, :mod:`~gelato.transport.fingerprint`

Names are imported lazily so that light users (the link emulator) do not load torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "EdgeConfig": "server", "EdgeServer": "server", "EdgeServerThread": "process", "serve": "process",
    "build_edge_server": "process", "ModelWorker": "worker",
    "EdgeClient": "channel", "EdgeStream": "channel", "RemoteVerifier": "client", "RoundTiming": "client", "RemoteStats": "client",
    "LinkConfig": "link", "LinkEmulator": "link", "LinkThread": "link",
    "TransportError": "errors", "EdgeUnavailableError": "errors", "EdgeRejectedError": "errors",
    "RequestError": "errors", "EdgeTLSError": "errors", "EdgeCancelledError": "errors",
    "tokenizer_fingerprint": "fingerprint", "synthetic_fingerprint": "fingerprint", "vocab_fingerprint": "fingerprint",
    "load_tokens": "auth",
}

__all__ = list(sorted(_EXPORTS))  # noqa: C414


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gelato.transport' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gelato.transport.{module}"), name)
