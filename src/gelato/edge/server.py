"""The edge server: its configuration, and :class:`EdgeServer`, which builds the sessions, the KV store and the
model worker behind the ``gelato.v1.Edge`` gRPC service and runs them (start, stop, hosted mode, metrics).
The request handling (streams, rounds, status codes) is :mod:`gelato.edge.service`.

Start it from in-memory objects (tests, benchmarks)::

    server = EdgeServer(target_model, fingerprint=synthetic_fingerprint(64), config=EdgeConfig(max_batch=8))
    with EdgeServerThread(server) as running:      # gelato.edge.process: background loop, OS-picked port
        print(running.port)

or from a model directory with :func:`gelato.edge.process.serve` (the ``gelato serve`` command).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
import torch

from gelato.edge.rounds import Limits
from gelato.edge.service import EdgeService
from gelato.edge.sessions import SessionStore
from gelato.edge.stats import EdgeMetrics
from gelato.edge.worker import ModelWorker
from gelato.models.cached import CachedCausalLM
from gelato.models.kv_store import SlotKVStore, default_kv_budget
from gelato.models.slots import SlotSequence, supports_slots
from gelato.models.static_verify import make_static_engine
from gelato.wire.auth import TokenAuthenticator, check_key_pair, server_credentials
from gelato.wire.payload import PayloadConfig

log = logging.getLogger("gelato.edge.server")


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


class EdgeServer(EdgeService):
    """Target model + sessions + model worker; ``await start()`` serves on a port, ``await stop()`` ends.
    The ``Edge`` service's handlers (``generate``, ``health``, ...) come from :class:`EdgeService`."""

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
        self.sessions = SessionStore(self.config.max_sessions,
                                  self.config.max_sessions_per_device if self.config.tokens else None)
        self.metrics = EdgeMetrics()
        self.auth = TokenAuthenticator(self.config.tokens)
        self._live_caches: weakref.WeakSet[CachedCausalLM | SlotSequence] = weakref.WeakSet()
        # Sessions' KV caches are slots in blocks of a store inside the KV budget (models/kv_store.py): batched
        # rounds copy no history, a session costs what its context needs, and closed sessions' memory returns.
        device = next(self.model.parameters()).device
        self.kv_budget = int(self.config.kv_memory or default_kv_budget(device))
        self.kv_store = (SlotKVStore(self.model, self.vocab_size, budget_bytes=self.kv_budget,
                                 block_slots=min(8, self.config.max_sessions),
                                 max_capacity=min(self.max_context, 1 << 20))
                     if supports_slots(self.model) and self.static is None else None)
        self.kv_context = self.kv_store.max_capacity if self.kv_store is not None else self.max_context
        self.batchable = self.kv_store is not None
        if self.config.max_batch > 1 and not self.batchable and self.static is None:
            log.warning("the model's attention does not fit slot caching: verifying one session at a time")
        self.worker = ModelWorker(self.metrics, max_batch=self.config.max_batch if self.batchable else 1,
                                  window_s=self.config.batch_window_ms / 1000.0,
                                  prefill_chunk=self.config.prefill_chunk,
                                  prefill_budget_ms=self.config.prefill_budget_ms, others_waiting=self._others_could_send,
                                  on_idle=self.kv_store.trim if self.kv_store is not None else None)
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

    async def stop(self, grace: float | None = None) -> None:
        self.stopping = True
        if self._server is not None:
            await self._server.stop(self.config.grace_s if grace is None else grace)
        await self.worker.stop()
        for session in self.sessions:
            self.sessions.remove(session.id)
            await self.worker.run(session.free)
        self.worker.shutdown()
        self._server = None

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    # ------------------------------------------------------------------ introspection
    @property
    def active_sessions(self) -> int:
        return len(self.sessions)

    def kv_holders(self) -> int:
        """Sessions' caches holding KV storage right now (0 when no session is open and nothing leaked)."""
        return self.kv_store.holders if self.kv_store is not None else 0

    def cache_tokens(self) -> int:
        """KV cache positions held by every live session cache (open or not yet collected)."""
        return sum(lm.cache_len for lm in list(self._live_caches))

    def metrics_dict(self) -> dict:
        d = self.metrics.to_dict(self.active_sessions, self.cache_tokens())
        d.update(model_name=self.config.model_name, vocab_size=self.vocab_size, max_batch=self.worker.max_batch,
                 batch_window_ms=self.config.batch_window_ms, prefilling=self.worker.prefilling)
        if self.kv_store is not None:
            d.update(kv_slots=self.kv_store.slots, kv_capacity=self.kv_store.capacity, kv_bytes=self.kv_store.bytes_allocated,
                     kv_budget_bytes=self.kv_budget, kv_peak_bytes=self.kv_store.peak_bytes,
                     kv_blocks=len(self.kv_store.blocks), kv_held_slots=self.kv_store.holders,
                     kv_migrations=self.kv_store.migrations,
                     kv_grow_events=self.kv_store.grow_events, kv_forwards=self.kv_store.forward_calls,
                     kv_feed_ms=self.kv_store.feed_s * 1e3, kv_model_ms=self.kv_store.model_s * 1e3)
        if self.static is not None:
            d.update(static_forwards=self.static.forward_calls, static_graphs=self.static.graphs_captured,
                     static_swaps=self.static.swaps, static_padded_tokens=self.static.padded_tokens)
        return d

    def _others_could_send(self, in_batch: int) -> bool:
        """Worth waiting for more rounds only if ready sessions exist besides those already batched."""
        return len(self.sessions) - self.worker.prefilling > in_batch
