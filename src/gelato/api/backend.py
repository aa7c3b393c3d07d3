"""The models behind the server and what each request gets: its own proposer, verifier, policy and clock.

One draft (and, without an edge, one target) per server process. Concurrent requests share the draft's
weights but never a KV cache: each request wraps the draft in its own :class:`CachedCausalLM`, so drafts
run in parallel threads without a lock (inference-mode forwards do not modify the module).

Without an edge the target is still verified by the edge's code: an in-process :class:`EdgeServer` on
loopback (started with the first request) holds every request's KV cache as a slot of its pool and
verifies concurrent requests' rounds in one batched target forward. It requires a bearer token made for
this process alone, so its port is no way around the API's keys and limits. ``batch=False`` verifies each
request on its own instead (one target forward per request and round, the reference for the speed-up).
"""

from __future__ import annotations

import random
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from gelato.api.speculative import Speculation, build_policy
from gelato.decoding.sampling import SamplingParams
from gelato.decoding.types import Burst, Draft, Verdict
from gelato.device.client import message_measurement
from gelato.device.edge_client import EdgeClient
from gelato.device.pair import remote_pair
from gelato.edge.process import EdgeServerThread
from gelato.edge.server import EdgeConfig, EdgeServer
from gelato.generation import DraftModelProposer, local_pair
from gelato.models.loading import load_causal_lm, load_pair, load_tokenizer, shared_vocab_size
from gelato.system.config import SystemConfig
from gelato.system.measured import MeasuredPlanner
from gelato.wire.fingerprint import tokenizer_fingerprint
from gelato.wire.payload import PayloadConfig

SYSTEMS = {"paper": SystemConfig.paper, "generic": SystemConfig.generic}


class GenerationCancelled(Exception):
    """Raised inside the round loop when the client went away or a stop string ended the text."""


class CancellableVerifier:
    """Wraps a request's verifier: stops before a round once cancelled. Each verdict carries the round's
    measurement (``Verdict.measured``): the edge's, else the sizes of the messages the wire would carry."""

    def __init__(self, inner, payload: PayloadConfig, cancelled: Callable[[], bool]) -> None:
        self.inner = inner
        self.payload = payload
        self.cancelled = cancelled
        self._round = 0

    @property
    def max_draft(self) -> int | None:
        return getattr(self.inner, "max_draft", None)

    @property
    def max_stream(self) -> int | None:
        return getattr(self.inner, "max_stream", None)

    def stream(self, committed: Sequence[int], n: int, on_token=None, stop_ids: Sequence[int] = ()) -> Burst:
        """A burst (the edge decoding alone, each token handed on as it arrives); a cancel ends it at the next
        token."""
        if self.cancelled():
            raise GenerationCancelled()

        def arrived(token: int) -> None:
            if on_token is not None:
                on_token(token)
            if self.cancelled():
                raise GenerationCancelled()

        self._round += 1
        return self.inner.stream(committed, n, arrived, stop_ids)

    def verify(self, committed: Sequence[int], draft: Draft) -> Verdict:
        if self.cancelled():
            raise GenerationCancelled()
        verdict = self.inner.verify(committed, draft)
        self._round += 1
        if verdict.measured is None:
            verdict = replace(verdict, measured=message_measurement(committed, draft, verdict, self._round,
                                                                    self.payload))
        return verdict


@dataclass
class GenerationParts:
    proposer: DraftModelProposer
    verifier: CancellableVerifier
    policy: object
    clock: object | None
    close: Callable[[], None] = field(default=lambda: None)


@dataclass
class EdgeSettings:
    address: str
    token: str | None = None
    rpc_timeout: float = 10.0
    unreachable_after: float = 30.0
    tls: bool = False  # TLS with the system roots, or with tls_ca
    tls_ca: bytes | None = None  # PEM of the edge's CA
    server_name: str | None = None  # TLS name to verify, if not the host


class Backend:
    def __init__(self, draft: torch.nn.Module, tokenizer, target: torch.nn.Module | None = None,
                 edge: EdgeSettings | None = None, system: str | None = None, model_name: str = "gelato",
                 batch: bool = True) -> None:
        if (target is None) == (edge is None):
            raise ValueError("give a target model (in-process verification) or an edge address, not both")
        if system is not None and system not in SYSTEMS:
            raise ValueError(f"unknown system model {system!r}; choose one of {', '.join(SYSTEMS)}")
        self.draft = draft
        self.target = target
        self.tokenizer = tokenizer
        self.edge = edge
        self.system = system
        self.model_name = model_name
        self.fingerprint = tokenizer_fingerprint(tokenizer)
        self.batch = batch and target is not None  # verify through an in-process edge (see the module docstring)
        self._local_edge: EdgeServerThread | None = None
        self._local_token = secrets.token_urlsafe(32)  # the in-process edge's credential: only this process has it
        self._lock = threading.Lock()
        self._planners: dict[object, MeasuredPlanner] = {}  # payload mode -> the edge's measured planner
        models = [m for m in (draft, target) if m is not None]
        self.context_window = min(int(getattr(m.config, "max_position_embeddings", 0) or 1 << 30) for m in models)
        self.eos_token_id = tokenizer.eos_token_id

    @property
    def mode(self) -> str:
        return "edge" if self.edge is not None else "local"

    def parts(self, prompt_ids: Sequence[int], params: SamplingParams, seed: int | None, spec: Speculation,
              max_new_tokens: int, cancelled: Callable[[], bool]) -> GenerationParts:
        """Fresh per-request state. Blocking (an edge session opens here): call it from the worker thread."""
        seed = random.randrange(2**31) if seed is None else seed
        payload = PayloadConfig(mode=spec.payload, greedy=params.greedy)
        clock = None
        if self.system is not None:
            cfg = SYSTEMS[self.system]()
            clock = cfg.model_copy(update={"payload": cfg.payload.model_copy(
                update={"mode": spec.payload, "greedy": params.greedy})}).build_clock(seed)
        if clock is not None:
            predictor = clock
        elif self.edge is not None:
            predictor = self.planner(spec.payload)
        else:
            predictor = SystemConfig.paper().build_clock(seed)
        policy = build_policy(spec, predictor)
        if self.edge is None and not self.batch:
            proposer, inner = local_pair(self.draft, self.target, params, seed,
                                         shared_vocab_size(self.draft, self.target), spec.payload)
            close = lambda: None  # noqa: E731
        else:
            e = self.edge or EdgeSettings(self.local_edge_address(), token=self._local_token)
            client = EdgeClient(e.address, token=e.token, tls=e.tls, root_ca=e.tls_ca, server_name=e.server_name)
            on_cancel = getattr(cancelled, "on_cancel", None)
            # a client that leaves ends the open (and the edge's prefill) at once
            watch = (lambda verifier: on_cancel(verifier.cancel)) if on_cancel is not None else None
            try:
                proposer, inner = remote_pair(self.draft, client, params, prompt_ids, fingerprint=self.fingerprint,
                                              seed=seed, on_verifier=watch, payload=spec.payload,
                                              device_name="gelato-api", max_new_tokens=max_new_tokens,
                                              stop_ids=[] if self.eos_token_id is None else [self.eos_token_id],
                                              rpc_timeout=e.rpc_timeout, unreachable_after=e.unreachable_after)
            except BaseException:
                client.close()
                raise

            def close() -> None:
                inner.close()
                client.close()
        return GenerationParts(proposer, CancellableVerifier(inner, payload, cancelled), policy, clock, close)


    def planner(self, payload: object) -> MeasuredPlanner:
        """What requests over the edge plan with (``--system`` unset): one :class:`MeasuredPlanner` per payload
        mode, shared by every request, so each plans with the rounds measured so far on this edge and link."""
        with self._lock:
            if payload not in self._planners:
                self._planners[payload] = MeasuredPlanner()
            return self._planners[payload]

    def local_edge_address(self) -> str:
        """The in-process edge's loopback address (started on first use). It answers only calls that carry
        this process's own bearer token (:attr:`_local_token`, never printed), so the API's keys and
        ``--max-concurrent`` cover every path to the target: a client that finds the port gets
        UNAUTHENTICATED."""
        with self._lock:
            if self._local_edge is None:
                vocab = shared_vocab_size(self.draft, self.target)
                sessions = EdgeConfig.max_sessions
                server = EdgeServer(self.target, fingerprint=self.fingerprint, vocab_size=vocab,
                                    config=EdgeConfig(model_name=self.model_name, max_batch=8, batch_window_ms=2.0,
                                                      grace_s=0.1, tokens={self._local_token: "gelato-api"},
                                                      max_sessions=sessions, max_sessions_per_device=sessions))
                self._local_edge = EdgeServerThread(server)
                self._local_edge.start()
            return self._local_edge.address

    def close(self) -> None:
        with self._lock:
            if self._local_edge is not None:
                self._local_edge.stop()
                self._local_edge = None


def load_backend(draft_dir: Path, target_dir: Path | None = None, edge: EdgeSettings | None = None,
                 system: str | None = None, dtype: str = "float32", device: str = "cpu",
                 model_name: str | None = None) -> Backend:
    """Load the draft (and the target unless an edge verifies) from local directories."""
    if edge is None:
        if target_dir is None:
            raise ValueError("without an edge the target model is needed (give a target directory)")
        draft, target, tokenizer = load_pair(draft_dir, target_dir, dtype, device)
    else:
        draft, target, tokenizer = load_causal_lm(draft_dir, dtype, device), None, load_tokenizer(draft_dir)
    return Backend(draft, tokenizer, target, edge, system, model_name or model_name_of(target_dir or draft_dir))


def model_name_of(model_dir: Path) -> str:
    """A built-in pair's name (``<pair>/target``), else the model directory's own name."""
    d = Path(model_dir).resolve()
    return (d.parent.name if d.name in ("draft", "target") else d.name) or "gelato"
