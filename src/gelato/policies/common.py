"""Pieces shared by several policies: the entropy leaky bucket, expected tokens of a draft, and reading a
round's measured (or predicted) time, energy and payload."""

from __future__ import annotations

import math
from collections.abc import Sequence

from gelato.decoding.types import RoundRecord


def expected_tokens_const(a: float, g: int) -> float:
    """``EN(g) = 1 + a + ... + a^g = (1 - a^(g+1)) / (1 - a)``: tokens per round when each drafted token is
    accepted with probability ``a`` independently (paper, eq. of the outer loop)."""
    if g < 0:
        raise ValueError(f"draft length must be >= 0, got {g}")
    if a >= 1.0:
        return float(g + 1)
    return (1.0 - a ** (g + 1)) / (1.0 - a)


def expected_tokens_positions(acceptance: Sequence[float], g: int) -> float:
    """``EN(g) = 1 + sum_{i<g} prod_{j<=i} a_j`` with per-position conditional acceptances ``a_j`` (the last
    one repeats past the end of the list)."""
    total, p = 1.0, 1.0
    for i in range(g):
        a = acceptance[min(i, len(acceptance) - 1)] if acceptance else 0.0
        p *= a
        total += p
    return total


class LeakyBucket:
    """``B_i = max(0, B_{i-1} + H_i - H_th)``; overflows when ``B_i > limit`` (paper, inner loop)."""

    def __init__(self, threshold: float, limit: float) -> None:
        self.threshold = threshold
        self.limit = limit
        self.level = 0.0
        self.peak = 0.0

    def reset(self) -> None:
        self.level = 0.0
        self.peak = 0.0

    def push(self, entropy: float) -> bool:
        """Add one token's entropy; True if the bucket overflows with it."""
        self.level = max(0.0, self.level + entropy - self.threshold)
        self.peak = max(self.peak, self.level)
        return self.level > self.limit


def finite(value: float | None) -> float | None:
    """``value`` as a float if it is a finite number, else None: a charge term a policy may learn from
    (``finite(record.charge.t_round)``; ``record.charge`` is None when the loop ran without a clock)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def bits_per_sent_token(record: RoundRecord) -> float | None:
    """Uplink bits per sent draft token of a finished round, from the clock's charge."""
    bits = finite(record.charge.bits_up) if record.charge is not None else None
    if bits is None or record.sent <= 0:
        return None
    return bits / record.sent


def acceptance_outcomes(record: RoundRecord) -> list[tuple[int, float, bool]]:
    """``(position, entropy, accepted)`` for every sent token whose verdict is conditional on an accepted
    prefix: the accepted ones and the first rejected one (later tokens were never really tested)."""
    out = []
    last = min(record.accepted, record.sent - 1)
    for i in range(last + 1):
        if i >= len(record.entropies):
            break
        out.append((i, float(record.entropies[i]), i < record.accepted))
    return out


class RunningMean:
    """Cumulative mean, or an exponential moving average when ``alpha`` is given; ``prior`` until updated."""

    def __init__(self, prior: float, alpha: float | None = None) -> None:
        self.value = float(prior)
        self.alpha = alpha
        self.count = 0

    def update(self, x: float) -> None:
        self.count += 1
        weight = 1.0 / self.count if self.alpha is None else max(self.alpha, 1.0 / self.count)
        self.value += weight * (float(x) - self.value)
