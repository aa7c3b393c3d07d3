"""The overlap timeline of pipelined drafting, against hand-computed rounds."""

from __future__ import annotations

import pytest

from gelato.decoding.types import Draft, RoundCharge, RoundRecord, Verdict
from gelato.system.clock import overlap_timeline
from gelato.system.compute import draft_seconds
from gelato.system.config import SystemConfig


def test_no_predraft_is_the_sequential_round():
    t = overlap_timeline(0.05, 0.01, 0.1, 0.002)
    assert t.t_round == pytest.approx(0.05 + 0.01 + 0.1 + 0.002)
    assert t.t_idle == pytest.approx(0.1) and t.t_exposed == 0.0


def test_predraft_hidden_in_the_wait():
    # 20 ms draft, 10 ms uplink, 100 ms verify, 2 ms downlink; 60 ms of pre-draft fits in the 112 ms wait
    t = overlap_timeline(0.020, 0.010, 0.100, 0.002, t_predraft=0.060)
    assert t.t_round == pytest.approx(0.020 + 0.112)
    assert t.t_exposed == 0.0
    assert t.t_idle == pytest.approx(0.100 - 0.050)  # busy from 10 ms to 60 ms of the verify window


def test_predraft_beyond_the_wait_is_not_hidden():
    t = overlap_timeline(0.0, 0.010, 0.100, 0.002, t_predraft=0.150)
    assert t.t_round == pytest.approx(0.150)
    assert t.t_exposed == pytest.approx(0.150 - 0.112)
    assert t.t_idle == pytest.approx(0.0)


def test_downlink_time_not_counted_when_the_clock_says_so():
    t = overlap_timeline(0.0, 0.010, 0.100, 0.002, t_predraft=0.0, count_downlink_time=False)
    assert t.t_round == pytest.approx(0.110)


def test_negative_phase_time_is_refused():
    with pytest.raises(ValueError, match=">= 0"):
        overlap_timeline(0.0, 0.0, 0.1, 0.0, t_predraft=-1.0)


def _draft(n_sent: int, n_carried: int = 0, start: int = 100) -> Draft:
    return Draft(tokens=[7] * n_sent, q=None, entropies=[0.1] * n_sent, token_probs=[0.9] * n_sent,
                 max_probs=[0.9] * n_sent, budget=n_sent, n_computed=n_sent, start=start, n_carried=n_carried)


def _charge(clock, draft: Draft, predrafted: int) -> RoundCharge:
    clock.begin_round()
    rec = RoundRecord(index=0, start=draft.start, budget=draft.budget, drafted=draft.n_computed,
                      sent=len(draft.tokens), accepted=len(draft.tokens), token=1, entropies=draft.entropies)
    return clock.charge(rec, draft, Verdict(accepted=len(draft.tokens), token=1), predrafted=predrafted)


def test_paper_clock_charges_predraft_energy_in_full_and_overlaps_its_time():
    plain = _charge(SystemConfig.paper(bandwidth_mhz=5, payload_mode="compact").build_clock(3), _draft(4), 0)
    clock = SystemConfig.paper(bandwidth_mhz=5, payload_mode="compact").build_clock(3)
    piped = _charge(clock, _draft(4), 5)
    t_token_ctx = draft_seconds(clock.draft_compute, 5, 104, 0)  # x_5..x_9 at contexts 104..108
    assert piped.t_draft == pytest.approx(plain.t_draft)
    assert piped.t_predraft == pytest.approx(t_token_ctx)
    wait = plain.t_uplink + plain.t_verify + plain.t_downlink
    assert piped.t_round == pytest.approx(plain.t_draft + max(wait, t_token_ctx))
    assert piped.e_draft == pytest.approx(12.0 * (plain.t_draft + t_token_ctx))
    assert piped.e_predraft == pytest.approx(12.0 * t_token_ctx)


def test_carried_tokens_are_not_billed_again():
    clock = SystemConfig.paper(bandwidth_mhz=5, payload_mode="compact").build_clock(3)
    c = _charge(clock, _draft(5, n_carried=3), 0)
    # only the 2 fresh tokens, at contexts 103 and 104 (after the 3 carried ones)
    assert c.t_draft == pytest.approx(draft_seconds(clock.draft_compute, 2, 103, 0))
    fresh = SystemConfig.paper(bandwidth_mhz=5, payload_mode="compact").build_clock(3)
    assert _charge(fresh, _draft(5), 0).bits_up == c.bits_up  # all 5 tokens are still sent


def test_round_time_at_table_i_values_matches_the_prize_estimate():
    """5 MHz, T_V = 100 ms, g = 5 at ~14.5 ms a token: a usable pre-draft leaves only the wait."""
    clock = SystemConfig.paper(bandwidth_mhz=5, t_verify_s=0.1, payload_mode="compact").build_clock(0)
    full = _charge(clock, _draft(5), 6)
    reuse = _charge(clock, _draft(5, n_carried=5), 6)
    assert full.t_draft == pytest.approx(0.0727, abs=5e-4)
    assert reuse.t_draft == 0.0
    assert reuse.t_round == pytest.approx(max(reuse.t_uplink + 0.1 + reuse.t_downlink, reuse.t_predraft))
    assert 0.100 < reuse.t_round < 0.101
