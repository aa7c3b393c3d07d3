"""What GELATO needs from the system model: a predicted (time, energy) of one round.

GELATO's outer loop compares candidate draft lengths ``g`` by their predicted round time ``T(g)`` and
device energy ``E(g)`` under the current channel (paper section II; docs/design-decisions.md, "The outer loop"). The
policies do not build that model themselves: they take any object with a ``predict`` method of the
:class:`RoundPredictor` shape (``gelato.system``'s ``ModelledClock`` is one). :class:`LinearRoundPredictor`
is a small, explicit linear model for tests and for runs without a modelled clock. A predictor that learns
(``observe(record)``, e.g. ``gelato.system.measured.MeasuredPlanner`` in live runs) is fed every finished round
by the policy's ``observe`` (:func:`observe_round`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class RoundPredictor(Protocol):
    def predict(self, g: int, link: Any, context_len: int, bits_per_token: float) -> tuple[float, float]:
        """Predicted ``(round time in s, device energy in J)`` of a round that drafts and sends ``g`` tokens
        with an uplink payload of ``g * bits_per_token`` bits over ``link`` (``None``: a nominal link)."""
        ...


def link_uplink_bps(link: Any, default: float) -> float:
    """The uplink rate of a link state (``ChannelState.uplink_bps``), or ``default`` without one."""
    if link is None:
        return default
    rate = getattr(link, "uplink_bps", None)
    if rate is None and isinstance(link, dict):
        rate = link.get("uplink_bps")
    if rate is None:
        return default
    rate = float(rate)
    return rate if rate > 0 and math.isfinite(rate) else 1e-9  # a dead link: nothing gets through


@dataclass(frozen=True)
class LinearRoundPredictor:
    """A round's time and device energy, linear in the draft length and the payload.

    ``T(g) = t_fixed + g (t_token + t_token_ctx * L) + g b / r`` and
    ``E(g) = e_fixed + g (e_token + e_token_ctx * L) + p_up g b / r``, where ``b`` is bits per token, ``L``
    the context length and ``r`` the link's uplink rate (``link.uplink_bps``; ``rate_bps`` when ``link`` is
    None). The defaults are the paper's orders of magnitude: ~15 ms and 0.18 J per drafted token for a 0.5B
    draft at 40 GFLOP/s and 12 W, 100 ms of verification, 23 dBm (0.2 W) transmit power.
    """

    t_fixed: float = 0.1
    t_token: float = 0.015
    e_token: float = 0.18
    p_up: float = 0.2
    rate_bps: float = 10e6
    e_fixed: float = 0.0
    t_token_ctx: float = 0.0
    e_token_ctx: float = 0.0

    def __post_init__(self) -> None:
        for name in ("t_fixed", "t_token", "e_token", "p_up", "e_fixed", "t_token_ctx", "e_token_ctx"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not (math.isfinite(self.rate_bps) and self.rate_bps > 0):
            raise ValueError(f"rate_bps must be a finite number > 0, got {self.rate_bps}")

    def predict(self, g: int, link: Any, context_len: int, bits_per_token: float) -> tuple[float, float]:
        if g < 0:
            raise ValueError(f"draft length must be >= 0, got {g}")
        t_up = g * max(0.0, bits_per_token) / link_uplink_bps(link, self.rate_bps)
        t = self.t_fixed + g * (self.t_token + self.t_token_ctx * context_len) + t_up
        e = self.e_fixed + g * (self.e_token + self.e_token_ctx * context_len) + self.p_up * t_up
        return t, e


def observe_round(predictor: Any, record: Any) -> None:
    """Hand a finished round to a predictor that learns from rounds (one with ``observe(record)``, e.g.
    ``gelato.system.measured.MeasuredPlanner``); the one place planning policies feed their predictor."""
    observe = getattr(predictor, "observe", None)
    if callable(observe):
        observe(record)


def require_predictor(predictor: Any, policy: str) -> RoundPredictor:
    if predictor is None:
        raise ValueError(f"policy {policy!r} needs a round predictor (an object with "
                         f"predict(g, link, context_len, bits_per_token) -> (seconds, joules)), e.g. the "
                         f"modelled clock or gelato.policies.LinearRoundPredictor")
    if not callable(getattr(predictor, "predict", None)):
        raise TypeError(f"policy {policy!r}: predictor {type(predictor).__name__} has no predict() method")
    return predictor
