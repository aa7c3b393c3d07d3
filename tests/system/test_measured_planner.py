"""The measured planner: its fit recovers known costs from synthetic measured rounds, exactly; before enough
rounds it predicts with its prior; a planning policy feeds it every round."""

from __future__ import annotations

import itertools

import pytest

from gelato.decoding.types import PhaseTimes, RoundMeasurement, RoundRecord
from gelato.policies.registry import make_policy
from gelato.system.config import SystemConfig
from gelato.system.energy import DevicePower
from gelato.system.measured import MeasuredPlanner

EDGE = (0.020, 0.003, 1e-5)  # server seconds = a + b n + c n L, n = tokens fed (sent + 1), L = context
DRAFT = (0.001, 0.004, 2e-6)  # draft seconds = a + b g + c g L
LINK = (0.0015, 0.0002)  # rpc - server seconds = fixed + per_token * sent
POWER = DevicePower(compute_w=5.0, transmit_w=1.0, receive_w=0.3, idle_w=0.5)


def _cost(coef, n, ctx):
    a, b, c = coef
    return a + b * n + c * n * ctx


def _record(index: int, sent: int, start: int, measured: bool = True) -> RoundRecord:
    server = _cost(EDGE, sent + 1, start)
    net = LINK[0] + LINK[1] * sent
    m = RoundMeasurement(up_bytes=20 + 3 * sent, down_bytes=12, rpc_ms=(server + net) * 1e3, server_ms=server * 1e3)
    return RoundRecord(index=index, start=start, budget=sent, drafted=sent, sent=sent, accepted=0, token=1,
                       entropies=[0.5] * sent, wall=PhaseTimes(draft=_cost(DRAFT, sent, start)),
                       measured=m if measured else None)


def _records(n: int) -> list[RoundRecord]:
    sizes = itertools.cycle([1, 4, 2, 6, 3, 5])
    return [_record(i, next(sizes), 10 + 7 * i + (i % 3) * 11) for i in range(n)]


def test_fit_recovers_known_costs_exactly():
    planner = MeasuredPlanner(device_power=POWER)
    for record in _records(12):
        planner.observe(record)
    p = planner.parameters()
    assert p["fitted"] and p["rounds"] == 12
    assert p["edge"] == pytest.approx(EDGE, rel=1e-9, abs=1e-12)
    assert p["draft"] == pytest.approx(DRAFT, rel=1e-9, abs=1e-12)
    assert (p["link_fixed_s"], p["link_per_token_s"]) == pytest.approx(LINK, rel=1e-9, abs=1e-12)
    sent = sum(r.sent for r in _records(12))
    assert p["up_bytes_per_token"] == pytest.approx(sum(20 + 3 * r.sent for r in _records(12)) / sent)
    for g, ctx in ((0, 40), (1, 40), (5, 100), (9, 300)):
        t_draft = _cost(DRAFT, g, ctx) if g else 0.0
        t_payload = LINK[1] * g
        t_wait = LINK[0] + _cost(EDGE, g + 1, ctx)
        t, e = planner.predict(g, None, ctx, 123.0)  # the policy's bits do not enter a fitted prediction
        assert t == pytest.approx(t_draft + t_payload + t_wait, rel=1e-9)
        assert e == pytest.approx(5.0 * t_draft + 1.0 * t_payload + 0.5 * t_wait, rel=1e-9)


def test_prior_until_enough_rounds_and_unmeasured_rounds_ignored():
    prior = SystemConfig.paper().build_clock()
    planner = MeasuredPlanner(SystemConfig.paper().build_clock(), min_rounds=3)
    records = _records(3)
    for record in records[:2]:
        planner.observe(record)
        planner.observe(_record(99, 2, 50, measured=False))  # in process: nothing measured, nothing learnt
    assert planner.parameters() == {"fitted": False, "rounds": 2}
    assert planner.predict(4, None, 60, 800.0) == prior.predict(4, None, 60, 800.0)
    planner.observe(records[2])
    assert planner.fitted
    assert planner.predict(4, None, 60, 800.0)[0] < prior.predict(4, None, 60, 800.0)[0]  # ms, not the paper's
    with pytest.raises(ValueError, match="min_rounds"):
        MeasuredPlanner(min_rounds=2)


@pytest.mark.parametrize("name", ["gelato-paper", "gelato-improved", "gelato-improved-pipelined",
                                  "adaptive-goodput", "static-5-pipelined"])
def test_planning_policies_feed_their_planner_once_per_round(name):
    planner = MeasuredPlanner(device_power=POWER)
    policy = make_policy(name, predictor=planner)
    for record in _records(5):
        policy.observe(record)
    assert planner.seen == 5
    assert planner.parameters()["edge"] == pytest.approx(EDGE, rel=1e-9, abs=1e-12)


def test_bursts_feed_the_edge_fit_and_price_the_burst_action():
    """A burst (the edge streaming n tokens itself) is n one-token edge steps: it feeds the edge's fit and prices
    ``predict_burst`` = one round trip's overhead + n fitted steps, at idle power (the prior's before a fit)."""
    prior = SystemConfig.paper().build_clock()
    planner = MeasuredPlanner(prior, device_power=POWER)
    assert planner.predict_burst(8, None, 100) == prior.predict_burst(8, None, 100)
    with pytest.raises(ValueError, match="at least one token"):
        planner.predict_burst(0, None, 100)
    for record in _records(6):
        planner.observe(record)
    steps = sum(_cost(EDGE, 1, 50 + i) for i in range(10))
    m = RoundMeasurement(up_bytes=10, down_bytes=120, rpc_ms=(steps + LINK[0]) * 1e3, server_ms=steps * 1e3)
    planner.observe(RoundRecord(index=6, start=50, budget=0, drafted=0, sent=0, accepted=0, token=1, entropies=[],
                                tokens=list(range(10)), wall=PhaseTimes(), measured=m, streamed=10))
    p = planner.parameters()
    assert p["rounds"] == 7 and p["edge"] == pytest.approx(EDGE, rel=2e-2)
    t, e = planner.predict_burst(8, None, 100)
    assert t == pytest.approx(LINK[0] + sum(_cost(EDGE, 1, 100 + i) for i in range(8)), rel=1e-2)
    assert e == pytest.approx(POWER.idle_w * t)
    assert planner.predict_burst(16, None, 100)[0] > t  # longer bursts take longer
