"""Fixed-rate links and propagation delay in the modelled clock (the testbed's LTE / Wi-Fi presets)."""

import pytest

from gelato.decoding.types import Draft, RoundRecord, Verdict
from gelato.system.channel import ChannelConfig
from gelato.system.clock import ModelledClock
from gelato.system.compute import ConstantCompute
from gelato.system.energy import DevicePower


def _round(clock, n=4):
    draft = Draft(tokens=list(range(10, 10 + n)), q=None, entropies=[0.5] * n, token_probs=[0.9] * n,
                  max_probs=[0.9] * n, budget=n, n_computed=n, start=20)
    record = RoundRecord(index=0, start=20, budget=n, drafted=n, sent=n, accepted=2, token=7, entropies=[0.5] * n)
    clock.begin_round()
    return clock.charge(record, draft, Verdict(accepted=2, token=7))


def test_fixed_rates_and_delay_add_to_time_not_energy():
    base = dict(draft_compute=ConstantCompute(0.01), verify_compute=ConstantCompute(0.05),
                device_power=DevicePower(compute_w=5.0, idle_w=0.5))
    fixed = ChannelConfig(uplink_bps=1e6, downlink_bps=4e6, fading="none")
    a = _round(ModelledClock(channel=fixed, **base))
    b = _round(ModelledClock(channel=fixed.model_copy(update={"delay_s": 0.025}), **base))
    assert a.rate_up_bps == 1e6 and a.rate_down_bps == 4e6
    assert a.t_uplink == pytest.approx(a.bits_up / 1e6) and a.t_downlink == pytest.approx(a.bits_down / 4e6)
    assert a.t_propagation == 0 and b.t_propagation == pytest.approx(0.05)
    assert b.t_round - a.t_round == pytest.approx(0.05)
    assert b.e_round == pytest.approx(a.e_round)  # propagation costs no device energy
    t, e = ModelledClock(channel=fixed.model_copy(update={"delay_s": 0.025}), **base).predict(4, None, 20, 16.0)
    t0, e0 = ModelledClock(channel=fixed, **base).predict(4, None, 20, 16.0)
    assert t - t0 == pytest.approx(0.05) and e == pytest.approx(e0)  # plans see the delay too


def test_testbed_link_presets_feed_emulator_and_clock_alike():
    from gelato.testbed.presets import LINK_PRESETS, link_preset

    lte = LINK_PRESETS["lte"]
    link, channel = lte.link_config(), lte.channel_config()
    assert (link.uplink_bps, link.downlink_bps, link.delay_s) == (channel.uplink_bps, channel.downlink_bps,
                                                                 channel.delay_s) == (10e6, 10e6, 0.025)
    paper = LINK_PRESETS["paper"]
    assert paper.link_config().bandwidth_mhz == 1.0 and paper.channel_config().uplink_bandwidth_hz == 1e6
    custom = link_preset("lte", uplink_mbps=2, rtt_ms=80)
    assert (custom.uplink_bps, custom.downlink_bps, custom.delay_s, custom.name) == (2e6, 2e6, 0.04, "lte+explicit")
    with pytest.raises(ValueError, match="unknown link preset"):
        link_preset("nope")
