"""GELATO's outer loop: the drift-plus-penalty choice of the budget and the virtual energy queue."""

from __future__ import annotations

import math
import random

import pytest
from pydantic import ValidationError

from gelato.constants import E_BAR_J
from gelato.decoding.policy import RoundContext
from gelato.decoding.types import RoundCharge, RoundRecord
from gelato.policies import (
    GelatoImprovedPolicy,
    GelatoPaperPolicy,
    LinearRoundPredictor,
)
from gelato.policies.common import expected_tokens_const, expected_tokens_positions

PRED = LinearRoundPredictor(t_fixed=0.1, t_token=0.015, e_token=0.18, p_up=0.2, rate_bps=10e6)


class Link:
    def __init__(self, bps: float) -> None:
        self.uplink_bps = bps


def ctx(link=None, context_len=100) -> RoundContext:
    return RoundContext(index=0, generated=0, context_len=context_len, max_budget=1000, link=link)


def brute_force_budget(V: float, Q: float, rho0: float, g_max: int, bits: float, link=None, context_len=100) -> int:
    best_g, best_u = None, -math.inf
    for g in range(1, g_max + 1):
        t, e = PRED.predict(g, link, context_len, bits)
        en = sum(rho0 ** i for i in range(g + 1))  # 1 + a + ... + a^g
        u = V * en / t - Q * e
        if u > best_u:
            best_g, best_u = g, u
    return best_g


def test_expected_tokens():
    assert expected_tokens_const(0.9, 0) == 1.0
    assert expected_tokens_const(0.9, 3) == pytest.approx(1 + 0.9 + 0.81 + 0.729)
    assert expected_tokens_const(1.0, 4) == 5.0
    assert expected_tokens_positions([0.5, 0.4], 3) == pytest.approx(1 + 0.5 + 0.2 + 0.08)
    assert expected_tokens_positions([0.9] * 5, 5) == pytest.approx(expected_tokens_const(0.9, 5))


@pytest.mark.parametrize("queue", [0.0, 1.0, 7.5, 40.0, 300.0])
@pytest.mark.parametrize("rate", [0.3e6, 2e6, 10e6, 80e6])
@pytest.mark.parametrize("V", [1.0, 10.0, 100.0])
def test_budget_is_the_argmax_of_U(queue, rate, V):
    p = GelatoPaperPolicy(PRED, V=V, init_bits_per_token=50_000.0)
    p.queue = queue
    link = Link(rate)
    assert p.budget(ctx(link)) == brute_force_budget(V, queue, 0.9, 15, 50_000.0, link)
    rows = p.utilities(ctx(link))
    assert [g for g, *_ in rows] == list(range(1, 16))
    assert max(rows, key=lambda r: r[1])[0] == p.state()["budget"]


def test_larger_V_never_gives_a_smaller_budget():
    for queue in (0.5, 5.0, 50.0):
        for rate in (1e6, 10e6):
            budgets = []
            for V in (0.1, 1, 3, 10, 30, 100, 300, 1000, 1e4):
                p = GelatoPaperPolicy(PRED, V=V, init_bits_per_token=50_000.0)
                p.queue = queue
                budgets.append(p.budget(ctx(Link(rate))))
            assert budgets == sorted(budgets), (queue, rate, budgets)
            assert budgets[0] < budgets[-1]  # and V matters in this range


def test_large_queue_gives_the_smallest_budget_empty_queue_the_throughput_optimum():
    p = GelatoPaperPolicy(PRED, init_bits_per_token=50_000.0)
    p.queue = 1e6
    assert p.budget(ctx(Link(10e6))) == 1
    p.queue = 0.0
    best = max(range(1, 16), key=lambda g: expected_tokens_const(0.9, g) / PRED.predict(g, None, 100, 50_000.0)[0])
    assert p.budget(ctx()) == best  # link None: the predictor's nominal rate
    assert best > 1


def test_slower_link_never_gives_a_longer_budget():
    budgets = []
    for rate in (100e6, 10e6, 3e6, 1e6, 0.3e6, 0.05e6):
        p = GelatoPaperPolicy(PRED, init_bits_per_token=100_000.0)
        p.queue = 20.0
        budgets.append(p.budget(ctx(Link(rate))))
    assert budgets == sorted(budgets, reverse=True)
    assert budgets[0] > budgets[-1]


def round_record(k: int, e: float, sent: int = 3, bits: float = 60_000.0) -> RoundRecord:
    return RoundRecord(index=k, start=100, budget=sent, drafted=sent, sent=sent, accepted=1, token=0,
                       entropies=[0.2] * sent, charge=RoundCharge(t_round=0.2, e_round=e, bits_up=bits))


def test_queue_follows_the_recursion_exactly():
    rng = random.Random(3)
    p = GelatoPaperPolicy(PRED, e_bar=E_BAR_J)
    q = 0.0
    assert p.queue == 0.0  # Q_1 = 0
    for k in range(200):
        e = rng.uniform(0.0, 2.5)
        p.budget(ctx())
        p.observe(round_record(k, e))
        q = max(0.0, q + e - E_BAR_J)
        assert p.queue == pytest.approx(q, abs=1e-9)
        assert p.state()["queue"] == pytest.approx(q, abs=1e-9)


def test_queue_grows_while_energy_exceeds_the_budget_and_drains_below_it():
    p = GelatoPaperPolicy(PRED, e_bar=1.0)
    levels = []
    for k in range(10):
        p.observe(round_record(k, 1.5))
        levels.append(p.queue)
    assert levels == pytest.approx([0.5 * (k + 1) for k in range(10)])
    for k in range(20):
        p.observe(round_record(k, 0.25))
    assert p.queue == 0.0  # reflected at 0, never negative


def test_budget_shrinks_as_the_queue_builds_up():
    p = GelatoPaperPolicy(PRED, e_bar=0.3, init_bits_per_token=50_000.0)
    budgets = []
    for k in range(60):
        g = p.budget(ctx(Link(10e6)))
        budgets.append(g)
        _, e = PRED.predict(g, Link(10e6), 100, 50_000.0)
        p.observe(round_record(k, e, sent=g, bits=50_000.0 * g))
    assert budgets[0] > budgets[-1]
    assert all(b >= a for a, b in zip(budgets[1:], budgets[:-1]))  # non-increasing while Q only grows
    assert p.state()["queue"] > 0


def test_payload_is_g_times_the_running_mean_of_bits_per_sent_token():
    p = GelatoPaperPolicy(PRED, init_bits_per_token=1.0)
    p.observe(round_record(0, 0.5, sent=2, bits=20_000.0))  # 10k per token
    p.observe(round_record(1, 0.5, sent=4, bits=120_000.0))  # 30k per token
    assert p.bits.value == pytest.approx(20_000.0)
    p.queue = 3.0
    link = Link(1e6)
    assert p.budget(ctx(link)) == brute_force_budget(100.0, 3.0, 0.9, 15, 20_000.0, link)


def test_without_a_clock_the_queue_uses_the_predicted_energy_of_the_round():
    p = GelatoPaperPolicy(PRED, e_bar=0.1, init_bits_per_token=10_000.0)
    p.budget(ctx())
    rec = RoundRecord(index=0, start=100, budget=4, drafted=4, sent=3, accepted=1, token=0, entropies=[0.2] * 4)
    p.observe(rec)
    expected = PRED.predict(4, None, 100, 10_000.0 * 3 / 4)[1]  # 4 computed, 3 sent
    assert p.queue == pytest.approx(expected - 0.1)


def test_config_is_validated():
    with pytest.raises(ValidationError):
        GelatoPaperPolicy(PRED, rho0=1.0)
    with pytest.raises(ValidationError):
        GelatoPaperPolicy(PRED, g_max=0)
    with pytest.raises(ValidationError):
        GelatoPaperPolicy(PRED, V=-1)
    with pytest.raises(ValidationError):
        GelatoPaperPolicy(PRED, vee=3)  # unknown key
    with pytest.raises(ValueError, match="predictor"):
        GelatoPaperPolicy(None)


def test_state_reports_queue_budget_bucket_and_estimates():
    p = GelatoPaperPolicy(PRED)
    p.budget(ctx())
    st = p.state()
    for key in ("queue", "budget", "bucket_peak", "h_th", "bits_per_token", "utility"):
        assert key in st
    q = GelatoImprovedPolicy(PRED)
    q.budget(ctx())
    st = q.state()
    for key in ("queue", "price", "theta", "budget", "g_ref", "position_acceptance", "acceptance_map",
                "payload_bits_by_entropy"):
        assert key in st


def test_improved_energy_price_rises_with_overspending_and_relaxes_without():
    q = GelatoImprovedPolicy(PRED, e_bar=0.5)
    assert q.price == 0.0
    for k in range(50):
        q.budget(ctx())
        q.observe(round_record(k, 1.5))
    high = q.price
    assert high > 0 and q.state()["queue"] == pytest.approx(50 * 1.0)
    for k in range(400):
        q.budget(ctx())
        q.observe(round_record(k, 0.0))
    assert q.price < 0.1 * high
