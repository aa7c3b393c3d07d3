import pytest
from pydantic import ValidationError

from gelato.system.energy import DeviceEnergy, DevicePower, EdgePower, device_round_energy, edge_round_energy
from gelato.system.units import dbm_to_w


def test_round_energy_by_hand():
    power = DevicePower(compute_w=12, receive_w=0.5, idle_w=2.0)
    e = device_round_energy(power, uplink_power_w=0.2, t_draft=0.1, t_uplink=0.05, t_downlink=0.01, t_verify=0.1)
    assert isinstance(e, DeviceEnergy)
    assert (e.draft, e.uplink, e.downlink, e.idle) == pytest.approx((1.2, 0.01, 0.005, 0.2))
    assert e.total == pytest.approx(1.2 + 0.01 + 0.005 + 0.2)
    # an explicit transmit draw replaces the radiated power
    e2 = device_round_energy(DevicePower(transmit_w=1.5), 0.2, 0, 0.05, 0, 0)
    assert e2.uplink == pytest.approx(0.075)
    assert edge_round_energy(EdgePower(verify_w=300), 1.0, t_verify=0.1, t_downlink=0.02) == pytest.approx(30.02)


def test_paper_defaults_charge_only_draft_and_uplink():
    p = DevicePower()
    assert p.receive_w == 0 and p.idle_w == 0 and p.compute_w == 12
    assert DevicePower.with_receive_dbm(19).receive_w == pytest.approx(dbm_to_w(19))


def test_power_validation():
    with pytest.raises(ValidationError):
        DevicePower(compute_w=-1)
    with pytest.raises(ValidationError, match="Extra inputs"):
        DevicePower(compute_watts=3)
