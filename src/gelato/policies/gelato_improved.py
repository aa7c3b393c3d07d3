"""GELATO, improved (ours): the paper's two loops, fed by online estimates and priced consistently.

What changes with respect to the paper (``gelato_paper.py``), and why:

1. **Acceptance is measured, not assumed.** The paper plans with a single ``rho0 = 0.9`` and an offline map
   ``phi(H) = exp(-0.35 H)``. Here the entropy-acceptance map ``a(H) = P(token accepted | prefix accepted,
   its entropy H)`` is refitted online from every verified ``(H, accepted)`` pair (binned counts with an
   exponential forgetting, shrunk towards the paper's map, made non-increasing by pool-adjacent-violators,
   interpolated between bins), and per-position acceptances are tracked by EMA for the plan's ``EN(g)``.
2. **The objective is tokens per second of the whole run**, ``sum N / sum T``, not the mean of per-round
   ratios ``N_k / T_k`` the paper maximises. By Dinkelbach's parametrisation, a policy maximising the ratio
   maximises ``E[N] - theta E[T]`` with ``theta`` the achieved throughput; ``theta`` is tracked online.
3. **Energy has a price, scaled to the system.** With the energy constraint the per-round objective is
   ``E[N] - theta E[T] - lambda E[E]`` (tokens), ``lambda`` in tokens per joule. ``lambda`` is the paper's
   virtual queue in disguise (a dual variable moved by ``E_k - E_target`` each round, reflected at 0), but
   its step is normalised by the run's own tokens per joule ``lambda_0`` and by ``E_bar``:
   ``lambda / lambda_0 += price_step * (E_k - E_target) / E_bar``. The energy a queue accumulates before it
   prices energy right is its equilibrium level, ``V`` times the multiplier in the paper (hundreds of
   joules at ``V = 100``, i.e. tens of percent over ``E_bar`` in a 1000-round average when the budget
   binds); here it is ``(lambda* / lambda_0) E_bar / price_step``, a few ``E_bar``, whatever the units of
   the system. ``E_target = E_bar (1 - margin)`` keeps the 1000-round average under ``E_bar``.
4. **The inner loop stops on expected marginal value, not at a fixed entropy.** After drafting token ``i``
   the probability that the whole prefix through ``i`` is accepted is ``P_i = P_{i-1} a(H_i)``; sending it
   is worth ``P_i`` expected tokens and costs its uplink bits (time and energy, priced by ``theta`` and
   ``lambda``); drafting another token costs its compute. The continuation value ``W_i(P)`` of drafting on
   from position ``i`` with prefix probability ``P`` is solved each round by backward induction over a grid
   of ``P``. Entropy is persistent in real text (a hard passage stays hard), so the next token's
   acceptance is drawn from recent consecutive-token pairs conditioned on the current token's entropy
   regime (quantile bins), not from the marginal. The token is dropped (``STOP_BEFORE``) when sending it
   does not pay, drafting continues while ``W_{i+1}(P_i) > 0``, else ``STOP_AFTER``. So the stop adapts to
   the channel (a slow uplink stops earlier), to the energy price, and to how acceptance really depends on
   entropy for this pair; computed-but-dropped tokens are billed (their compute is in ``W``).
5. **Payload is predicted per token**: uplink bits per round are regressed on the number of sent tokens in
   each entropy bin (ridge least squares towards the mean, forgetting), which fits an id-only payload (flat)
   and a top-p payload whose support grows with entropy alike, so a high-entropy token is charged what it
   really costs to send.

The budget handed to the round loop is the longest draft whose continuation value at ``P = 1`` is positive
(at most ``g_max``); the paper-style reference ``g_ref = argmax_g EN(g) - theta T(g) - lambda E(g)`` with the
per-position estimates is logged next to it.

6. **The edge may stream instead** (issue 31). Before drafting, the round may be a burst: the edge generates
   C tokens by itself and streams them (one request, C edge steps, the downlink; the device pays only the
   request, receiving and waiting); C is at least ``burst_tokens`` and long enough that the round trip is at
   most ``burst_overhead`` of the burst's time (or the rest of the answer). It is chosen when its energy-priced
   rate ``(C - lambda E_b) / T_b`` beats every draft length's ``(EN(g) - lambda E(g)) / T(g)`` (per second,
   not per action: a burst lasts many rounds): when drafting does not pay (a fast edge,
   a long round trip, low acceptance), and when energy is dear (an exhausted budget waits for a burst
   instead of paying a round trip per token). Needs a predictor with ``predict_burst(n, link, context_len)``
   (the modelled clock) and a verifier that streams; the first round drafts, so that drafting's payload is
   measured before it is compared (its prior, the paper's top-p payload, would make every burst look cheap).

Source: GELATO, arXiv 2605.10124 (the two loops and the queue); Dinkelbach 1967 (ratio objective);
Neely, "Stochastic Network Optimization" 2010 (drift-plus-penalty, renewal form); docs/design-decisions.md, "Beyond the paper".
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gelato.constants import E_BAR_J, G_MAX, RHO0, C
from gelato.decoding.policy import DraftPolicy, RoundContext
from gelato.decoding.types import DraftStep, RoundRecord, StopDecision
from gelato.policies.common import RunningMean, acceptance_outcomes, finite
from gelato.policies.estimators import EntropyAcceptanceMap, PayloadModel
from gelato.policies.predictor import RoundPredictor, observe_round, require_predictor


class GelatoImprovedConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    e_bar: float = Field(E_BAR_J, gt=0, description="long-term device energy budget per round, J")
    g_max: int = Field(G_MAX, ge=1, description="largest draft length")
    price_step: float = Field(0.05, gt=0, description="dual step: per round the energy price moves by "
                              "price_step * lambda_0 * (E_k - E_target) / E_bar, lambda_0 = tokens per joule")
    energy_margin: float = Field(0.01, ge=0, lt=0.5, description="the price steers to E_target = E_bar (1 - margin)")
    min_price: float = Field(0.0, ge=0, description="floor of the energy price, in units of lambda_0 (0: energy "
                             "is free while the budget is slack)")
    rho0: float = Field(RHO0, gt=0, lt=1, description="prior per-position acceptance (paper's rho0)")
    c: float = Field(C, gt=0, description="prior map phi(H) = exp(-c H) (paper's fit)")
    prior_weight: float = Field(3.0, gt=0, description="pseudo-observations of the prior map per bin")
    map_memory: float = Field(3000.0, ge=10, description="forgetting horizon of the map, in verified tokens")
    position_alpha: float = Field(0.05, gt=0, le=1, description="EMA weight of per-position acceptance")
    throughput_memory: float = Field(300.0, ge=1, description="rounds of memory of the throughput estimate")
    entropy_window: int = Field(512, ge=8, description="recent entropies describing the next tokens")
    dp_samples: int = Field(16, ge=2, description="quantiles of the next-token distribution used by W")
    regimes: int = Field(4, ge=1, description="entropy regimes (quantile bins) the next token is conditioned on")
    refresh_every: int = Field(8, ge=1, description="rounds between refreshes of the next-token distribution")
    min_regime_pairs: int = Field(24, ge=1, description="pairs a regime needs before its own distribution is used")
    dp_grid: int = Field(101, ge=11, description="grid points of the prefix probability P in W")
    init_bits_per_token: float = Field(250_000.0, gt=0, description="uplink bits per token before any data")
    payload_memory: float = Field(300.0, ge=2, description="rounds of memory of the payload regression")
    burst_tokens: int = Field(16, ge=0, description="fewest tokens of an edge burst, the action beside every draft "
                              "length (0: never burst)")
    burst_overhead: float = Field(0.05, gt=0, le=1, description="a burst is long enough that its fixed cost (the "
                                  "round trip) is at most this share of its time")
    explore_after: float = Field(20.0, gt=0, description="once bursts in a row have lasted this many drafted rounds' "
                                 "time, draft one round: acceptance is learnt only from drafted rounds, and a stale "
                                 "low estimate would stream for good; doubled each time bursts still win after it")
    min_acceptance: float = Field(1e-3, gt=0, lt=1)
    max_acceptance: float = Field(0.999, gt=0, lt=1)


class GelatoImprovedPolicy(DraftPolicy):
    """GELATO, improved (ours): online-calibrated acceptance, throughput-ratio objective with an energy price
    (queue plus integral), and an optimal-stopping inner loop on the expected marginal value of a token.

    Source: this project (docs/design-decisions.md, "Beyond the paper"), built on GELATO, arXiv 2605.10124.
    """

    name = "gelato-improved"

    def __init__(self, predictor: RoundPredictor | None = None, config: GelatoImprovedConfig | None = None,
                 **overrides: Any) -> None:
        if config is None:
            config = GelatoImprovedConfig(**overrides)
        elif overrides:
            config = config.model_copy(update=overrides)
        self.config = cfg = config
        self.predictor = require_predictor(predictor, "gelato-improved")
        self.map = EntropyAcceptanceMap(cfg.c, cfg.prior_weight, cfg.map_memory, cfg.min_acceptance,
                                        cfg.max_acceptance)
        self.position_acc = [cfg.rho0] * cfg.g_max
        self.payload = PayloadModel(cfg.init_bits_per_token, cfg.payload_memory)
        self.bits = RunningMean(cfg.init_bits_per_token, alpha=1.0 / cfg.payload_memory)
        self.recent_h: deque[float] = deque(maxlen=cfg.entropy_window)
        self.recent_pairs: deque[tuple[float, float]] = deque(maxlen=2 * cfg.entropy_window)
        self._edges = np.zeros(0)
        self._samples = None
        self._samples_round = 0
        self.energy_queue = 0.0  # the paper's Q against E_bar (logged; the price is the control)
        self.price_units = 0.0  # lambda / lambda_0: the energy price in units of the run's tokens per joule
        self.sum_tokens = 0.0  # forgetting sums for theta = tokens / second and lambda_0 = tokens / joule
        self.sum_time = 0.0
        self.sum_energy = 0.0
        self.lambda0: float | None = None
        self.theta: float | None = None
        self.burst_time = 0.0  # predicted seconds of the bursts chosen since the last drafted round
        self.explore_every = self.config.explore_after  # drafted rounds' time of bursts before one (backs off)
        self.explored = False  # the last round was drafted to look at acceptance again
        self.probed = False  # streamed once for a measured planner that had seen no burst
        self.rounds = 0
        # per-round plan
        self._ctx: RoundContext | None = None
        self._w: np.ndarray | None = None  # W[i, regime, P]: value of going on to draft position i
        self._grid = np.linspace(0.0, 1.0, cfg.dp_grid)
        self._send_cost_per_bit = 0.0
        self._prefix = 1.0
        self._planned = None  # (ctx, plan) of the round being planned
        self.last = {"budget": 0, "g_ref": 0, "stop": None, "stop_position": None, "prefix_prob": 1.0}

    # prices -----------------------------------------------------------------------------------------
    @property
    def price(self) -> float:
        """lambda: tokens per joule, ``lambda_0 * max(price_units, min_price)``."""
        return (self.lambda0 or 0.0) * max(self.price_units, self.config.min_price)

    def _costs(self, ctx: RoundContext, g_cap: int) -> tuple[np.ndarray, np.ndarray, float, float]:
        """Per-round predictions: T and E with no payload for g = 1..g_cap (compute, verify, fixed), and the
        uplink's time and energy per bit."""
        link, lc = ctx.link, ctx.context_len
        t0 = np.zeros(g_cap + 1)
        e0 = np.zeros(g_cap + 1)
        for g in range(1, g_cap + 1):
            t0[g], e0[g] = self.predictor.predict(g, link, lc, 0.0)
        ref_bits = max(1.0, self.bits.value)
        t1, e1 = self.predictor.predict(1, link, lc, ref_bits)
        tau_bit = max(0.0, (t1 - t0[1]) / ref_bits)
        eps_bit = max(0.0, (e1 - e0[1]) / ref_bits)
        return t0, e0, tau_bit, eps_bit

    def _transition_samples(self) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
        """The next token's (acceptance, bits, regime) given the regime (entropy bin) of the current one.

        Entropy is persistent in real text (a hard passage stays hard), so the next token is described
        conditionally on the current token's entropy: regimes are quantile bins of recent entropies; each
        regime's next-token entropies come from consecutive pairs within rounds (the marginal distribution
        stands in while a regime has few pairs)."""
        cfg = self.config
        k, r_n = cfg.dp_samples, cfg.regimes
        qs = (np.arange(k) + 0.5) / k
        if self.recent_h:
            recent = np.asarray(self.recent_h)
            edges = np.quantile(recent, np.arange(1, r_n) / r_n) if r_n > 1 else np.zeros(0)
            marginal = np.quantile(recent, qs)
        else:  # before any data: the entropy at which the prior map gives rho0
            edges = np.zeros(0)
            marginal = np.full(k, -math.log(cfg.rho0) / cfg.c)
        pairs = np.asarray(self.recent_pairs) if self.recent_pairs else np.zeros((0, 2))
        cur_bin = np.searchsorted(edges, pairs[:, 0], side="right") if len(pairs) else np.zeros(0, dtype=int)
        per_regime = []
        for r in range(r_n):
            nxt = pairs[cur_bin == r, 1] if len(pairs) else np.zeros(0)
            if nxt.size >= cfg.min_regime_pairs:
                hs = np.quantile(nxt, qs)
            else:
                hs = marginal
            per_regime.append((self.map.many(hs), self.payload.many(hs),
                               np.searchsorted(edges, hs, side="right") if edges.size else np.zeros(k, dtype=int)))
        return edges, per_regime

    # outer loop -------------------------------------------------------------------------------------
    def _plan(self, ctx: RoundContext):
        """The round's draft plan: (g_cap, t0, e0, tau_bit, eps_bit, EN(g), the value of each g), computed once
        per round (by ``stream``, then reused by ``budget``)."""
        if self._planned is not None and self._planned[0] is ctx:
            return self._planned[1]
        cfg = self.config
        g_cap = max(1, min(cfg.g_max, ctx.max_budget)) if ctx.max_budget >= 1 else 1
        t0, e0, tau_bit, eps_bit = self._costs(ctx, g_cap)
        bbar = self.bits.value
        t_plan = t0[1:] + np.arange(1, g_cap + 1) * bbar * tau_bit
        e_plan = e0[1:] + np.arange(1, g_cap + 1) * bbar * eps_bit
        en = np.cumsum(np.cumprod(np.asarray(self.position_acc[:g_cap]))) + 1.0  # EN(g), g = 1..g_cap
        if self.theta is None:  # first round: the plan's best throughput and its tokens per joule
            best = int(np.argmax(en / t_plan))
            self.theta = float(en[best] / t_plan[best])
            self.lambda0 = float(en[best] / max(e_plan[best], 1e-12))
        plan = (g_cap, t0, e0, tau_bit, eps_bit, en, en - self.theta * t_plan - self.price * e_plan)
        self._planned = (ctx, plan)
        return plan

    def stream(self, ctx: RoundContext) -> int:
        """A burst when its energy-priced rate beats every draft length's (module docstring, 6)."""
        cfg = self.config
        predict_burst = getattr(self.predictor, "predict_burst", None)
        if min(cfg.burst_tokens, ctx.max_stream) < 1 or not callable(predict_burst) or not self.bits.count:
            return 0  # (drafting's cost is known only once a drafted round was seen: its prior payload is huge)
        if getattr(self.predictor, "bursts_seen", None) == 0 and self.rounds >= 3 and not self.probed:
            self.probed = True
            # a measured planner has seen no burst: its edge fit comes from drafted rounds (K + 1 tokens a forward)
            # and says little of a one-token step, so stream once (burst_tokens) and let it measure one
            return min(ctx.max_stream, cfg.burst_tokens)
        g_cap, t0, e0, tau_bit, eps_bit, en, _ = self._plan(ctx)
        # the burst's length: long enough that its fixed cost (the round trip) is at most burst_overhead of it
        t1 = predict_burst(1, ctx.link, ctx.context_len)[0]
        step = max(predict_burst(2, ctx.link, ctx.context_len)[0] - t1, 1e-9)
        n = min(ctx.max_stream, max(cfg.burst_tokens, math.ceil(max(0.0, t1 - step) / (cfg.burst_overhead * step))))
        t_b, e_b = predict_burst(n, ctx.link, ctx.context_len)
        # compared per second, (N - lambda E) / T: a burst lasts many rounds, so its value C - theta T_b - lambda E_b
        # would outweigh a better draft length's whenever theta lags
        g = np.arange(1, g_cap + 1) * self.bits.value
        t_rounds = t0[1:] + g * tau_bit
        rates = (en - self.price * (e0[1:] + g * eps_bit)) / t_rounds
        draft_rate = float(rates.max())
        burst_rate = (n - self.price * e_b) / t_b
        self.last = {"budget": 0, "g_ref": 0, "stop": None, "stop_position": None, "prefix_prob": 1.0,
                     "burst_rate": burst_rate, "draft_rate": draft_rate}
        explored, self.explored = self.explored, False
        if burst_rate > draft_rate:
            # streaming wins; but acceptance is learnt from drafted rounds only, so once the bursts since the last
            # drafted round have lasted explore_after drafted rounds' time, draft one (its cost stays a small share)
            if self.burst_time >= self.explore_every * float(t_rounds[int(np.argmax(rates))]):
                self.burst_time, self.explored = 0.0, True
                return 0
            if explored:  # the drafted round did not change the choice: look again less often
                self.explore_every *= 2
            self.last.update(stream=n, theta=self.theta, price=self.price)
            self.burst_time += t_b
            return n
        self.burst_time, self.explore_every = 0.0, cfg.explore_after
        return 0

    def budget(self, ctx: RoundContext) -> int:
        cfg = self.config
        self._ctx = ctx
        self._prefix = 1.0
        g_cap, t0, e0, tau_bit, eps_bit, en, values = self._plan(ctx)
        theta, lam = self.theta, self.price
        g_ref = int(np.argmax(values)) + 1
        # optimal stopping: W[i, r](P) = value of going on to draft token i when the prefix before it is
        # accepted with probability P and the last drafted token was in entropy regime r
        self._send_cost_per_bit = theta * tau_bit + lam * eps_bit
        if self._samples is None or self.rounds - self._samples_round >= cfg.refresh_every:
            self._samples, self._samples_round = self._transition_samples(), self.rounds
        edges, per_regime = self._samples
        self._edges = edges
        grid = self._grid
        n = grid.size
        a_s = np.stack([x[0] for x in per_regime])  # regimes x samples
        c_send = self._send_cost_per_bit * np.stack([x[1] for x in per_regime])
        r_next = np.stack([x[2] for x in per_regime]).astype(int)
        pa = grid[None, :, None] * a_s[:, None, :]  # regime x grid x sample: P * a
        pos = pa * (n - 1)  # P lies on the uniform grid: linear interpolation by index arithmetic
        lo = np.minimum(pos.astype(np.intp), n - 2)
        frac = pos - lo
        flat = r_next[:, None, :] * n + lo  # index into the flattened W[i + 1] (regime x grid)
        gain = pa - c_send[:, None, :]
        w = np.zeros((g_cap + 1, len(per_regime), n))
        for i in range(g_cap - 1, 0, -1):
            c_draft = theta * max(0.0, t0[i + 1] - t0[i]) + lam * max(0.0, e0[i + 1] - e0[i])
            nxt = w[i + 1].ravel()
            lo_v = np.take(nxt, flat)
            w_next = lo_v + (np.take(nxt, flat + 1) - lo_v) * frac
            w[i] = np.maximum(0.0, np.maximum(0.0, gain + w_next).mean(axis=2) - c_draft)
        self._w = w
        budget = 1
        while budget < g_cap and w[budget, :, -1].max() > 0.0:
            budget += 1
        self.last = {**self.last, "budget": budget, "g_ref": g_ref, "stop": None, "stop_position": None,
                     "prefix_prob": 1.0, "theta": theta, "price": lam, "send_cost_per_bit": self._send_cost_per_bit,
                     "stream": 0}
        return budget

    # inner loop -------------------------------------------------------------------------------------
    def keep_drafting(self, step: DraftStep) -> StopDecision:
        if self._w is None:
            return StopDecision.CONTINUE
        if step.position == 0:
            self._prefix = 1.0
        p = self._prefix * self.map(step.entropy)
        nxt = step.position + 1
        regime = int(np.searchsorted(self._edges, step.entropy, side="right")) if self._edges.size else 0
        w_next = float(np.interp(p, self._grid, self._w[nxt, regime])) if nxt < self._w.shape[0] else 0.0
        send_value = p - self._send_cost_per_bit * self.payload.bits(step.entropy) + w_next
        self._prefix = p
        self.last["prefix_prob"] = p
        if send_value < 0.0:
            decision = StopDecision.STOP_BEFORE
        elif w_next > 0.0:
            return StopDecision.CONTINUE
        else:
            decision = StopDecision.STOP_AFTER
        self.last["stop"], self.last["stop_position"] = decision.value, step.position
        return decision

    # update -----------------------------------------------------------------------------------------
    def _round_time_energy(self, record: RoundRecord) -> tuple[float | None, float | None]:
        charge = record.charge
        t, e = (finite(charge.t_round), finite(charge.e_round)) if charge is not None else (None, None)
        if t is not None and e is not None:
            return t, e
        ctx = self._ctx
        link, lc = (ctx.link, ctx.context_len) if ctx is not None else (None, record.start)
        n = max(record.drafted, 0)
        bits = self.bits.value * record.sent / n if n else 0.0
        try:
            tp, ep = self.predictor.predict(n, link, lc, bits)
        except ValueError:  # a predictor may refuse an empty draft: nothing to learn from this round then
            return t, e
        return (t if t is not None else tp), (e if e is not None else ep)

    def observe(self, record: RoundRecord) -> None:
        cfg = self.config
        self.rounds += 1
        # acceptance: map and per-position EMA from the conditional outcomes
        outcomes = acceptance_outcomes(record)
        self.map.update([(h, ok) for _, h, ok in outcomes])
        for i, _, ok in outcomes:
            if i < len(self.position_acc):
                self.position_acc[i] += cfg.position_alpha * (float(ok) - self.position_acc[i])
        self.recent_h.extend(float(h) for h in record.entropies)
        self.recent_pairs.extend(zip(record.entropies[:-1], record.entropies[1:]))
        # payload
        bits = finite(record.charge.bits_up) if record.charge is not None else None
        if bits is not None and record.sent > 0:
            self.payload.update(record.sent, list(record.entropies), bits)
            self.bits.update(bits / record.sent)
        # throughput and energy
        t, e = self._round_time_energy(record)
        f = 1.0 - 1.0 / cfg.throughput_memory
        if t is not None and t > 0:
            self.sum_tokens = f * self.sum_tokens + record.new_tokens
            self.sum_time = f * self.sum_time + t
            self.theta = self.sum_tokens / self.sum_time
        if e is not None:
            self.last["energy"] = e
            self.sum_energy = f * self.sum_energy + e
            if self.sum_energy > 0 and self.sum_tokens > 0:
                self.lambda0 = self.sum_tokens / self.sum_energy
            self.energy_queue = max(0.0, self.energy_queue + e - cfg.e_bar)
            target = cfg.e_bar * (1.0 - cfg.energy_margin)
            self.price_units = max(0.0, self.price_units + cfg.price_step * (e - target) / cfg.e_bar)
        observe_round(self.predictor, record)

    def state(self) -> dict:
        return {
            "policy": self.name,
            "queue": self.energy_queue,
            "price": self.price,
            "price_units": self.price_units,
            "lambda0": self.lambda0,
            "theta": self.theta,
            "budget": self.last.get("budget"),
            "stream": self.last.get("stream", 0),
            "g_ref": self.last.get("g_ref"),
            "stop": self.last.get("stop"),
            "stop_position": self.last.get("stop_position"),
            "prefix_prob": self.last.get("prefix_prob"),
            "position_acceptance": list(self.position_acc),
            "acceptance_map": self.map.table(),
            "payload_bits_by_entropy": [float(b) for b in self.payload.beta],
            "bits_per_token": self.bits.value,
            "energy": self.last.get("energy"),
        }
