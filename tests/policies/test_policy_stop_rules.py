"""Each per-token stopping rule on synthetic entropy / probability sequences: where it must stop and where not."""

from __future__ import annotations

import math

import pytest

from gelato import constants
from gelato.decoding.policy import RoundContext
from gelato.decoding.types import DraftStep, RoundCharge, RoundRecord, StopDecision
from gelato.policies import (
    AdaEDLPolicy,
    GelatoImprovedPolicy,
    GelatoInnerOnlyPolicy,
    GelatoOuterOnlyPolicy,
    GelatoPaperPolicy,
    HFAssistedPolicy,
    LinearRoundPredictor,
    PMinPolicy,
    SVIPPolicy,
    hf_confidence,
    hf_heuristic,
)

C, S, A = StopDecision.CONTINUE, StopDecision.STOP_BEFORE, StopDecision.STOP_AFTER
CTX = RoundContext(index=0, generated=0, context_len=10, max_budget=100)


def step(pos: int, entropy: float = 0.1, token_prob: float = 0.9, max_prob: float | None = None) -> DraftStep:
    return DraftStep(pos, 7, entropy, token_prob, token_prob if max_prob is None else max_prob)


def run_entropies(policy, entropies, ctx=CTX) -> list[StopDecision]:
    """Decisions up to and including the first stop (what the proposer would ask)."""
    policy.budget(ctx)
    out = []
    for i, h in enumerate(entropies):
        d = policy.keep_drafting(step(i, h))
        out.append(d)
        if d is not C:
            break
    return out


def record(sent: int, accepted: int, entropies=None, charge=None, drafted=None) -> RoundRecord:
    entropies = entropies if entropies is not None else [0.1] * (drafted or sent)
    return RoundRecord(index=0, start=10, budget=max(sent, 1), drafted=drafted or len(entropies), sent=sent,
                       accepted=accepted, token=0, entropies=entropies, charge=charge)


# --- GELATO's leaky bucket -------------------------------------------------------------------------------

def test_bucket_threshold_is_paper_value():
    cfg = GelatoPaperPolicy(LinearRoundPredictor()).config
    assert cfg.h_th == pytest.approx(-math.log(constants.RHO0) / constants.C)
    assert cfg.h_th == pytest.approx(0.301, abs=1e-3)
    assert cfg.bucket_limit == pytest.approx(constants.BUCKET_FACTOR * cfg.h_th)


def test_bucket_overflow_stops_before_the_token():
    p = GelatoPaperPolicy(LinearRoundPredictor())
    h_th = p.config.h_th
    # B: 0, 0, 0.199, 0.498 (> 0.361): the 4th token overflows and is not sent
    assert run_entropies(p, [0.1, 0.2, 0.5, 0.6, 0.0]) == [C, C, C, S]
    assert p.state()["overflow_position"] == 3
    assert p.state()["bucket_peak"] == pytest.approx(0.5 - h_th + 0.6 - h_th)


def test_bucket_leaks_low_entropy_tokens_do_not_stop():
    p = GelatoInnerOnlyPolicy()
    assert run_entropies(p, [0.3] * 15) == [C] * 15  # every H below H_th: bucket stays at 0
    # 0.6 then 0.0 drains: 0.299 -> 0 -> 0.299 -> 0 ... never above 0.361
    assert run_entropies(p, [0.6, 0.0] * 7) == [C] * 14
    # two 0.6 in a row: 0.299 + 0.299 = 0.598 > 0.361
    assert run_entropies(p, [0.1, 0.6, 0.6, 0.1]) == [C, C, S]


def test_bucket_exactly_at_limit_does_not_stop():
    p = GelatoInnerOnlyPolicy()
    limit, h_th = p.config.bucket_limit, p.config.h_th
    assert run_entropies(p, [h_th + limit - 1e-9, h_th]) == [C, C]
    assert run_entropies(p, [h_th + limit + 1e-6]) == [S]  # position 0: the loop still sends it


def test_bucket_restarts_every_round():
    p = GelatoPaperPolicy(LinearRoundPredictor())
    assert run_entropies(p, [0.1, 0.6]) == [C, C]  # level 0.299 left at the end of the round
    assert run_entropies(p, [0.6]) == [C]  # would be 0.598 > limit without the reset in budget()


def test_outer_only_never_stops_inner_only_budget_is_gmax():
    p = GelatoOuterOnlyPolicy(LinearRoundPredictor())
    assert run_entropies(p, [5.0] * 6) == [C] * 6
    q = GelatoInnerOnlyPolicy(g_max=11)
    assert q.budget(CTX) == 11
    assert q.state()["queue"] == 0.0


# --- transformers ---------------------------------------------------------------------------------------

def test_hf_confidence_keeps_the_low_confidence_token():
    p = hf_confidence()
    assert p.budget(CTX) == 20
    assert p.keep_drafting(step(0, token_prob=0.41)) is C
    assert p.keep_drafting(step(1, token_prob=0.4)) is C  # stops only strictly below the threshold
    assert p.keep_drafting(step(2, token_prob=0.39)) is A  # STOP_AFTER: the token stays a candidate
    assert hf_heuristic().keep_drafting(step(0, token_prob=0.01)) is C  # no threshold in the old default


def test_hf_heuristic_schedule():
    p = hf_heuristic()
    assert p.budget(CTX) == 5
    p.observe(record(sent=5, accepted=5))
    assert p.budget(CTX) == 7
    p.observe(record(sent=7, accepted=3))
    assert p.budget(CTX) == 6
    p.observe(record(sent=2, accepted=2))  # an early-stopped but fully accepted round also counts as "all"
    assert p.budget(CTX) == 8
    for _ in range(20):
        p.observe(record(sent=1, accepted=0))
    assert p.budget(CTX) == 1  # floor at 1


def test_hf_transient_schedule_resets_per_prompt_constant_never_moves():
    p = HFAssistedPolicy(5, "heuristic_transient")
    p.budget(CTX)
    p.observe(record(sent=5, accepted=5))
    assert p.budget(RoundContext(1, generated=6, context_len=16, max_budget=100)) == 7
    assert p.budget(RoundContext(2, generated=0, context_len=4, max_budget=100)) == 5
    c = HFAssistedPolicy(4, "constant")
    c.observe(record(sent=4, accepted=4))
    c.observe(record(sent=4, accepted=0))
    assert c.budget(CTX) == 4


def test_hf_roc_retuning_picks_the_cost_minimising_threshold():
    p = hf_confidence(adapt_threshold=True)
    # rounds whose sent tokens have q = 0.9, 0.8 (accepted) then 0.3 (rejected): the threshold that
    # separates them (any t in (0.3, 0.8]) costs 0; transformers picks the score 0.8 itself
    for _ in range(3):
        p.budget(CTX)
        for i, q in enumerate([0.9, 0.8, 0.3]):
            p.keep_drafting(step(i, token_prob=q))
        p.observe(record(sent=3, accepted=2))
    assert p.threshold == pytest.approx(0.8)
    assert p.keep_drafting(step(0, token_prob=0.79)) is A


def test_hf_rejects_bad_config():
    with pytest.raises(ValueError):
        HFAssistedPolicy(0)
    with pytest.raises(ValueError):
        HFAssistedPolicy(5, "sometimes")


# --- llama.cpp p-min, SVIP, AdaEDL -------------------------------------------------------------------------

def test_pmin_stops_before_a_low_top1_token():
    p = PMinPolicy()
    p.budget(CTX)
    assert p.keep_drafting(step(0, max_prob=0.75, token_prob=0.1)) is C  # top-1, not the sampled token's q
    assert p.keep_drafting(step(1, max_prob=0.7499)) is S
    old = PMinPolicy(p_min=0.5, send_low_confidence=True)
    assert old.keep_drafting(step(1, max_prob=0.49)) is A


def test_svip_stops_above_h_squared_over_gamma():
    p = SVIPPolicy()  # sqrt(0.15 H) > 0.3  <=>  H > 0.6
    assert run_entropies(p, [0.0, 0.3, 0.59, 0.61]) == [C, C, C, S]
    assert run_entropies(SVIPPolicy(gamma=0.15, h=0.5), [1.6, 1.7]) == [C, S]  # 0.25 / 0.15 = 1.667


def test_adaedl_stops_when_lower_bound_below_lambda():
    p = AdaEDLPolicy()  # 1 - sqrt(0.2 H) < 0.7  <=>  H > 0.45
    assert run_entropies(p, [0.1, 0.44, 0.46]) == [C, C, S]
    assert run_entropies(AdaEDLPolicy(lam=0.9), [0.04, 0.06]) == [C, S]  # 0.01 / 0.2 = 0.05


# --- gelato-improved's marginal-value stop -----------------------------------------------------------------

class _Link:
    def __init__(self, bps: float) -> None:
        self.uplink_bps = bps


def _stop_position(policy, entropies, link) -> int:
    ctx = RoundContext(index=0, generated=0, context_len=10, max_budget=100, link=link)
    budget = policy.budget(ctx)
    for i, h in enumerate(entropies[:budget]):
        d = policy.keep_drafting(step(i, h))
        if d is S:
            return i
        if d is A:
            return i + 1
    return min(budget, len(entropies))


def test_improved_drafts_on_low_entropy_and_drops_a_hopeless_token():
    p = GelatoImprovedPolicy(LinearRoundPredictor(), init_bits_per_token=20_000.0)
    ctx = RoundContext(index=0, generated=0, context_len=10, max_budget=100, link=_Link(10e6))
    assert p.budget(ctx) > 3
    assert [p.keep_drafting(step(i, 0.05)) for i in range(3)] == [C, C, C]
    # an entropy whose prior acceptance exp(-0.35 * 30) ~ 3e-5 is worth less than its uplink cost
    assert p.keep_drafting(step(3, 30.0)) is S
    assert p.state()["stop"] == "stop_before"


def test_improved_stops_earlier_on_a_slower_link():
    entropies = [0.3] * 15
    fast = _stop_position(GelatoImprovedPolicy(LinearRoundPredictor(), init_bits_per_token=50_000.0),
                          entropies, _Link(50e6))
    slow = _stop_position(GelatoImprovedPolicy(LinearRoundPredictor(), init_bits_per_token=50_000.0),
                          entropies, _Link(1e6))
    assert slow < fast


def test_improved_learns_acceptance_from_outcomes():
    """After rounds where mid-entropy tokens are always rejected, it stops at them; with the prior map
    (acceptance exp(-0.35 * 0.8) = 0.76) it drafted through them."""
    entropies = [0.05, 0.05, 0.8, 0.05, 0.05]
    link = RoundContext(index=0, generated=0, context_len=10, max_budget=100, link=_Link(10e6))
    p = GelatoImprovedPolicy(LinearRoundPredictor(), init_bits_per_token=20_000.0)
    assert run_entropies(p, entropies, link) == [C] * 5
    for _ in range(300):
        p.observe(record(sent=3, accepted=2, entropies=[0.05, 0.05, 0.8],
                         charge=RoundCharge(t_round=0.2, e_round=0.5, bits_up=60_000.0)))
    assert p.map(0.8) < 0.1
    assert p.map(0.05) > 0.9
    decisions = run_entropies(p, entropies, link)
    assert decisions[:2] == [C, C] and len(decisions) == 3 and decisions[2] is not C
