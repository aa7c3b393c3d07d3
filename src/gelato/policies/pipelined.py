"""Draft-ahead policies: how many tokens to pre-draft while a round's verdict is in flight.

A pre-draft of ``m`` tokens after a sent draft ``x_1..x_g`` is usable iff every sent token is accepted and
the edge's own token equals ``x_{g+1}``; then ``x_{g+2}..x_{g+m}`` head the next round's draft and the
device skips drafting them. Its energy is spent either way; its time overlaps the uplink, verification and
downlink, except what runs past them (the modelled clock's ``overlap_timeline``).

* ``static-5-pipelined``: K = 5, and always pre-draft ``K + 1`` tokens (enough for the whole next draft),
  or as many as fit in the predicted wait when a predictor is given.
* ``gelato-improved-pipelined`` (ours): gelato-improved's draft length, stop rule and energy price, and a
  pre-draft depth chosen per round by the same price. With ``P_use = P(all g accepted) * P(x_{g+1} matches)``
  (the entropy-acceptance map on the sent tokens' entropies, the per-position acceptance EMA for the next
  one), ``t, e`` the time and energy of one drafted token, ``W`` the predicted wait and ``B`` the next
  round's likely budget, the value in tokens of pre-drafting ``m`` is

      U(m) = min(m - 1, B) P_use (theta t + lambda e) - lambda e m - theta max(0, m t - W)

  (``theta``: the run's tokens per second, ``lambda``: the energy price in tokens per joule, moved by the
  Lyapunov queue on the energy actually spent, pre-drafts included). ``m = argmax U``: when the budget is
  slack (``lambda = 0``) it pre-drafts what the wait hides; as the energy price rises it pre-drafts less,
  and only when a full accept is likely.
"""

from __future__ import annotations

import math
from typing import Any

from gelato.decoding.policy import RoundContext
from gelato.decoding.types import Draft, RoundRecord
from gelato.policies.common import RunningMean, bits_per_sent_token
from gelato.policies.gelato_improved import GelatoImprovedPolicy
from gelato.policies.predictor import observe_round
from gelato.policies.static import StaticPolicy


def wait_and_token_cost(predictor: Any, g: int, link: Any, context_len: int,
                        bits_per_token: float) -> tuple[float, float, float]:
    """``(wait s, t_token s, e_token J)``: the predicted uplink + verify + downlink time of a round that sends
    ``g`` tokens, and the time and energy of drafting one more token after them.

    From the predictor's totals: ``T0(n) = predict(n, payload 0)`` is drafting plus the fixed wait, so
    ``wait = T(g, bits) - T0(g) + T0(0)``, ``t_token = T0(g + 1) - T0(g)``."""
    t_g, _ = predictor.predict(g, link, context_len, bits_per_token)
    t0_g, e0_g = predictor.predict(g, link, context_len, 0.0)
    t0_next, e0_next = predictor.predict(g + 1, link, context_len, 0.0)
    t0_none, _ = predictor.predict(0, link, context_len, 0.0)
    return max(0.0, t_g - t0_g + t0_none), max(1e-12, t0_next - t0_g), max(0.0, e0_next - e0_g)


def predraft_value(m: int, p_use: float, theta: float, price: float, t_token: float, e_token: float,
                   wait: float, next_budget: int) -> float:
    """``U(m)`` in tokens (module docstring): expected time and energy saved next round, minus the energy
    of every pre-drafted token and the pre-draft time the wait does not hide."""
    saved = min(max(m - 1, 0), next_budget) * p_use * (theta * t_token + price * e_token)
    return saved - price * e_token * m - theta * max(0.0, m * t_token - wait)


def best_predraft_depth(p_use: float, theta: float, price: float, t_token: float, e_token: float, wait: float,
                        next_budget: int, limit: int) -> int:
    """``argmax_{0 <= m <= limit} U(m)``; ties go to the shallower pre-draft."""
    best, best_u = 0, 0.0
    for m in range(1, limit + 1):
        u = predraft_value(m, p_use, theta, price, t_token, e_token, wait, next_budget)
        if u > best_u + 1e-12:
            best, best_u = m, u
    return best


class StaticPipelinedPolicy(StaticPolicy):
    """Static SD with K tokens a round that always drafts ahead ``K + 1`` tokens (capped by what fits in the
    predicted wait when a predictor is given). Source: PipeSD / PicoSpec-style pipelined drafting (no
    energy budget), on Leviathan et al.'s static speculative decoding."""


    def __init__(self, k: int = 5, predictor: Any = None, depth: int | None = None,
                 init_bits_per_token: float = 8.0) -> None:
        super().__init__(k)
        self.name = f"static-{k}-pipelined"
        self.predictor = predictor
        self.depth = k + 1 if depth is None else depth
        if self.depth < 0:
            raise ValueError(f"pre-draft depth must be >= 0, got {self.depth}")
        self.bits = RunningMean(init_bits_per_token, alpha=0.05)
        self.last_depth = 0

    def predraft(self, ctx: RoundContext, draft: Draft) -> int:
        depth = self.depth
        if self.predictor is not None and draft.tokens:
            wait, t_token, _ = wait_and_token_cost(self.predictor, len(draft.tokens), ctx.link,
                                                   ctx.context_len, self.bits.value)
            depth = min(depth, max(1, int(math.floor(wait / t_token + 1e-9))))
        self.last_depth = depth
        return depth

    def observe(self, record: RoundRecord) -> None:
        bits = bits_per_sent_token(record)
        if bits is not None:
            self.bits.update(bits)
        observe_round(self.predictor, record)

    def state(self) -> dict:
        return {**super().state(), "predraft": self.last_depth}


class GelatoImprovedPipelinedPolicy(GelatoImprovedPolicy):
    """gelato-improved (ours) with an energy-priced pre-draft depth (module docstring).

    Source: this project, built on GELATO (arXiv 2605.10124) and pipelined drafting (PipeSD, PicoSpec)."""

    name = "gelato-improved-pipelined"

    def __init__(self, predictor: Any = None, config: Any = None, max_predraft: int | None = None,
                 **overrides: Any) -> None:
        super().__init__(predictor, config, **overrides)
        self.max_predraft = self.config.g_max + 1 if max_predraft is None else max_predraft
        self.pre = {"depth": 0, "p_use": None, "wait": None, "used": None}
        self.used_rate = RunningMean(0.5, alpha=0.05)
        self.sent = RunningMean(float(self.config.g_max) / 3, alpha=0.05)  # tokens a round sends (next budget)

    def budget(self, ctx: RoundContext) -> int:
        # tokens already drafted ahead cost nothing more to draft: send at least those
        return max(super().budget(ctx), min(ctx.carried, self.config.g_max))

    def predraft(self, ctx: RoundContext, draft: Draft) -> int:
        g = len(draft.tokens)
        if g == 0 or self.theta is None:
            return 0
        p_full = 1.0
        for h in draft.entropies[:g]:
            p_full *= self.map(h)
        a_next = self.position_acc[min(g, len(self.position_acc) - 1)]
        p_use = p_full * a_next
        wait, t_token, e_token = wait_and_token_cost(self.predictor, g, ctx.link, ctx.context_len, self.bits.value)
        next_budget = max(1, int(round(self.sent.value)))
        depth = best_predraft_depth(p_use, self.theta, self.price, t_token, e_token, wait, next_budget,
                                    self.max_predraft)
        self.pre = {"depth": depth, "p_use": p_use, "wait": wait, "used": None}
        return depth

    def observe(self, record: RoundRecord) -> None:
        super().observe(record)
        if not record.streamed:  # a burst sends no draft: it says nothing of the next drafted round's size
            self.sent.update(record.sent)
        if record.predrafted:
            self.used_rate.update(float(record.predraft_used))
            self.pre["used"] = record.predraft_used

    def state(self) -> dict:
        return {**super().state(), "predraft": self.pre["depth"], "predraft_p_use": self.pre["p_use"],
                "predraft_wait": self.pre["wait"], "predraft_used_rate": self.used_rate.value}
