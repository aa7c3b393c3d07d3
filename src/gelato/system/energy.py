"""Energy accounting: the device's per-round energy terms and the edge's, kept apart.

Device energy per round (joules) = draft compute + uplink transmit + downlink receive + idle:

    e_draft    = P_compute  * t_draft
    e_uplink   = P_transmit * t_uplink      (P_transmit defaults to the radiated P_U, as in the paper)
    e_downlink = P_receive  * t_downlink
    e_idle     = P_idle     * t_verify      (waiting for the edge to verify)

The paper charges only draft and uplink (receive and idle power 0); DSSD bills receive power.
Edge energy (``P_edge_verify * t_verify + P_edge_transmit * t_downlink``) is reported separately and
never charged to the device: the edge is grid-powered.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from gelato.system.units import dbm_to_w

_STRICT = ConfigDict(extra="forbid", frozen=True)


class DevicePower(BaseModel):
    """Power draws of the device in each state, watts. ``transmit_w = None``: the radiated uplink power."""

    model_config = _STRICT
    compute_w: float = Field(12.0, ge=0)
    transmit_w: float | None = Field(None, ge=0)
    receive_w: float = Field(0.0, ge=0)
    idle_w: float = Field(0.0, ge=0)

    @classmethod
    def with_receive_dbm(cls, receive_dbm: float, **kw) -> "DevicePower":
        """E.g. the paper's DSSD baseline: device receive power 19 dBm."""
        return cls(receive_w=dbm_to_w(receive_dbm), **kw)


class EdgePower(BaseModel):
    """Power draws of the edge server, watts. ``transmit_w = None``: the radiated downlink power."""

    model_config = _STRICT
    verify_w: float = Field(72.0, ge=0)
    transmit_w: float | None = Field(None, ge=0)


@dataclass(frozen=True)
class DeviceEnergy:
    """One round's four device energy terms, joules (the edge's energy is apart: :func:`edge_round_energy`)."""

    draft: float
    uplink: float
    downlink: float
    idle: float

    @property
    def total(self) -> float:
        """``draft + uplink + downlink + idle``: the round's device energy (``RoundCharge.e_round``)."""
        return self.draft + self.uplink + self.downlink + self.idle


def device_round_energy(power: DevicePower, uplink_power_w: float, t_draft: float, t_uplink: float,
                        t_downlink: float, t_verify: float) -> DeviceEnergy:
    """The four device terms of one round from its phase times (``t_verify``: the device's idle wait)."""
    tx = power.transmit_w if power.transmit_w is not None else uplink_power_w
    return DeviceEnergy(draft=power.compute_w * t_draft, uplink=tx * t_uplink,
                        downlink=power.receive_w * t_downlink, idle=power.idle_w * t_verify)


def edge_round_energy(power: EdgePower, downlink_power_w: float, t_verify: float, t_downlink: float) -> float:
    """The edge's energy of one round, joules: verification plus sending the verdict (never the device's)."""
    tx = power.transmit_w if power.transmit_w is not None else downlink_power_w
    return power.verify_w * t_verify + tx * t_downlink
