"""A live run over a real loopback edge plans with what it measures: the planner a planning policy is given
is fed every round, its fitted costs are what the round records say, and greedy output still equals the
target's own."""

from __future__ import annotations

import pytest
from edge_helpers import PROMPTS, reference, remote_generate

from gelato.policies.registry import make_policy
from gelato.system.compute import MeasuredProfile
from gelato.system.config import SystemConfig
from gelato.system.measured import MeasuredPlanner

N = 24


@pytest.mark.parametrize("name", ["gelato-improved", "gelato-paper"])
def test_live_run_plans_with_measured_costs(pair, edge, name):
    target, draft = pair
    planner = MeasuredPlanner(window=1000)
    records = []
    for prompt in PROMPTS:  # one planner across prompts, as the testbed and the API share it
        policy = make_policy(name, predictor=planner)
        result, _ = remote_generate(edge.address, draft, prompt, N, policy=policy)
        assert result.token_ids == reference(target, prompt, N)
        records += result.rounds
    assert all(r.measured is not None for r in records)
    assert planner.seen == len(records) >= 3
    # the planner's parameters are what the records say
    edge_fit = MeasuredProfile.fit([(r.sent + 1, r.start, r.measured.server_ms / 1e3) for r in records])
    p = planner.parameters()
    assert p["edge"] == (edge_fit.a, edge_fit.b, edge_fit.c)
    drafted = [(r.drafted, r.start, r.wall.draft) for r in records if r.drafted > 0]
    if len(drafted) >= 3:
        d = MeasuredProfile.fit(drafted)
        assert p["draft"] == (d.a, d.b, d.c)
    link = MeasuredProfile.fit([(r.sent, 0, r.measured.network_ms / 1e3) for r in records])
    assert (p["link_fixed_s"], p["link_per_token_s"]) == (link.a, link.b)
    assert p["up_bytes_per_token"] == sum(r.measured.up_bytes for r in records) / sum(r.sent for r in records)
    # and it plans with them: a loopback round is milliseconds, not the paper's 100 ms verification
    t, e = planner.predict(1, None, 20, 0.0)
    rpc = sorted(r.measured.rpc_ms / 1e3 for r in records)
    assert 0 < t < SystemConfig.paper().build_clock().predict(1, None, 20, 0.0)[0]
    assert t < 10 * rpc[-1] + max(r.wall.draft for r in records) and e > 0
