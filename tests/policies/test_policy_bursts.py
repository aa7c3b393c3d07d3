"""gelato-improved chooses between drafting and an edge burst (issue 31, item 2), losslessly.

A burst (the edge streams C tokens it generates itself) is picked when its value C - theta T - lambda E beats
every draft length's: with a fast edge far away, and when energy is dear (an exhausted budget waits for a
burst instead of paying drafts); a slow edge near by keeps drafting. gelato-paper never bursts.
"""

from __future__ import annotations

import pytest

from gelato.decoding.policy import RoundContext
from gelato.decoding.sampling import SamplingParams
from gelato.generation import DraftModelProposer, TargetModelVerifier, generate
from gelato.generation.loop import target_only_generate
from gelato.models import CachedCausalLM
from gelato.policies import make_policy
from gelato.system.channel import ChannelConfig
from gelato.system.clock import ModelledClock
from gelato.system.compute import ConstantCompute
from gelato.system.energy import DevicePower

GREEDY = SamplingParams()
PROMPT = [3, 17, 42, 5, 8]
N = 48


def _clock(delay_s: float, step_s: float, draft_s: float, bps: float = 10e6) -> ModelledClock:
    return ModelledClock(channel=ChannelConfig(uplink_bps=bps, downlink_bps=bps, fading="none", delay_s=delay_s),
                         verify_compute=ConstantCompute(step_s), draft_compute=ConstantCompute(draft_s),
                         device_power=DevicePower(compute_w=5.0))


def _run(pair, clock, **cfg):
    target, draft = pair
    policy = make_policy("gelato-improved", predictor=clock, **cfg)
    result = generate(PROMPT, DraftModelProposer(CachedCausalLM(draft), GREEDY),
                      TargetModelVerifier(CachedCausalLM(target), GREEDY), policy, N, clock=clock)
    assert result.token_ids == target_only_generate(CachedCausalLM(target), PROMPT, GREEDY, N).token_ids
    return result, policy


def test_a_fast_edge_far_away_streams_after_the_first_drafted_round(pair):
    result, policy = _run(pair, _clock(delay_s=0.05, step_s=0.003, draft_s=0.02))
    assert result.rounds[0].sent > 0  # drafting's cost is measured first
    assert sum(r.streamed for r in result.rounds) >= N // 2
    burst = next(r for r in result.rounds if r.streamed)
    assert (burst.budget, burst.sent, burst.accepted) == (0, 0, 0) and burst.charge.t_draft == 0


def test_a_slow_edge_near_by_keeps_drafting(pair):
    result, policy = _run(pair, _clock(delay_s=0.001, step_s=0.1, draft_s=0.005, bps=100e6))
    assert not any(r.streamed for r in result.rounds) and policy.state()["stream"] == 0


def test_an_exhausted_energy_budget_waits_for_bursts(pair):
    """Drafting pays in time here (a 20 ms edge step, a 20 ms round trip, 2 ms drafts at 5 W), so a loose
    budget drafts every round; a budget drafting cannot meet makes bursts, which cost the device no compute."""
    loose, _ = _run(pair, _clock(delay_s=0.01, step_s=0.02, draft_s=0.002), energy_budget=10.0)
    tight_clock = _clock(delay_s=0.01, step_s=0.02, draft_s=0.002)
    tight, _ = _run(pair, tight_clock, energy_budget=0.002)
    assert not any(r.streamed for r in loose.rounds)
    assert any(r.streamed for r in tight.rounds) and any(r.sent for r in tight.rounds)  # interleaved
    per_token = lambda res: sum(r.charge.e_round for r in res.rounds) / N  # noqa: E731
    assert per_token(tight) < per_token(loose)


def test_bursts_can_be_turned_off_and_gelato_paper_never_bursts(pair):
    result, _ = _run(pair, _clock(delay_s=0.05, step_s=0.003, draft_s=0.02), burst_tokens=0)
    assert not any(r.streamed for r in result.rounds)
    ctx = RoundContext(index=0, generated=0, context_len=5, max_budget=8, max_stream=40)
    assert make_policy("gelato-paper", predictor=_clock(0.05, 0.003, 0.02)).stream(ctx) == 0


@pytest.mark.parametrize("cfg", [{"burst_tokens": -1}, {"burst_overhead": 0.0}])
def test_bad_burst_settings_are_refused(cfg):
    with pytest.raises(ValueError):
        make_policy("gelato-improved", predictor=_clock(0.05, 0.003, 0.02), **cfg)
