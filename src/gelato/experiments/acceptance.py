"""Fig. 2 of the paper: acceptance against entropy, and the fitted ``exp(-c H)`` map of a pair or a regime.

Samples come from a greedy trace (first drafted token of every round position) or from the synthetic
regime; ``acceptance_fit`` gives the least-squares ``c``, the 0.1-nat bins and their count-weighted R^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gelato.constants import RHO0
from gelato.experiments.synthetic import SyntheticRegime, SyntheticSource
from gelato.experiments.trace import Trace


def trace_acceptance_samples(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt and position s: the first rollout token's entropy and whether it equals the target's token."""
    hs, acc = [], []
    for p in trace.prompts:
        n = p.length
        if n == 0:
            continue
        hs.append(np.asarray(p.entropies[:n, 0], dtype=float))
        acc.append(np.asarray(p.draft_tokens[:n, 0] == p.target_tokens[:n], dtype=float))
    if not hs:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(hs), np.concatenate(acc)


def synthetic_acceptance_samples(n: int = 20_000, seed: int = 0,
                                 regime: SyntheticRegime = SyntheticRegime()) -> tuple[np.ndarray, np.ndarray]:
    """(H, accepted) pairs drawn the way the synthetic verifier accepts tokens: accepted w.p. exp(-c H)."""
    src = SyntheticSource(regime, seed=seed)
    h = np.array([src.draw_token().entropy for _ in range(n)])
    acc = (src.rng.random(n) < np.exp(-regime.c * h)).astype(float)
    return h, acc


def fit_exp_c(h: np.ndarray, accepted: np.ndarray, c_max: float = 50.0) -> float:
    """Least-squares ``c`` of ``accepted ~ exp(-c H)`` over the raw samples (grid on log c, golden section)."""
    h = np.asarray(h, dtype=float)
    y = np.asarray(accepted, dtype=float)
    if h.size == 0:
        raise ValueError("no samples to fit")

    def loss(c: float) -> float:
        return float(np.sum((y - np.exp(-c * h)) ** 2))

    grid = np.concatenate([[0.0], np.geomspace(1e-4, c_max, 240)])
    losses = [loss(c) for c in grid]
    i = int(np.argmin(losses))
    lo, hi = grid[max(0, i - 1)], grid[min(len(grid) - 1, i + 1)]
    g = (math.sqrt(5) - 1) / 2
    a, b = lo + (1 - g) * (hi - lo), lo + g * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(100):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = lo + (1 - g) * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = loss(b)
    c = (lo + hi) / 2
    return c if loss(c) <= losses[i] else float(grid[i])


def bin_acceptance(h: np.ndarray, accepted: np.ndarray, width: float = 0.1) -> list[dict]:
    """Bins of ``width`` nats: lower edge, mean H, acceptance rate, count (empty bins omitted)."""
    h = np.asarray(h, dtype=float)
    y = np.asarray(accepted, dtype=float)
    idx = np.floor(h / width + 1e-9).astype(int)
    out = []
    for b in np.unique(idx):
        m = idx == b
        out.append({"h_lo": round(float(b * width), 10), "h_mean": float(h[m].mean()),
                    "acceptance": float(y[m].mean()), "count": int(m.sum())})
    return out


@dataclass
class AcceptanceFit:
    name: str
    c: float
    mean_acceptance: float
    n: int
    mean_entropy: float
    bins: list[dict]

    @property
    def binned_r2(self) -> float:
        """Count-weighted R^2 of exp(-c H) on the binned acceptance rates (1: the curve explains the bins;
        <= 0: no better than the mean acceptance)."""
        n = np.array([b["count"] for b in self.bins], dtype=float)
        if n.sum() == 0:
            return math.nan
        h = np.array([b["h_mean"] for b in self.bins])
        a = np.array([b["acceptance"] for b in self.bins])
        mean = float(np.sum(n * a) / n.sum())
        total = float(np.sum(n * (a - mean) ** 2))
        return 1.0 - float(np.sum(n * (a - np.exp(-self.c * h)) ** 2)) / total if total > 0 else math.nan

    @property
    def h_th(self) -> float:
        """``phi^-1(rho0)`` with this fit's c and the paper's rho0 = 0.9."""
        return -math.log(RHO0) / self.c if self.c > 0 else math.inf


def acceptance_fit(name: str, h: np.ndarray, accepted: np.ndarray, width: float = 0.1) -> AcceptanceFit:
    return AcceptanceFit(name, fit_exp_c(h, accepted), float(np.mean(accepted)), int(len(h)), float(np.mean(h)),
                         bin_acceptance(h, accepted, width))
