"""Draft-ahead policies: the pre-draft depth rule, the registry names, the default of 0 for every existing
policy, and the energy-priced controller staying within E_bar."""

from __future__ import annotations

import pytest

from gelato.constants import E_BAR_J
from gelato.decoding.policy import RoundContext
from gelato.decoding.types import Draft
from gelato.experiments.runner import run_policy, synthetic_prompt_runs
from gelato.policies.pipelined import best_predraft_depth, predraft_value, wait_and_token_cost
from gelato.policies.predictor import LinearRoundPredictor
from gelato.policies.registry import POLICIES, make_policy, policy_spec
from gelato.system.config import SystemConfig

CTX = RoundContext(index=0, generated=0, context_len=100, max_budget=200)


def _draft(n: int) -> Draft:
    return Draft(tokens=[3] * n, q=None, entropies=[0.2] * n, token_probs=[0.9] * n, max_probs=[0.9] * n,
                 budget=n, n_computed=n, start=100)


@pytest.mark.parametrize("name", [n for n in POLICIES if not n.endswith("-pipelined")])
def test_every_existing_policy_predrafts_nothing(name):
    policy = make_policy(name, predictor=LinearRoundPredictor())
    assert policy.predraft(CTX, _draft(4)) == 0
    assert policy_spec(name).drafts_ahead_of is None


@pytest.mark.parametrize("name", ["gelato-improved-pipelined", "static-5-pipelined"])
def test_pipelined_policies_are_registered_by_name(name):
    assert make_policy(name, predictor=LinearRoundPredictor()).name.startswith(name)
    assert policy_spec(name).drafts_ahead_of == name.removesuffix("-pipelined")


def test_wait_and_token_cost_from_a_linear_predictor():
    pred = LinearRoundPredictor(t_fixed=0.1, t_token=0.015, e_token=0.18, p_up=0.2, rate_bps=1e6)
    wait, t_tok, e_tok = wait_and_token_cost(pred, 5, None, 100, 1000.0)
    assert wait == pytest.approx(0.1 + 5 * 1000 / 1e6)
    assert t_tok == pytest.approx(0.015) and e_tok == pytest.approx(0.18)


def test_free_energy_fills_the_wait_up_to_the_next_draft():
    # 100 ms wait, 14.5 ms a token: 6 fit; the next round sends 5, so 6 ahead (x_{g+1} plus 5) is best
    assert best_predraft_depth(0.5, theta=30.0, price=0.0, t_token=0.0145, e_token=0.174, wait=0.1,
                               next_budget=5, limit=15) == 6
    # a next draft of 10 would want 11, but time beyond the wait is paid for sure: the 7th token exposes
    # only 1.5 ms (worth it at P_use 0.5), the 8th a whole 14.5 ms (not worth it)
    assert best_predraft_depth(0.5, 30.0, 0.0, 0.0145, 0.174, 0.1, 10, 15) == 7


def test_a_high_energy_price_or_a_hopeless_predraft_stops_it():
    assert best_predraft_depth(0.5, 30.0, price=50.0, t_token=0.0145, e_token=0.174, wait=0.1,
                               next_budget=5, limit=15) == 0
    assert best_predraft_depth(0.0, 30.0, 0.0, 0.0145, 0.174, 0.1, 5, 15) == 0


def test_predraft_value_hand_computed():
    # m = 3: 2 carried tokens, each saving P (theta t + lambda e); 3 tokens of energy; 0.0435 s < wait
    u = predraft_value(3, 0.6, theta=30.0, price=2.0, t_token=0.0145, e_token=0.174, wait=0.1, next_budget=5)
    assert u == pytest.approx(2 * 0.6 * (30 * 0.0145 + 2 * 0.174) - 2 * 0.174 * 3)


def test_static_pipelined_caps_its_depth_to_the_wait():
    clock = SystemConfig.paper(bandwidth_mhz=5, t_verify_s=0.06, payload_mode="compact").build_clock()
    policy = make_policy("static-5-pipelined", predictor=clock)
    assert policy.predraft(CTX, _draft(5)) == 4  # 60 ms holds 4 tokens of ~14.6 ms
    assert make_policy("static-5-pipelined").predraft(CTX, _draft(5)) == 6  # no predictor: K + 1


def test_energy_priced_controller_stays_within_e_bar_and_beats_its_unpipelined_self():
    def go(name):
        clock = SystemConfig.paper(bandwidth_mhz=5, t_verify_s=0.1, payload_mode="compact").build_clock(1)
        return run_policy(make_policy(name, predictor=clock, e_bar=E_BAR_J), clock, synthetic_prompt_runs(seed=1), 600,
                          e_bar=E_BAR_J).summary

    piped, plain = go("gelato-improved-pipelined"), go("gelato-improved")
    assert piped["energy_constraint_met"], piped["mean_round_energy"]
    assert piped["predrafted"] > 0 and piped["predraft_used_rounds"] > 0
    assert piped["tokens_per_second"] > 1.05 * plain["tokens_per_second"]
