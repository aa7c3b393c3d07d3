"""The goodput-maximising adaptive K: argmax of expected tokens over round time, from three time sources."""

from __future__ import annotations

import dataclasses

import pytest

from gelato.decoding.policy import RoundContext
from gelato.decoding.types import PhaseTimes, RoundCharge, RoundRecord
from gelato.policies import AdaptiveGoodputPolicy, LinearRoundPredictor
from gelato.policies.common import expected_tokens_positions

CTX = RoundContext(index=0, generated=0, context_len=20, max_budget=100)


def rec(drafted: int, accepted: int, charge=None) -> RoundRecord:
    return RoundRecord(index=0, start=20, budget=drafted, drafted=drafted, sent=drafted, accepted=accepted,
                       token=0, entropies=[0.3] * drafted, charge=charge)


def brute(acc, time_of, k_max=15) -> int:
    return max(range(1, k_max + 1), key=lambda k: (expected_tokens_positions(acc, k) / time_of(k), -k))


def test_with_a_predictor_k_is_the_argmax_of_goodput():
    pred = LinearRoundPredictor(t_fixed=0.1, t_token=0.02)
    p = AdaptiveGoodputPolicy(pred, prior_acceptance=0.8, init_bits_per_token=10_000.0)
    expect = brute([0.8] * 15, lambda k: pred.predict(k, None, 20, 10_000.0)[0])
    assert p.budget(CTX) == expect
    assert 1 < expect < 15


def test_cost_ratio_before_any_measurement():
    p = AdaptiveGoodputPolicy(prior_acceptance=0.9, cost_ratio=0.1)
    assert p.budget(CTX) == brute([0.9] * 15, lambda k: 1 + 0.1 * k)
    cheap = AdaptiveGoodputPolicy(prior_acceptance=0.9, cost_ratio=0.01)
    assert cheap.budget(CTX) > p.budget(CTX)


def test_acceptance_ema_per_position_and_shorter_k_when_drafts_fail():
    p = AdaptiveGoodputPolicy(prior_acceptance=0.9, alpha=0.5, cost_ratio=0.1)
    k0 = p.budget(CTX)
    for _ in range(10):
        p.observe(rec(drafted=5, accepted=0))  # position 0 always rejected; positions >= 1 never tested
    assert p.acceptance[0] == pytest.approx(0.9 * 0.5 ** 10)
    assert p.acceptance[1] == 0.9
    assert p.budget(CTX) == 1 < k0


def test_time_fit_from_the_clock_charge():
    p = AdaptiveGoodputPolicy(prior_acceptance=0.95)
    for d in (1, 3, 5, 2, 4):
        p.observe(rec(d, d, charge=RoundCharge(t_round=0.1 + 0.05 * d)))  # expensive drafts: 0.05 s vs 0.1 s fixed
    a, b = p.time_fit.coef()
    assert a == pytest.approx(0.1) and b == pytest.approx(0.05)
    assert p.budget(CTX) == brute(p.acceptance, lambda k: 0.1 + 0.05 * k)


def test_time_fit_from_wall_times_without_a_clock():
    """Without a modelled charge the policy fits the round's measured wall time."""
    p = AdaptiveGoodputPolicy()
    for d in (1, 4, 2, 6):
        p.observe(dataclasses.replace(rec(d, 0), wall=PhaseTimes(draft=0.01 * d, verify=0.03, other=0.0)))
        p.budget(CTX)
    a, b = p.time_fit.coef()
    assert a == pytest.approx(0.03) and b == pytest.approx(0.01)
