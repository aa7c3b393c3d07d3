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

from dataclasses import asdict, dataclass

from pydantic import BaseModel, ConfigDict, Field

from gelato.system.units import dbm_to_w

_STRICT = ConfigDict(extra="forbid", frozen=True)

DEVICE_TERMS = ("draft", "uplink", "downlink", "idle")


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
class RoundEnergy:
    """One round's energy terms in joules."""

    index: int
    draft: float
    uplink: float
    downlink: float
    idle: float
    edge: float

    @property
    def device(self) -> float:
        return self.draft + self.uplink + self.downlink + self.idle

    def to_dict(self) -> dict:
        return {**asdict(self), "device": self.device}


def device_round_energy(power: DevicePower, uplink_power_w: float, t_draft: float, t_uplink: float,
                        t_downlink: float, t_verify: float) -> dict[str, float]:
    """The four device terms of one round from its phase times."""
    tx = power.transmit_w if power.transmit_w is not None else uplink_power_w
    return {"draft": power.compute_w * t_draft, "uplink": tx * t_uplink,
            "downlink": power.receive_w * t_downlink, "idle": power.idle_w * t_verify}


def edge_round_energy(power: EdgePower, downlink_power_w: float, t_verify: float, t_downlink: float) -> float:
    tx = power.transmit_w if power.transmit_w is not None else downlink_power_w
    return power.verify_w * t_verify + tx * t_downlink


class EnergyLedger:
    """Per-round device terms and edge energy; every total is the sum of the per-round entries."""

    def __init__(self) -> None:
        self.rounds: list[RoundEnergy] = []

    def reset(self) -> None:
        self.rounds.clear()

    def charge(self, index: int, draft: float, uplink: float, downlink: float, idle: float,
               edge: float) -> RoundEnergy:
        values = {"draft": draft, "uplink": uplink, "downlink": downlink, "idle": idle, "edge": edge}
        bad = {k: v for k, v in values.items() if not v >= 0}
        if bad:
            raise ValueError(f"energy terms must be >= 0 J, got {bad}")
        entry = RoundEnergy(index=index, **values)
        self.rounds.append(entry)
        return entry

    def totals(self) -> dict[str, float]:
        """Per-term totals over all rounds, plus ``device`` (sum of the four device terms) and ``edge``."""
        out = {term: sum(getattr(r, term) for r in self.rounds) for term in (*DEVICE_TERMS, "edge")}
        out["device"] = sum(r.device for r in self.rounds)
        return out

    def per_token(self, tokens: int) -> dict[str, float]:
        """Totals divided by generated tokens (J/token)."""
        if tokens <= 0:
            raise ValueError(f"need a positive token count for J/token, got {tokens}")
        return {k: v / tokens for k, v in self.totals().items()}

    def __len__(self) -> int:
        return len(self.rounds)
