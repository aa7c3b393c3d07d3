"""Edge sessions: one target KV cache (a CachedCausalLM over the shared model) per device generation.

A session lives as long as its stream. Its committed sequence is prompt + accepted draft tokens + edge
tokens (+ ``pending_ids`` the device sends, e.g. a DSSD residual sample). Quotas: at most
``max_sessions`` in all and ``max_per_owner`` per credential.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import grpc
import torch

from gelato.decoding.sampling import SamplingParams
from gelato.models.cached import CachedCausalLM
from gelato.wire.codec import SessionPayload
from gelato.wire.errors import RequestError


@dataclass
class Session:
    id: int
    lm: CachedCausalLM
    committed: list[int]
    params: SamplingParams
    generator: torch.Generator
    owner: str | None
    device_name: str = ""
    prompt_len: int = 0
    max_new_tokens: int = 0
    report_times: bool = False
    stop_ids: frozenset[int] = frozenset()  # ids that end a burst (the device's EOS)
    payload: SessionPayload = field(default_factory=SessionPayload)  # declared at open; decodes every round
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    last_round: int = 0
    rounds: int = 0
    tokens: int = 0
    closed: bool = False
    opened: bool = False  # its prompt was prefilled and the open answered

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def free(self) -> None:
        """Release the KV cache (run on the model thread)."""
        self.lm.reset()


class SessionStore:
    def __init__(self, max_sessions: int, max_per_owner: int | None = None) -> None:
        self.max_sessions = max_sessions
        self.max_per_owner = max_per_owner
        self._sessions: dict[int, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self):
        return iter(list(self._sessions.values()))

    def new_id(self) -> int:
        while True:
            sid = secrets.randbits(64)
            if sid and sid not in self._sessions:
                return sid

    def reserve_check(self, owner: str | None = None) -> None:
        """RESOURCE_EXHAUSTED when the edge, or this credential's quota, is full (the device backs off)."""
        if len(self._sessions) >= self.max_sessions:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"the edge serves at most {self.max_sessions} sessions and all are in use; "
                               "close one or retry later")
        if owner is not None and self.max_per_owner is not None:
            held = sum(1 for s in self._sessions.values() if s.owner == owner)
            if held >= self.max_per_owner:
                raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"device {owner!r} already holds {held} sessions, its quota on this edge; "
                                   "close one or retry later")

    def add(self, session: Session) -> None:
        self.reserve_check(session.owner)
        self._sessions[session.id] = session

    def remove(self, sid: int) -> Session | None:
        session = self._sessions.pop(sid, None)
        if session is not None:
            session.closed = True
        return session

    def idle(self, timeout_s: float, now: float | None = None) -> list[Session]:
        now = time.monotonic() if now is None else now
        return [s for s in self._sessions.values() if now - s.last_used > timeout_s]
