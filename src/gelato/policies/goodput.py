"""Goodput-maximising adaptive draft length, in the manner of SmartSpec / vLLM's adaptive speculation."""

from __future__ import annotations

from gelato.decoding.policy import DraftPolicy, RoundContext
from gelato.decoding.types import RoundRecord
from gelato.policies.common import (
    acceptance_outcomes,
    bits_per_sent_token,
    finite,
)
from gelato.policies.predictor import RoundPredictor, observe_round


class _LinearTimeFit:
    """Round time ``~ a + b * drafted``, least squares with exponential forgetting."""

    def __init__(self, memory: float = 100.0) -> None:
        self.f = 1.0 - 1.0 / memory
        self.n = self.sx = self.sy = self.sxx = self.sxy = 0.0

    def add(self, x: float, y: float) -> None:
        f = self.f
        self.n = f * self.n + 1.0
        self.sx = f * self.sx + x
        self.sy = f * self.sy + y
        self.sxx = f * self.sxx + x * x
        self.sxy = f * self.sxy + x * y

    def coef(self) -> tuple[float, float] | None:
        var = self.sxx * self.n - self.sx * self.sx
        if self.n < 2 or var <= 1e-9 * max(1.0, self.n * self.sxx):
            return None
        b = (self.sxy * self.n - self.sx * self.sy) / var
        a = (self.sy - b * self.sx) / self.n
        if b <= 0 or a < 0:
            return None
        return a, b


class AdaptiveGoodputPolicy(DraftPolicy):
    """Per round, ``K = argmax_{1<=k<=k_max} EN(k) / T(k)``: expected tokens per second of the round.

    ``EN(k) = 1 + sum_{i<k} prod_{j<=i} a_j`` with per-position acceptances ``a_j`` (EMA of the conditional
    acceptance at position j). ``T(k)``: the injected predictor at the round's link when one is given;
    otherwise a linear fit ``a + b k`` of the measured round time (the clock's ``t_round``, else the wall
    time of the round) on the number of drafted tokens; before that fit exists, ``T(k) = 1 + cost_ratio k``
    (a draft token costs ``cost_ratio`` of a verification).
    Source: Liu et al., "Optimizing Speculative Decoding for Serving Large Language Models Using Goodput"
    (SmartSpec), 2024; vLLM's draft-acceptance statistics per position.
    """

    name = "adaptive-goodput"

    def __init__(self, predictor: RoundPredictor | None = None, k_max: int = 15, alpha: float = 0.1,
                 prior_acceptance: float = 0.8, cost_ratio: float = 0.1,
                 init_bits_per_token: float = 250_000.0) -> None:
        if k_max < 1:
            raise ValueError(f"k_max must be >= 1, got {k_max}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not 0 <= prior_acceptance <= 1:
            raise ValueError(f"prior_acceptance must be in [0, 1], got {prior_acceptance}")
        if cost_ratio <= 0:
            raise ValueError(f"cost_ratio must be > 0, got {cost_ratio}")
        if predictor is not None and not callable(getattr(predictor, "predict", None)):
            raise TypeError(f"predictor {type(predictor).__name__} has no predict() method")
        self.predictor = predictor
        self.k_max = k_max
        self.alpha = alpha
        self.acceptance = [prior_acceptance] * k_max
        self.cost_ratio = cost_ratio
        self.bits_per_token = init_bits_per_token
        self._bits_seen = 0
        self.time_fit = _LinearTimeFit()
        self.last_budget = 0
        self.last_goodput: float | None = None

    def _round_time(self, k: int, ctx: RoundContext, fit: tuple[float, float] | None) -> float:
        if self.predictor is not None:
            return self.predictor.predict(k, ctx.link, ctx.context_len, self.bits_per_token)[0]
        if fit is not None:
            return fit[0] + fit[1] * k
        return 1.0 + self.cost_ratio * k

    def budget(self, ctx: RoundContext) -> int:
        fit = self.time_fit.coef() if self.predictor is None else None
        best_k, best, en, p = 1, -1.0, 1.0, 1.0
        for k in range(1, self.k_max + 1):
            p *= self.acceptance[k - 1]
            en += p
            goodput = en / self._round_time(k, ctx, fit)
            if goodput > best:
                best_k, best = k, goodput
        self.last_budget, self.last_goodput = best_k, best
        return best_k

    def observe(self, record: RoundRecord) -> None:
        for i, _, ok in acceptance_outcomes(record):
            if i < self.k_max:
                self.acceptance[i] += self.alpha * (float(ok) - self.acceptance[i])
        bpt = bits_per_sent_token(record)
        if bpt is not None:
            self._bits_seen += 1
            self.bits_per_token += (bpt - self.bits_per_token) / min(self._bits_seen, 100)
        t = finite(record.charge.t_round) if record.charge is not None else None  # modelled, else measured wall
        if t is None:
            t = record.wall.draft + record.wall.verify + record.wall.other
        if t > 0:
            self.time_fit.add(record.drafted, t)
        observe_round(self.predictor, record)

    def state(self) -> dict:
        return {"policy": self.name, "budget": self.last_budget, "goodput": self.last_goodput,
                "position_acceptance": list(self.acceptance), "time_fit": self.time_fit.coef()}

