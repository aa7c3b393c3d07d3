"""The modelled charge of an edge burst (issue 31): one request up, the propagation both ways once, n edge
steps, n messages down (each sent while the edge computes the next), the device paying no draft."""

import pytest

from gelato.decoding.types import Draft, RoundRecord, Verdict
from gelato.system.channel import ChannelConfig
from gelato.system.clock import ModelledClock
from gelato.system.compute import ConstantCompute
from gelato.system.energy import DevicePower
from gelato.wire.payload import DEFAULT_SESSION
from gelato.wire.proto import gelato_pb2 as pb

L, TOKENS, STEP, DELAY = 20, [5, 300, 7], 0.05, 0.025
POWER = DevicePower(compute_w=5.0, idle_w=0.5, receive_w=0.3)


def _burst(clock, index=0):
    record = RoundRecord(index=index, start=L, budget=0, drafted=0, sent=0, accepted=0, token=TOKENS[-1],
                         entropies=[], tokens=list(TOKENS), streamed=len(TOKENS))
    clock.begin_round()
    return clock.charge(record, Draft.empty(L), Verdict(accepted=0, token=TOKENS[-1]))


def _bits(msg) -> int:
    return 8 * len(msg.SerializeToString())


def _clock(down_bps):
    channel = ChannelConfig(uplink_bps=1e6, downlink_bps=down_bps, fading="none", delay_s=DELAY)
    return ModelledClock(channel=channel, verify_compute=ConstantCompute(STEP), draft_compute=ConstantCompute(0.01),
                         device_power=POWER), channel


@pytest.mark.parametrize("down_bps", [1e6, 2000.0])  # a message down is faster than a step, then slower
def test_a_burst_is_charged_by_hand_arithmetic(down_bps):
    clock, channel = _clock(down_bps)
    charge = _burst(clock)
    up = _bits(pb.DraftUp(session=DEFAULT_SESSION, position=L, round=0, stream_tokens=3))
    downs = [_bits(pb.VerdictDown(session=DEFAULT_SESSION, round=0, accepted=0, token=t, has_token=True,
                                  position=L + i + 1, streamed=True, last=i == 2)) for i, t in enumerate(TOKENS)]
    t_up, t_downs = up / 1e6, [b / down_bps for b in downs]
    assert charge.bits_up == up and charge.bits_down == sum(downs)
    assert charge.t_uplink == pytest.approx(t_up) and charge.t_propagation == pytest.approx(2 * DELAY)
    assert charge.t_verify == pytest.approx(3 * STEP) and charge.t_downlink == pytest.approx(sum(t_downs))
    if down_bps == 1e6:  # each message is down before the next step ends: the last one's downlink shows
        assert max(t_downs) < STEP
        assert charge.t_round == pytest.approx(t_up + 2 * DELAY + 3 * STEP + t_downs[2])
    else:  # the link is the bottleneck: the first step, then every message back to back
        assert min(t_downs) > STEP
        assert charge.t_round == pytest.approx(t_up + 2 * DELAY + STEP + sum(t_downs))
    # the device drafts nothing: the request's transmission, receiving, and idling during the steps
    assert charge.t_draft == 0 and charge.e_draft == 0
    assert charge.e_uplink == pytest.approx(channel.uplink_power_w * t_up)
    assert charge.e_downlink == pytest.approx(POWER.receive_w * sum(t_downs))
    assert charge.e_idle == pytest.approx(POWER.idle_w * 3 * STEP)
    assert charge.e_round == pytest.approx(charge.e_uplink + charge.e_downlink + charge.e_idle)
    assert clock.cum_tokens == 3 and clock.cum_time == pytest.approx(charge.t_round)


def test_a_burst_costs_one_round_trip_where_edge_only_rounds_pay_one_per_token():
    clock, _ = _clock(1e6)
    burst = _burst(clock)
    # the draft's cache now lacks the 3 streamed tokens too: its next first forward feeds them (1 + 3)
    assert clock._pending == 4
    ar_clock, _ = _clock(1e6)
    ar = []
    for i, t in enumerate(TOKENS):
        record = RoundRecord(index=i, start=L + i, budget=0, drafted=0, sent=0, accepted=0, token=t, entropies=[])
        ar_clock.begin_round()
        ar.append(ar_clock.charge(record, Draft.empty(L + i), Verdict(accepted=0, token=t)))
    assert sum(c.t_propagation for c in ar) == pytest.approx(3 * burst.t_propagation)
    assert ar_clock.cum_time - burst.t_round == pytest.approx(2 * 2 * DELAY, rel=0.05)
