import pytest
from pydantic import ValidationError

from gelato.system.energy import DevicePower, EdgePower, EnergyLedger, device_round_energy, edge_round_energy
from gelato.system.units import dbm_to_w


def test_round_energy_by_hand():
    power = DevicePower(compute_w=12, receive_w=0.5, idle_w=2.0)
    e = device_round_energy(power, uplink_power_w=0.2, t_draft=0.1, t_uplink=0.05, t_downlink=0.01, t_verify=0.1)
    assert e == pytest.approx({"draft": 1.2, "uplink": 0.01, "downlink": 0.005, "idle": 0.2})
    # an explicit transmit draw replaces the radiated power
    e2 = device_round_energy(DevicePower(transmit_w=1.5), 0.2, 0, 0.05, 0, 0)
    assert e2["uplink"] == pytest.approx(0.075)
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


def test_ledger_totals_are_sums_of_rounds():
    ledger = EnergyLedger()
    ledger.charge(0, 1.0, 0.1, 0.0, 0.2, 5.0)
    ledger.charge(1, 0.5, 0.3, 0.05, 0.0, 4.0)
    ledger.charge(2, 0.25, 0.7, 0.01, 0.1, 3.0)
    t = ledger.totals()
    assert t["draft"] == pytest.approx(1.75) and t["uplink"] == pytest.approx(1.1)
    assert t["device"] == pytest.approx(sum(r.device for r in ledger.rounds))
    assert t["device"] == pytest.approx(t["draft"] + t["uplink"] + t["downlink"] + t["idle"])
    assert t["edge"] == pytest.approx(12.0)
    assert ledger.per_token(10)["device"] == pytest.approx(t["device"] / 10)
    with pytest.raises(ValueError):
        ledger.charge(3, -1, 0, 0, 0, 0)
    with pytest.raises(ValueError):
        ledger.per_token(0)
