import math

import numpy as np
import pytest
from pydantic import ValidationError

from gelato.system.channel import ChannelConfig, PathLoss, TraceChannel, WirelessChannel, make_channel, shannon_rate
from gelato.system.units import db_to_linear, dbm_to_w, linear_to_db, w_to_dbm


def test_db_conversions():
    assert dbm_to_w(30) == pytest.approx(1.0)
    assert dbm_to_w(0) == pytest.approx(1e-3)
    assert dbm_to_w(23) == pytest.approx(0.19952623)
    assert dbm_to_w(-174) == pytest.approx(3.98107e-21, rel=1e-5)
    assert w_to_dbm(0.2) == pytest.approx(23.0103, abs=1e-4)
    assert w_to_dbm(dbm_to_w(17.3)) == pytest.approx(17.3)
    assert db_to_linear(3) == pytest.approx(1.99526, rel=1e-5)
    assert db_to_linear(-20) == pytest.approx(0.01)
    assert linear_to_db(1000) == pytest.approx(30)
    with pytest.raises(ValueError):
        linear_to_db(0)
    with pytest.raises(ValueError):
        w_to_dbm(-1)


def test_path_loss_by_hand():
    assert PathLoss(distance_km=1.0).loss_db() == pytest.approx(128.1)
    assert PathLoss(distance_km=0.1).loss_db() == pytest.approx(128.1 - 37.6)
    pl = 128.1 + 37.6 * math.log10(0.175)
    assert PathLoss(distance_km=0.175).loss_db() == pytest.approx(pl)
    assert PathLoss(distance_km=0.175).gain() == pytest.approx(10 ** (-pl / 10))


def test_uplink_rate_at_1mhz_by_hand():
    cfg = ChannelConfig(uplink_bandwidth_hz=1e6, uplink_power_dbm=23, noise_dbm_per_hz=-174,
                        path_loss=PathLoss(distance_km=0.175))
    ch = WirelessChannel(cfg)
    fading = 0.37
    h = 10 ** (-(128.1 + 37.6 * math.log10(0.175)) / 10) * fading
    p_u = 10 ** ((23 - 30) / 10)
    n0b = 10 ** ((-174 - 30) / 10) * 1e6
    snr = p_u * h / n0b
    st = ch.state_for(fading)
    assert st.gain == pytest.approx(h)
    assert st.snr_db == pytest.approx(10 * math.log10(snr))
    assert st.uplink_bps == pytest.approx(1e6 * math.log2(1 + snr))
    # at the mean gain: ~37.36 dB, ~12.41 Mbit/s (docs/design-decisions.md says "about 37 dB at 1 MHz")
    mean = ch.mean_state()
    assert mean.snr_db == pytest.approx(37.36, abs=0.01)
    assert mean.uplink_bps == pytest.approx(12.4116e6, rel=1e-4)


def test_downlink_uses_its_own_bandwidth_and_power():
    cfg = ChannelConfig(uplink_bandwidth_hz=1e6, uplink_power_dbm=23, downlink_bandwidth_hz=5e6,
                        downlink_power_dbm=33, path_loss=PathLoss(distance_km=0.2), fading="none")
    st = WirelessChannel(cfg).next_state()
    snr_dl = dbm_to_w(33) * st.gain / (dbm_to_w(-174) * 5e6)
    assert st.downlink_bps == pytest.approx(5e6 * math.log2(1 + snr_dl))
    assert st.downlink_snr_db - st.snr_db == pytest.approx(10 - 10 * math.log10(5))


def test_shannon_rate_checks():
    assert shannon_rate(2e6, 3.0) == pytest.approx(4e6)
    with pytest.raises(ValueError):
        shannon_rate(0, 1.0)


def test_rayleigh_fading_mean_one_and_seeded():
    a = WirelessChannel(ChannelConfig(), seed=7)
    b = WirelessChannel(ChannelConfig(), seed=7)
    c = WirelessChannel(ChannelConfig(), seed=8)
    fa = [a.next_state().fading for _ in range(20000)]
    fb = [b.next_state().fading for _ in range(20000)]
    fc = [c.next_state().fading for _ in range(50)]
    assert fa == fb
    assert fa[:50] != fc
    assert np.mean(fa) == pytest.approx(1.0, abs=0.03)
    assert np.var(fa) == pytest.approx(1.0, abs=0.08)  # Exp(1): variance 1
    assert min(fa) >= 0
    a.reset(7)
    assert a.next_state().fading == fa[0]


def test_no_fading_is_constant():
    ch = WirelessChannel(ChannelConfig(fading="none"))
    assert {ch.next_state().gain for _ in range(5)} == {ch.mean_state().gain}


def test_config_validation_errors():
    with pytest.raises(ValidationError, match="greater than 0"):
        ChannelConfig(uplink_bandwidth_hz=0)
    with pytest.raises(ValidationError, match="greater than 0"):
        PathLoss(distance_km=-1)
    with pytest.raises(ValidationError, match="Extra inputs"):
        ChannelConfig(bandwith_hz=1e6)  # typo
    with pytest.raises(ValidationError):
        ChannelConfig(fading="rician")
    with pytest.raises(ValidationError, match="not found"):
        ChannelConfig(trace_path="/nonexistent/trace.csv")


def test_trace_of_rates(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("uplink_bps,downlink_bps\n1e6,2e6\n5e5,\n")
    cfg = ChannelConfig(uplink_bandwidth_hz=1e6, trace_path=path)
    ch = make_channel(cfg)
    assert isinstance(ch, TraceChannel)
    s0, s1, s2 = ch.next_state(), ch.next_state(), ch.next_state()
    assert s0.uplink_bps == 1e6 and s0.downlink_bps == 2e6
    assert s1.uplink_bps == 5e5
    # implied gain from the rate: SNR = 2^(r/B) - 1
    assert s1.snr_db == pytest.approx(10 * math.log10(2 ** 0.5 - 1))
    assert s2.uplink_bps == s0.uplink_bps and s2.index == 2  # wraps
    strict = TraceChannel(path, cfg, wrap=False)
    strict.next_state(), strict.next_state()
    with pytest.raises(IndexError):
        strict.next_state()


def test_trace_of_snr(tmp_path):
    path = tmp_path / "snr.csv"
    path.write_text("snr_db\n20\n")
    cfg = ChannelConfig(uplink_bandwidth_hz=2e6, downlink_power_dbm=23, uplink_power_dbm=23)
    st = TraceChannel(path, cfg).next_state()
    assert st.uplink_bps == pytest.approx(2e6 * math.log2(101))
    assert st.downlink_bps == pytest.approx(st.uplink_bps)  # same power, bandwidth and gain


def test_trace_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("rate\n1\n")
    with pytest.raises(ValueError, match="uplink_bps"):
        TraceChannel(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("snr_db\n")
    with pytest.raises(ValueError, match="no rows"):
        TraceChannel(empty)
