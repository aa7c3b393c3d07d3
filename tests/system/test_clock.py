import copy
import json

import pytest

from gelato.decoding.policy import DraftPolicy, RoundContext
from gelato.decoding.sampling import SamplingParams
from gelato.decoding.types import Draft, DraftStep, RoundRecord, StopDecision, Verdict
from gelato.generation import generate
from gelato.policies.static import StaticPolicy
from gelato.system.channel import ChannelConfig, ChannelState, PathLoss
from gelato.system.clock import CHARGE_KEYS, ModelledClock
from gelato.system.compute import QWEN25_0_5B, FlopsCompute, draft_seconds
from gelato.system.config import SystemConfig
from gelato.system.energy import DevicePower
from gelato.system.summary import summarize_charged_rounds
from gelato.system.units import dbm_to_w
from gelato.wire.payload import PayloadConfig

GREEDY = SamplingParams(temperature=0.0)
SAMPLE = SamplingParams(temperature=1.0)
PROMPT = [1, 5, 9, 13, 2, 7]


def run(pair, make_spec, clock, params=GREEDY, policy=None, n=24, seed=0, on_round=None):
    proposer, verifier = make_spec(*pair, params, seed=seed)
    return generate(PROMPT, proposer, verifier, policy or StaticPolicy(4), n, clock=clock,
                                on_round=on_round)


def charges(result):
    return [r.charge.as_dict() for r in result.rounds]


@pytest.mark.parametrize("factory,params", [
    (lambda s: SystemConfig.paper().build_clock(s), GREEDY),
    (lambda s: SystemConfig.generic(payload=PayloadConfig(greedy=False)).build_clock(s), SAMPLE),
])
def test_deterministic_for_a_seed(near_pair, make_spec_pair, factory, params):
    a = run(near_pair, make_spec_pair, factory(3), params)
    b = run(near_pair, make_spec_pair, factory(3), params)
    c = run(near_pair, make_spec_pair, factory(4), params)
    assert a.token_ids == b.token_ids
    assert charges(a) == charges(b)
    assert [x["gain"] for x in charges(a)] != [x["gain"] for x in charges(c)]
    for ch in charges(a):
        assert set(CHARGE_KEYS) <= set(ch)


def test_charge_by_hand_paper_mode(tiny_pair, make_spec_pair):
    cfg = ChannelConfig(uplink_bandwidth_hz=1e6, uplink_power_dbm=23, fading="none",
                        path_loss=PathLoss(distance_km=0.175))
    clock = SystemConfig.paper().model_copy(update={"channel": cfg}).build_clock(0)
    res = run(tiny_pair, make_spec_pair, clock)
    rate = clock.channel.mean_state().uplink_bps
    for r in res.rounds:
        ch = r.charge
        d, dff, L, g = 896, 4864, r.start, r.drafted
        F = 24 * g * (8 * d * d + 4 * (L + g / 2) * d + 4 * d * dff)
        assert ch.t_draft == pytest.approx(F / 40e9, rel=1e-12)
        assert ch.e_draft == pytest.approx(12 * F / 40e9, rel=1e-12)
        assert ch.t_uplink == pytest.approx(ch.bits_up / rate)
        assert ch.e_uplink == pytest.approx(dbm_to_w(23) * ch.bits_up / rate)
        assert ch.t_verify == 0.1
        assert ch.e_downlink == 0 and ch.e_idle == 0  # the paper charges draft and uplink only
        assert ch.t_round == pytest.approx(ch.t_draft + ch.t_uplink + ch.t_verify + ch.t_downlink)
        assert ch.e_round == pytest.approx(ch.e_draft + ch.e_uplink)
        assert ch.e_edge == pytest.approx(72 * 0.1 + dbm_to_w(30) * ch.t_downlink)
        # paper_topp over a 64-token vocabulary with greedy temperature-1 q: every q has full support
        assert ch.bits_up >= r.sent * 64 * 50


def test_device_energy_terms_and_cumulative_totals(tiny_pair, make_spec_pair, tmp_path):
    clock = SystemConfig.generic().build_clock(1)
    res = run(tiny_pair, make_spec_pair, clock)
    charges = [r.charge for r in res.rounds]
    assert [r.charge for r in clock.records] == charges
    for c in charges:  # a round's device energy is its four terms, each non-negative; the edge's is apart
        assert min(c.e_draft, c.e_uplink, c.e_downlink, c.e_idle, c.e_edge) >= 0
        assert c.e_round == pytest.approx(c.e_draft + c.e_uplink + c.e_downlink + c.e_idle, rel=1e-12)
    device = sum(c.e_round for c in charges)
    assert clock.cum_energy == pytest.approx(device)
    assert clock.cum_energy == pytest.approx(sum(c.e_draft + c.e_uplink + c.e_downlink + c.e_idle for c in charges))
    assert [c.cum_energy for c in charges] == pytest.approx([sum(x.e_round for x in charges[:i + 1])
                                                             for i in range(len(charges))])
    assert res.rounds[-1].charge.cum_energy == clock.cum_energy
    assert clock.cum_time == pytest.approx(sum(c.t_round for c in charges))
    assert clock.cum_tokens == sum(r.accepted + 1 for r in res.rounds)
    assert sum(c.e_idle for c in charges) > 0 and sum(c.e_downlink for c in charges) > 0  # generic: all four terms
    s = summarize_charged_rounds(clock.rows, clock.cum_tokens)  # the one modelled summariser, on the clock's rows
    assert s["joules_per_token"] == pytest.approx(device / clock.cum_tokens)
    assert s["modelled_seconds"] == pytest.approx(clock.cum_time) and s["rounds"] == len(res.rounds)
    path = clock.rounds_jsonl(tmp_path / "rounds.jsonl")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == len(res.rounds)
    assert lines[0]["sent"] == res.rounds[0].sent and lines[0]["entropies"] == pytest.approx(res.rounds[0].entropies, abs=1e-5)
    assert set(CHARGE_KEYS) <= set(lines[-1])


def test_begin_prompt_resets_the_draft_cache_state_and_begin_round_does_not():
    clock = SystemConfig.generic().build_clock(0)
    draft = Draft(tokens=[3, 4], q=None, entropies=[0.1] * 2, token_probs=[0.9] * 2, max_probs=[0.9] * 2, budget=2,
                  n_computed=2, start=10)
    record = RoundRecord(index=0, start=10, budget=2, drafted=2, sent=2, accepted=2, token=1, entropies=[0.1] * 2)
    clock.begin_prompt()
    clock.begin_round()
    assert clock.charge(record, draft, Verdict(accepted=2, token=1)).n_pending == 1  # a prompt's first round
    assert clock.predict_terms(2, None, 13, 8.0).n_pending == 2  # all accepted: verdict + last draft token
    clock.begin_round(RoundContext(index=0, generated=0, context_len=13, max_budget=5))
    assert clock.predict_terms(2, None, 13, 8.0).n_pending == 2  # a round never starts a prompt by itself
    clock.begin_prompt()
    assert clock.predict_terms(2, None, 13, 8.0).n_pending == 1


def test_a_negative_energy_term_is_refused():
    clock = SystemConfig.generic().build_clock(0)
    clock.device_power = DevicePower.model_construct(compute_w=-1.0, transmit_w=None, receive_w=0.0, idle_w=0.0)
    draft = Draft(tokens=[3, 4], q=None, entropies=[0.1] * 2, token_probs=[0.9] * 2, max_probs=[0.9] * 2, budget=2,
                  n_computed=2, start=10)
    record = RoundRecord(index=0, start=10, budget=2, drafted=2, sent=2, accepted=2, token=1, entropies=[0.1] * 2)
    clock.begin_round()
    with pytest.raises(ValueError, match="e_draft"):
        clock.charge(record, draft, Verdict(accepted=2, token=1))
    assert clock.records == [] and clock.cum_energy == 0.0


class PredictingPolicy(DraftPolicy):
    """Static budget; snapshots the clock before each round so its prediction can be checked later."""

    def __init__(self, clock, k):
        self.clock, self.k, self.snapshots = clock, k, []

    def budget(self, ctx: RoundContext) -> int:
        assert isinstance(ctx.link, ChannelState)
        self.snapshots.append((copy.deepcopy(self.clock), ctx))
        return self.k


@pytest.mark.parametrize("factory", [lambda: SystemConfig.paper().build_clock(5), lambda: SystemConfig.generic().build_clock(5)])
def test_predict_agrees_with_charge(near_pair, make_spec_pair, factory):
    clock = factory()
    policy = PredictingPolicy(clock, 3)
    res = run(near_pair, make_spec_pair, clock, policy=policy, n=40)
    checked = 0
    for (snap, ctx), r in zip(policy.snapshots, res.rounds):
        if r.sent != 3 or r.drafted != 3:
            continue
        ch = r.charge
        t, e = snap.predict(3, ctx.link, ctx.context_len, ch.bits_up / 3, ch.bits_down)
        assert t == pytest.approx(ch.t_round, rel=1e-12)
        assert e == pytest.approx(ch.e_round, rel=1e-12)
        checked += 1
    assert checked >= 3


def test_discarded_token_is_billed(tiny_pair, make_spec_pair):
    class StopBefore(DraftPolicy):
        def budget(self, ctx):
            return 5

        def keep_drafting(self, step: DraftStep):
            return StopDecision.STOP_BEFORE if step.position == 2 else StopDecision.CONTINUE

    clock = SystemConfig.paper().build_clock(0)
    res = run(tiny_pair, make_spec_pair, clock, policy=StopBefore(), n=12)
    model = FlopsCompute(QWEN25_0_5B, 40e9)
    for r in res.rounds:
        if r.budget < 3:
            continue
        assert (r.drafted, r.sent) == (3, 2)
        assert r.charge.t_draft == pytest.approx(draft_seconds(model, 3, r.start, 0))
        assert r.charge.t_draft > draft_seconds(model, 2, r.start, 0)


@pytest.mark.parametrize("kind", ["same", "near", "random"])
def test_sequential_pending_matches_real_draft_forwards(tiny_pair, near_pair, make_spec_pair, kind):
    pair = {"same": (tiny_pair[1], tiny_pair[1]), "near": near_pair, "random": tiny_pair}[kind]
    proposer, verifier = make_spec_pair(*pair, GREEDY)
    clock = SystemConfig.generic().build_clock(0)
    fed = []
    last = [0]

    def on_round(record):
        fed.append(proposer.model.tokens_processed - last[0])
        last[0] = proposer.model.tokens_processed

    res = generate(PROMPT, proposer, verifier, StaticPolicy(3), 40, clock=clock, on_round=on_round)
    for r, n_fed in list(zip(res.rounds, fed))[1:]:  # round 0 includes the (unbilled) prompt prefill
        if r.drafted:
            assert r.charge.n_pending + r.drafted - 1 == n_fed
    pendings = {r.charge.n_pending for r in res.rounds[1:] if r.drafted}
    assert pendings == {"same": {2}, "near": {1, 2}, "random": {1}}[kind]


def test_system_presets_round_trip_through_json_to_the_same_clock(tiny_pair, make_spec_pair):
    """SystemConfig.paper / .generic are the one source of presets; a preset saved as JSON (an experiment
    config) and loaded again builds a clock that charges every round identically."""
    for preset in (SystemConfig.paper(), SystemConfig.generic()):
        again = SystemConfig.model_validate_json(preset.model_dump_json())
        assert again == preset
        a = run(tiny_pair, make_spec_pair, preset.build_clock(seed=2), n=12)
        b = run(tiny_pair, make_spec_pair, again.build_clock(seed=2), n=12)
        assert [x.charge for x in a.rounds] == [x.charge for x in b.rounds]


def test_dssd_bills_receive_energy_on_rejections(tiny_pair, make_spec_pair):
    clock = SystemConfig.paper(payload_mode="dssd", dssd_target_support=2000).build_clock(0)
    res = run(tiny_pair, make_spec_pair, clock)
    assert clock.device_power.receive_w == pytest.approx(dbm_to_w(19))
    rejected = [r for r in res.rounds if r.accepted < r.sent]
    full = [r for r in res.rounds if r.accepted == r.sent]
    assert rejected, "tiny random pair should reject some drafts"
    for r in rejected:
        assert r.charge.bits_down > 2000 * 8
        assert r.charge.e_downlink == pytest.approx(dbm_to_w(19) * r.charge.t_downlink)
    for r in full:
        assert r.charge.bits_down < 400


def test_trace_channel_drives_the_clock(tiny_pair, make_spec_pair, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("uplink_bps,downlink_bps\n1e5,1e6\n2e5,1e6\n")
    clock = ModelledClock(channel=ChannelConfig(trace_path=path), payload=PayloadConfig(),
                          device_power=DevicePower())
    res = run(tiny_pair, make_spec_pair, clock, n=10)
    rates = [r.charge.rate_up_bps for r in res.rounds]
    assert rates[:3] == [1e5, 2e5, 1e5][: len(rates[:3])]
    for r in res.rounds:
        assert r.charge.t_uplink == pytest.approx(r.charge.bits_up / r.charge.rate_up_bps)


def test_predict_defaults_and_validation():
    clock = SystemConfig.paper().build_clock(0)
    link = clock.channel.mean_state()
    t1, e1 = clock.predict(1, link, 100, 1000.0)
    t7, e7 = clock.predict(7, link, 100, 1000.0)
    assert t7 > t1 and e7 > e1
    # energy of g tokens: paper F at P_D plus P_U * bits / rate
    F = 24 * 7 * (8 * 896**2 + 4 * (100 + 3.5) * 896 + 4 * 896 * 4864)
    assert e7 == pytest.approx(12 * F / 40e9 + dbm_to_w(23) * 7000 / link.uplink_bps)
    assert clock.predict(7, None, 100, 1000.0) == (t7, e7)  # no link: the mean state
    t0, e0 = clock.predict(0, link, 100, 0.0)  # an edge-only round: verification and the verdict
    assert e0 == 0.0 and t0 == pytest.approx(0.1 + clock.predict_terms(0, link, 100, 0.0).t_downlink)
    with pytest.raises(ValueError):
        clock.predict(-1, link, 100, 10.0)


def test_clock_is_a_round_predictor_for_the_policies():
    from gelato.policies.predictor import RoundPredictor

    assert isinstance(SystemConfig.paper().build_clock(), RoundPredictor)
