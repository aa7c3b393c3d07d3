"""Link presets and device power profiles of the testbed: one definition feeds both the link emulator (what
is measured) and the modelled clock (what is predicted)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from gelato.link.proxy import LinkConfig
from gelato.system.channel import ChannelConfig
from gelato.system.energy import DevicePower
from gelato.system.presets import JETSON_ORIN_NANO_8GB, PAPER_DEVICE, SNAPDRAGON_8_GEN_3, DevicePreset
from gelato.system.units import MHZ, dbm_to_w


@dataclass(frozen=True)
class LinkPreset:
    """A link: a channel-model bandwidth (path loss + Rayleigh fading + Shannon, per round) or fixed rates,
    and a one-way propagation delay."""

    name: str
    description: str
    bandwidth_mhz: float | None = None
    uplink_bps: float | None = None
    downlink_bps: float | None = None
    delay_s: float = 0.0
    fading: str = "rayleigh"

    def __post_init__(self) -> None:
        if self.bandwidth_mhz is None and (self.uplink_bps is None or self.downlink_bps is None):
            raise ValueError("a link needs a bandwidth (channel model) or both fixed rates")
        if self.delay_s < 0:
            raise ValueError(f"delay must be >= 0, got {self.delay_s * 1e3} ms")

    def link_config(self, seed: int = 0) -> LinkConfig:
        return LinkConfig(bandwidth_mhz=self.bandwidth_mhz if self.uplink_bps is None else None,
                          uplink_bps=self.uplink_bps, downlink_bps=self.downlink_bps, delay_s=self.delay_s,
                          fading=self.fading, seed=seed)

    def link_args(self) -> list[str]:
        """The same link as ``gelato link`` options."""
        args = ["--delay-ms", repr(self.delay_s * 1e3), "--fading", self.fading]
        if self.uplink_bps is not None:
            return args + ["--uplink-kbps", repr(self.uplink_bps / 1e3), "--downlink-kbps", repr(self.downlink_bps / 1e3)]
        return args + ["--bandwidth-mhz", repr(self.bandwidth_mhz)]

    def channel_config(self, uplink_power_dbm: float = 23.0) -> ChannelConfig:
        """The clock's channel: the emulator's defaults (0.175 km, 23/30 dBm, -174 dBm/Hz) and the same rates."""
        return ChannelConfig(uplink_bandwidth_hz=(self.bandwidth_mhz or 1.0) * MHZ, uplink_power_dbm=uplink_power_dbm,
                             fading=self.fading if self.uplink_bps is None else "none",
                             uplink_bps=self.uplink_bps, downlink_bps=self.downlink_bps, delay_s=self.delay_s)

    def to_dict(self) -> dict:
        return asdict(self)


LINK_PRESETS: dict[str, LinkPreset] = {p.name: p for p in (
    LinkPreset("paper", "the paper's channel: 1 MHz, Rayleigh fading, 0.175 km, 5 ms one way", bandwidth_mhz=1.0,
               delay_s=0.005),
    LinkPreset("5mhz", "a 5 MHz channel (Rayleigh fading) with a 20 ms round trip", bandwidth_mhz=5.0, delay_s=0.010),
    LinkPreset("lte", "LTE-like: 10 Mbit/s each way, 50 ms round trip", uplink_bps=10e6, downlink_bps=10e6,
               delay_s=0.025, fading="none"),
    LinkPreset("wifi", "Wi-Fi-like: 50 Mbit/s each way, 5 ms round trip", uplink_bps=50e6, downlink_bps=50e6,
               delay_s=0.0025, fading="none"),
)}


def link_preset(name: str | None, *, uplink_mbps: float | None = None, downlink_mbps: float | None = None,
                rtt_ms: float | None = None, bandwidth_mhz: float | None = None) -> LinkPreset:
    """A named preset, with any explicit parameter replacing the preset's (no name: explicit parameters only)."""
    if name is not None and name not in LINK_PRESETS:
        raise ValueError(f"unknown link preset {name!r}; choose one of {', '.join(LINK_PRESETS)}")
    base = LINK_PRESETS[name] if name else None
    if base is None and bandwidth_mhz is None and uplink_mbps is None:
        raise ValueError("give --preset or explicit link parameters (--uplink-mbps/--downlink-mbps or --bandwidth-mhz)")
    fields = base.to_dict() if base else {"name": "custom", "description": "explicit parameters", "fading": "rayleigh"}
    if uplink_mbps is not None or downlink_mbps is not None:
        up = uplink_mbps if uplink_mbps is not None else downlink_mbps
        down = downlink_mbps if downlink_mbps is not None else up
        fields.update(uplink_bps=up * 1e6, downlink_bps=down * 1e6, bandwidth_mhz=None, fading="none")
    if bandwidth_mhz is not None:
        fields.update(bandwidth_mhz=bandwidth_mhz, uplink_bps=None, downlink_bps=None, fading="rayleigh")
    if rtt_ms is not None:
        fields["delay_s"] = rtt_ms / 2e3
    changed = base is None or fields != base.to_dict()
    if changed:
        fields["name"] = f"{fields['name']}+explicit" if base else "custom"
        fields["description"] = "explicit parameters" + (f" over {base.name}" if base else "")
    return LinkPreset(**fields)


# ----------------------------------------------------------------------------------------- power profiles

@dataclass(frozen=True)
class PowerProfile:
    """Device power in each state, watts: drafting (CPU busy), transmitting, receiving, idle (waiting).

    Measured device energy = compute_w * device CPU-seconds + transmit_w * uplink airtime + receive_w *
    downlink airtime + idle_w * the rest of the wall time. The CPU-seconds and airtimes are measured (the
    device process's CPU time, the link's airtime); the watts come from the named source."""

    name: str
    compute_w: float
    transmit_w: float
    receive_w: float
    idle_w: float
    source: str

    def device_power(self) -> DevicePower:
        return DevicePower(compute_w=self.compute_w, transmit_w=self.transmit_w, receive_w=self.receive_w,
                           idle_w=self.idle_w)

    def to_dict(self) -> dict:
        return asdict(self)


def _from_device(preset: DevicePreset) -> PowerProfile:
    return PowerProfile(preset.name, preset.compute_w, dbm_to_w(preset.tx_power_dbm), preset.receive_w, preset.idle_w,
                        preset.source)


POWER_PROFILES: dict[str, PowerProfile] = {p.name: p for p in (
    _from_device(SNAPDRAGON_8_GEN_3), _from_device(JETSON_ORIN_NANO_8GB), _from_device(PAPER_DEVICE))}
DEFAULT_POWER_PROFILE = SNAPDRAGON_8_GEN_3.name


def power_profile(name: str) -> PowerProfile:
    if name not in POWER_PROFILES:
        raise ValueError(f"unknown power profile {name!r}; choose one of {', '.join(POWER_PROFILES)}")
    return POWER_PROFILES[name]


def rapl_available() -> bool:
    """Whether the machine exposes Intel RAPL energy counters (the testbed reports it; none here)."""
    from pathlib import Path

    return any(Path("/sys/class/powercap").glob("intel-rapl:*/energy_uj"))
