"""GELATO exactly as published (arXiv 2605.10124; docs/design-decisions.md: "The outer loop", "The inner loop"), and its two ablations.

Outer loop (per round): virtual energy queue ``Q_{k+1} = max(0, Q_k + E_k - E_bar)``, ``Q_1 = 0``, and the
budget ``g = argmax_{1<=g<=g_max} V * EN(g) / T(g) - Q_k * E(g)`` with ``EN(g) = (1 - a^(g+1)) / (1 - a)`` at
``a = rho0``; ``T`` and ``E`` come from an injected :class:`~gelato.policies.predictor.RoundPredictor` at the
round's link and a payload of ``g`` times the running mean of uplink bits per sent token.

Inner loop (per token): leaky bucket ``B_i = max(0, B_{i-1} + H_i - H_th)`` with ``H_th = phi^-1(rho0)``,
``phi(H) = exp(-c H)``; drafting stops when ``B_i > factor * H_th`` and the overflowing token is not sent.

Where the paper is silent (docs/design-decisions.md, "Where the paper is silent"): the bucket restarts at 0 each round; at least one token is
always sent (the round loop sends position 0 whatever the hook says); the overflowing token was computed
and is billed by the clock; the queue is fed the energy the clock charged (``record.charge.e_round``),
or the predictor's energy of the round as drafted and sent when no clock runs.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gelato.constants import BUCKET_FACTOR, E_BAR_J, G_MAX, RHO0, C, V
from gelato.decoding.policy import DraftPolicy, RoundContext
from gelato.decoding.types import DraftStep, RoundRecord, StopDecision
from gelato.policies.common import (
    LeakyBucket,
    RunningMean,
    bits_per_sent_token,
    expected_tokens_const,
    finite,
)
from gelato.policies.predictor import RoundPredictor, observe_round, require_predictor


class GelatoConfig(BaseModel):
    """GELATO's parameters; defaults are the paper's Table I and its fitted entropy map."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    V: float = Field(V, gt=0, description="Lyapunov trade-off weight of throughput against the queue")
    e_bar: float = Field(E_BAR_J, gt=0, description="long-term device energy budget per round, J")
    rho0: float = Field(RHO0, gt=0, lt=1, description="nominal per-token acceptance")
    c: float = Field(C, gt=0, description="entropy-acceptance map phi(H) = exp(-c H), H in nats")
    bucket_factor: float = Field(BUCKET_FACTOR, gt=0, description="bucket limit in units of H_th")
    g_max: int = Field(G_MAX, ge=1, description="largest draft length")
    init_bits_per_token: float = Field(
        250_000.0, gt=0, description="uplink bits per token before any round is observed "
        "(paper mode: mean top-p support 5000 x (32 + 18) bits)")

    @property
    def h_th(self) -> float:
        """``phi^-1(rho0) = -ln(rho0) / c`` (0.301 nats at rho0 = 0.9, c = 0.35)."""
        return -math.log(self.rho0) / self.c

    @property
    def bucket_limit(self) -> float:
        return self.bucket_factor * self.h_th


def _config(config: GelatoConfig | None, overrides: dict) -> GelatoConfig:
    if config is None:
        return GelatoConfig(**overrides)
    return config.model_copy(update=overrides) if overrides else config


class GelatoPaperPolicy(DraftPolicy):
    """GELATO, paper-exact: drift-plus-penalty budget (outer loop) plus entropy leaky bucket (inner loop).

    Source: GELATO, arXiv 2605.10124, sections III-IV (outer loop: virtual queue and exhaustive search of
    ``V EN(g)/T(g) - Q E(g)``; inner loop: leaky bucket on ``H_i - phi^-1(rho0)``).
    """

    name = "gelato-paper"
    use_outer = True
    use_inner = True

    def __init__(self, predictor: RoundPredictor | None = None, config: GelatoConfig | None = None,
                 **overrides: Any) -> None:
        self.config = _config(config, overrides)
        self.predictor = require_predictor(predictor, self.name) if self.use_outer else predictor
        self.queue = 0.0  # Q_k, updated in observe (so Q_{k+1} once round k is observed)
        self.queue_at_budget = 0.0  # the Q_k this round's budget was chosen with
        self.bits = RunningMean(self.config.init_bits_per_token)
        self.bucket = LeakyBucket(self.config.h_th, self.config.bucket_limit)
        self.last_budget = 0
        self.last_energy: float | None = None
        self.last_utility: float | None = None
        self.overflow_position: int | None = None
        self._ctx: RoundContext | None = None

    # outer loop -------------------------------------------------------------------------------------
    def utilities(self, ctx: RoundContext) -> list[tuple[int, float, float, float]]:
        """``(g, U(g), T(g), E(g))`` for g = 1..g_max at this round's link and the predicted payload."""
        cfg = self.config
        out = []
        for g in range(1, cfg.g_max + 1):
            t, e = self.predictor.predict(g, ctx.link, ctx.context_len, self.bits.value)
            u = cfg.V * expected_tokens_const(cfg.rho0, g) / t - self.queue * e
            out.append((g, u, t, e))
        return out

    def budget(self, ctx: RoundContext) -> int:
        self._ctx = ctx
        self.queue_at_budget = self.queue
        self.bucket.reset()
        self.overflow_position = None
        if not self.use_outer:
            self.last_budget = self.config.g_max
            return self.last_budget
        best = max(self.utilities(ctx), key=lambda row: (row[1], -row[0]))  # ties: the shorter draft
        self.last_budget, self.last_utility = best[0], best[1]
        return self.last_budget

    # inner loop -------------------------------------------------------------------------------------
    def keep_drafting(self, step: DraftStep) -> StopDecision:
        if not self.use_inner:
            return StopDecision.CONTINUE
        if step.position == 0:
            self.bucket.reset()
        if self.bucket.push(step.entropy):
            self.overflow_position = step.position
            return StopDecision.STOP_BEFORE
        return StopDecision.CONTINUE

    # update -----------------------------------------------------------------------------------------
    def round_energy(self, record: RoundRecord) -> float | None:
        """The energy the clock charged, else the predictor's energy of the round as drafted and sent."""
        e = finite(record.charge.e_round) if record.charge is not None else None
        if e is not None or self.predictor is None:
            return e
        ctx = self._ctx
        link, context_len = (ctx.link, ctx.context_len) if ctx is not None else (None, record.start)
        bits = self.bits.value * record.sent / record.drafted if record.drafted > 0 else 0.0  # sent tokens only
        try:
            return self.predictor.predict(max(record.drafted, 0), link, context_len, bits)[1]
        except ValueError:  # a predictor may refuse an empty draft (the round loop's last, budget-0 round)
            return None

    def observe(self, record: RoundRecord) -> None:
        bpt = bits_per_sent_token(record)
        if bpt is not None:
            self.bits.update(bpt)
        e = self.round_energy(record)
        self.last_energy = e
        if e is not None and self.use_outer:
            self.queue = max(0.0, self.queue + e - self.config.e_bar)
        observe_round(self.predictor, record)

    def state(self) -> dict:
        return {
            "policy": self.name,
            "queue": self.queue,
            "queue_at_budget": self.queue_at_budget,
            "budget": self.last_budget,
            "utility": self.last_utility,
            "bucket_peak": self.bucket.peak,
            "bucket_level": self.bucket.level,
            "overflow_position": self.overflow_position,
            "h_th": self.config.h_th,
            "bits_per_token": self.bits.value,
            "energy": self.last_energy,
        }


class GelatoOuterOnlyPolicy(GelatoPaperPolicy):
    """Ablation: the paper's drift-plus-penalty budget with no early exit (drafts the full budget).

    Source: GELATO, arXiv 2605.10124, outer loop alone.
    """

    name = "gelato-outer-only"
    use_inner = False


class GelatoInnerOnlyPolicy(GelatoPaperPolicy):
    """Ablation: the paper's entropy leaky bucket with budget ``g_max`` every round and no energy queue.

    Source: GELATO, arXiv 2605.10124, inner loop alone. No predictor is needed (one is used only to
    estimate the round energy for logs when no clock charges it).
    """

    name = "gelato-inner-only"
    use_outer = False
