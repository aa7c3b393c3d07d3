"""The online estimators of gelato-improved: the entropy-acceptance map ``a(H)`` and the uplink payload model.

Both forget old evidence (a memory in tokens or rounds) and start from a prior: the paper's
``exp(-c H)`` map and a bits-per-token guess.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

# Bin edges of the entropy-acceptance map, in nats (finer where acceptance changes fastest).
DEFAULT_EDGES: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.17, 0.25, 0.35, 0.5, 0.7, 0.95, 1.25, 1.6, 2.0, 2.6,
                                    3.3, 4.2, 5.5, 7.5)


class EntropyAcceptanceMap:
    """``a(H)``: binned, forgetting, prior-shrunk, non-increasing, linearly interpolated."""

    def __init__(self, rho0_c: float, prior_weight: float, memory: float, lo: float, hi: float,
                 edges: tuple[float, ...] = DEFAULT_EDGES) -> None:
        self.edges = list(edges)
        nb = len(self.edges)  # the last bin is [edges[-1], inf)
        self.mid = [0.5 * (self.edges[i] + self.edges[i + 1]) for i in range(nb - 1)] + [self.edges[-1] * 1.25]
        self.c = rho0_c
        self.m0 = prior_weight
        self.decay = 1.0 - 1.0 / memory
        self.lo, self.hi = lo, hi
        self.n = [0.0] * nb
        self.s = [0.0] * nb
        self.h = [0.0] * nb  # decayed sum of H per bin (its mean is the bin's abscissa)
        self.observed = 0
        self._refit()

    def prior(self, h: float) -> float:
        return math.exp(-self.c * h)

    def _bin(self, h: float) -> int:
        return max(0, bisect.bisect_right(self.edges, h) - 1)

    def update(self, pairs: list[tuple[float, bool]]) -> None:
        if not pairs:
            return
        f = self.decay ** len(pairs)
        self.n = [x * f for x in self.n]
        self.s = [x * f for x in self.s]
        self.h = [x * f for x in self.h]
        for h, ok in pairs:
            b = self._bin(h)
            self.n[b] += 1.0
            self.s[b] += float(ok)
            self.h[b] += h
        self.observed += len(pairs)
        self._refit()

    def _refit(self) -> None:
        xs, ys, ws = [], [], []
        for b in range(len(self.edges)):
            x = self.h[b] / self.n[b] if self.n[b] > 1e-9 else self.mid[b]
            # blend the bin's abscissa towards its midpoint while it has little data
            x = (self.h[b] + self.m0 * self.mid[b]) / (self.n[b] + self.m0) if self.n[b] < 1e-9 else x
            y = (self.s[b] + self.m0 * self.prior(x)) / (self.n[b] + self.m0)
            xs.append(x)
            ys.append(y)
            ws.append(self.n[b] + self.m0)
        ys = _pav_decreasing(ys, ws)
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        self.xs = [xs[i] for i in order]
        self.ys = [min(self.hi, max(self.lo, ys[i])) for i in order]
        self._xs_np = np.asarray(self.xs)
        self._ys_np = np.asarray(self.ys)

    def __call__(self, h: float) -> float:
        return float(np.interp(h, self._xs_np, self._ys_np))

    def many(self, hs: np.ndarray) -> np.ndarray:
        return np.interp(hs, self._xs_np, self._ys_np)

    def table(self) -> list[tuple[float, float]]:
        return list(zip(self.xs, self.ys))


def _pav_decreasing(y: list[float], w: list[float]) -> list[float]:
    """Weighted least-squares non-increasing fit (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for yi, wi in zip(y, w):
        blocks.append([yi, wi, 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    out: list[float] = []
    for m, _, cnt in blocks:
        out.extend([m] * cnt)
    return out


PAYLOAD_EDGES: tuple[float, ...] = (0.1, 0.3, 0.7, 1.5, 3.0)  # nats: bins of the per-token payload model


class PayloadModel:
    """Uplink bits of a round ``~ sum_b n_b beta_b``: ``n_b`` sent tokens had their entropy in bin ``b``.

    A per-bin bits-per-token (ridge least squares, shrunk towards the overall mean, non-negative, with
    forgetting) fits both an id-only payload (the same for every bin) and a top-p payload whose support
    grows with the entropy, without assuming a functional form."""

    def __init__(self, init_bits_per_token: float, memory: float, edges: tuple[float, ...] = PAYLOAD_EDGES,
                 ridge: float = 2.0) -> None:
        self.edges = np.asarray(edges)
        nb = len(edges) + 1
        self.decay = 1.0 - 1.0 / memory
        self.ridge = ridge  # in tokens' worth of evidence per bin
        self.sxx = np.zeros((nb, nb))
        self.sxy = np.zeros(nb)
        self.total_bits = 0.0
        self.total_tokens = 0.0
        self.mean = float(init_bits_per_token)
        self.beta = np.full(nb, self.mean)
        self.rounds = 0

    def _bins(self, hs) -> np.ndarray:
        return np.searchsorted(self.edges, np.asarray(hs, dtype=float), side="right")

    def update(self, sent: int, entropies: list[float], bits: float) -> None:
        if sent <= 0:
            return
        x = np.bincount(self._bins(entropies[:sent]), minlength=self.beta.size).astype(float)
        self.sxx = self.decay * self.sxx + np.outer(x, x)
        self.sxy = self.decay * self.sxy + x * bits
        self.total_bits = self.decay * self.total_bits + bits
        self.total_tokens = self.decay * self.total_tokens + sent
        self.mean = self.total_bits / self.total_tokens
        self.rounds += 1
        reg = self.ridge * np.eye(self.beta.size)
        try:
            beta = np.linalg.solve(self.sxx + reg, self.sxy + reg @ np.full(self.beta.size, self.mean))
        except np.linalg.LinAlgError:
            beta = np.full(self.beta.size, self.mean)
        self.beta = np.maximum(beta, 0.0)

    def bits(self, h: float) -> float:
        return float(self.beta[int(np.searchsorted(self.edges, h, side="right"))])

    def many(self, hs: np.ndarray) -> np.ndarray:
        return self.beta[self._bins(hs)]
