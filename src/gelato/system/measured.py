"""The measured planner: a round predictor fitted online from the rounds a live run has measured.

Live runs (``gelato device``, ``gelato api --edge``, the testbed) plan with what they measure, not with the
paper's simulated phone. Each networked round's record carries the verifier's measurement
(``RoundRecord.measured``) and the round's measured phase times (``RoundRecord.wall``); a planning policy hands
every finished record to its predictor's ``observe`` (``gelato.policies.predictor.observe_round``). From the
last ``window`` rounds :class:`MeasuredPlanner` fits, by non-negative least squares
(:meth:`MeasuredProfile.fit`, ``a + b n + c n L``):

* the edge's time per round: ``server_ms`` (queue + forward + verification) against the tokens it is fed
  (``sent + 1``) and the context; a burst (the edge streaming ``n`` tokens by itself) adds ``n`` one-token
  steps, which also price :meth:`MeasuredPlanner.predict_burst` (GELATO's burst action);
* the draft's time: ``wall.draft`` against the drafted tokens and the context;
* the link: the round trip's overhead ``rpc_ms - server_ms`` = ``fixed + per_token * sent`` (serialization,
  transport and the bytes of the sent tokens), and the uplink bytes per sent token (reported).

``T(g) = draft(g, L) + fixed + per_token * g + edge(g + 1, L)``. Device energy stays modelled: a power
profile (:class:`DevicePower`) times those measured times: compute while drafting, transmit for the payload's
share of the link time (``per_token * g``), idle for the rest of the wait. Until ``min_rounds`` measured rounds
it predicts with the ``prior`` (the paper's clock unless given). The policy's ``bits_per_token`` does not enter
a fitted prediction: the measured link already prices the real payload.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from gelato.decoding.types import RoundRecord
from gelato.system.clock import ModelledClock
from gelato.system.compute import MeasuredProfile
from gelato.system.energy import DevicePower

__all__ = ["MeasuredPlanner"]


class MeasuredPlanner:
    """A ``RoundPredictor`` fitted from measured rounds (module docstring); feed it with ``observe(record)``."""

    def __init__(self, prior: ModelledClock | None = None, device_power: DevicePower | None = None,
                 min_rounds: int = 3, window: int = 64) -> None:
        if min_rounds < 3:
            raise ValueError(f"min_rounds must be >= 3 (three coefficients per fit), got {min_rounds}")
        if prior is None:
            from gelato.system.config import SystemConfig

            prior = SystemConfig.paper().build_clock()
        self.prior = prior
        self.device_power = device_power if device_power is not None else prior.device_power
        self.min_rounds = min_rounds
        self.rounds: deque[RoundRecord] = deque(maxlen=window)
        self.seen = 0  # measured rounds observed in all
        self.bursts_seen = 0  # measured bursts observed in all (their steps price predict_burst)
        self.edge: MeasuredProfile | None = None
        self.draft: MeasuredProfile | None = None
        self.link_fixed_s = 0.0
        self.link_per_token_s = 0.0
        self.up_bytes_per_token: float | None = None
        self._lock = threading.Lock()  # one planner may serve concurrent requests (the API over an edge)

    @property
    def fitted(self) -> bool:
        return self.edge is not None

    def observe(self, record: RoundRecord) -> None:
        """Add a finished round (one without a measurement, e.g. in process, is ignored) and refit."""
        if record.measured is None:
            return
        with self._lock:
            self.rounds.append(record)
            self.seen += 1
            self.bursts_seen += record.streamed > 0
            if len(self.rounds) >= self.min_rounds:
                self._fit()

    def _fit(self) -> None:
        rounds = list(self.rounds)
        self.edge = MeasuredProfile.fit([s for r in rounds for s in edge_samples(r)])
        drafted = [(r.drafted, r.start, r.wall.draft) for r in rounds if r.drafted > 0]
        self.draft = MeasuredProfile.fit(drafted) if len(drafted) >= 3 else None
        # the link's overhead, fixed + per sent token; a burst's messages go down while the edge computes the
        # next step, so its overhead beyond the edge's steps is one round trip's (fixed)
        link = _line([(r.sent, r.measured.network_ms / 1e3) for r in rounds])
        self.link_fixed_s, self.link_per_token_s = link
        sent = sum(r.sent for r in rounds)
        self.up_bytes_per_token = sum(r.measured.up_bytes for r in rounds) / sent if sent else None

    def parameters(self) -> dict[str, Any]:
        """The fitted costs (seconds), for logs and tests; ``{"fitted": False}`` before the first fit."""
        with self._lock:
            return self._parameters()

    def _parameters(self) -> dict[str, Any]:
        if not self.fitted:
            return {"fitted": False, "rounds": self.seen}
        return {"fitted": True, "rounds": self.seen, "edge": (self.edge.a, self.edge.b, self.edge.c),
                "draft": (self.draft.a, self.draft.b, self.draft.c) if self.draft is not None else None,
                "link_fixed_s": self.link_fixed_s, "link_per_token_s": self.link_per_token_s,
                "up_bytes_per_token": self.up_bytes_per_token}

    def predict_phases(self, g: int, context_len: int) -> tuple[float, float, float]:
        """Fitted ``(draft s, payload's link s, rest of the wait s)`` of a round that drafts and sends ``g``."""
        t_draft = self.draft.forward_seconds(g, context_len) if self.draft is not None and g > 0 else 0.0
        t_payload = self.link_per_token_s * g
        t_wait = self.link_fixed_s + self.edge.forward_seconds(g + 1, context_len)
        return t_draft, t_payload, t_wait

    def predict(self, g: int, link: Any, context_len: int, bits_per_token: float,
                bits_down: float | None = None) -> tuple[float, float]:
        """Predicted (round time s, device energy J) of drafting and sending ``g`` tokens (the prior's until
        ``min_rounds`` measured rounds)."""
        if g < 0:
            raise ValueError(f"draft budget g must be >= 0, got {g}")
        with self._lock:
            if not self.fitted:
                return self.prior.predict(g, link, context_len, bits_per_token, bits_down)
            t_draft, t_payload, t_wait = self.predict_phases(g, context_len)
        power = self.device_power
        tx = power.transmit_w if power.transmit_w is not None else self.prior.channel.config.uplink_power_w
        energy = power.compute_w * t_draft + tx * t_payload + power.idle_w * t_wait
        return t_draft + t_payload + t_wait, energy

    def predict_burst(self, n: int, link: Any, context_len: int) -> tuple[float, float]:
        """Predicted (time s, device energy J) of a burst of ``n`` tokens the edge streams (the prior's until
        fitted): one round trip's overhead and ``n`` edge steps; the device drafts nothing and waits at idle power
        (receiving the n messages of a few bytes each takes microseconds of the wait)."""
        if n < 1:
            raise ValueError(f"a burst streams at least one token, got n = {n}")
        with self._lock:
            if not self.fitted:
                return self.prior.predict_burst(n, link, context_len)
            steps = sum(self.edge.forward_seconds(1, context_len + i) for i in range(n))
            fixed = self.link_fixed_s
        power = self.device_power
        return fixed + steps, power.idle_w * (fixed + steps)


def edge_samples(record: RoundRecord) -> list[tuple[int, int, float]]:
    """The edge's cost samples of a measured round, ``(tokens fed, context, seconds)``: its one forward, or each
    step of a burst (one token each, the burst's handler time shared evenly)."""
    if record.streamed:
        step = record.measured.server_ms / 1e3 / record.streamed
        return [(1, record.start + i, step) for i in range(record.streamed)]
    return [(record.sent + 1, record.start, record.measured.server_ms / 1e3)]


def _line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """``(intercept, slope)`` of ``y = intercept + slope x``, both >= 0, by least squares."""
    profile = MeasuredProfile.fit([(x, 0, y) for x, y in points])
    return profile.a, profile.b
