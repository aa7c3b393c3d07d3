"""The wireless link between device and edge: path loss, Rayleigh fading, Shannon rates, or a trace.

Per round ``k`` the channel power gain is ``h_k = PL * f_k`` with ``PL = 10^(-L_dB/10)`` the path
loss at the configured distance and ``f_k ~ Exp(1)`` the small-scale Rayleigh power fading, drawn
independently per round from a seeded numpy ``Generator``. The uplink rate is Shannon's

    r_up = B_up log2(1 + P_U h_k / (N0 B_up F))

(``F`` the receiver noise figure, 1 = 0 dB in the paper), and the downlink rate uses the edge's own
bandwidth and transmit power with the same ``h_k`` (reciprocal channel within a round). A CSV trace of
per-round rates or SNRs can replace the model (``trace_path``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gelato.system.units import db_to_linear, dbm_to_w, linear_to_db

_STRICT = ConfigDict(extra="forbid", frozen=True)


class PathLoss(BaseModel):
    """Log-distance path loss ``L_dB = intercept_db + slope_db * log10(d / 1 km)``.

    The defaults are the 3GPP urban macro model used by the paper (128.1 + 37.6 log10 d[km]).
    """

    model_config = _STRICT
    intercept_db: float = 128.1
    slope_db: float = Field(37.6, ge=0)
    distance_km: float = Field(0.1, gt=0)

    def loss_db(self) -> float:
        return self.intercept_db + self.slope_db * math.log10(self.distance_km)

    def gain(self) -> float:
        """Linear large-scale power gain ``10^(-L_dB/10)`` (the mean of ``h_k`` under Rayleigh fading)."""
        return db_to_linear(-self.loss_db())


class ChannelConfig(BaseModel):
    """Uplink (device -> edge) and downlink (edge -> device) radio settings.

    ``downlink_bandwidth_hz = None`` means the same bandwidth as the uplink. ``trace_path`` replaces the
    fading model by a CSV of per-round values (see :class:`TraceChannel`).
    """

    model_config = _STRICT
    uplink_bandwidth_hz: float = Field(1e6, gt=0)
    uplink_power_dbm: float = Field(23.0, ge=-50, le=60)
    downlink_bandwidth_hz: float | None = Field(None, gt=0)
    downlink_power_dbm: float = Field(30.0, ge=-50, le=70)
    noise_dbm_per_hz: float = Field(-174.0, ge=-230, le=-100)
    noise_figure_db: float = Field(0.0, ge=0, le=30)
    path_loss: PathLoss = PathLoss()
    fading: Literal["rayleigh", "none"] = "rayleigh"
    trace_path: Path | None = None
    trace_wrap: bool = True  # restart the trace at its end (else: error when it runs out)
    # Fixed rates (a wired-like or measured link, e.g. the testbed's LTE and Wi-Fi presets) replace the
    # Shannon rate of that direction; ``delay_s`` is the one-way propagation delay, added twice to each
    # round's time by the modelled clock (it costs no device energy).
    uplink_bps: float | None = Field(None, gt=0)
    downlink_bps: float | None = Field(None, gt=0)
    delay_s: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _trace_exists(self) -> "ChannelConfig":
        if self.trace_path is not None and not Path(self.trace_path).is_file():
            raise ValueError(f"channel trace file not found: {self.trace_path}")
        return self

    @property
    def dl_bandwidth_hz(self) -> float:
        return self.downlink_bandwidth_hz if self.downlink_bandwidth_hz is not None else self.uplink_bandwidth_hz

    @property
    def uplink_power_w(self) -> float:
        return dbm_to_w(self.uplink_power_dbm)

    @property
    def downlink_power_w(self) -> float:
        return dbm_to_w(self.downlink_power_dbm)

    def noise_w(self, bandwidth_hz: float) -> float:
        """Receiver noise power ``N0 * B * F`` in watts."""
        return dbm_to_w(self.noise_dbm_per_hz) * bandwidth_hz * db_to_linear(self.noise_figure_db)


@dataclass(frozen=True)
class ChannelState:
    """The link in one round: what ``ModelledClock.begin_round`` hands the policy (``ctx.link``)."""

    index: int  # round counter of the channel (draw number)
    fading: float  # small-scale power fading f_k (mean 1 under Rayleigh)
    gain: float  # total channel power gain h_k = path-loss gain * fading
    snr_db: float  # uplink SNR P_U h_k / (N0 B_up F), in dB
    uplink_bps: float
    downlink_bps: float
    downlink_snr_db: float

    def to_dict(self) -> dict:
        return asdict(self)


def shannon_rate(bandwidth_hz: float, snr_linear: float) -> float:
    """``B log2(1 + SNR)`` in bit/s."""
    if bandwidth_hz <= 0:
        raise ValueError(f"bandwidth must be > 0 Hz, got {bandwidth_hz}")
    if snr_linear < 0:
        raise ValueError(f"SNR must be >= 0 (linear), got {snr_linear}")
    return bandwidth_hz * math.log2(1.0 + snr_linear)


def _safe_db(x: float) -> float:
    return linear_to_db(x) if x > 0 else -math.inf


class Channel(Protocol):
    """Anything that yields one :class:`ChannelState` per round."""

    config: ChannelConfig

    def next_state(self) -> ChannelState: ...

    def mean_state(self) -> ChannelState: ...

    def state_for_gain(self, gain: float, index: int = 0) -> ChannelState: ...

    def reset(self, seed: int | None = None) -> None: ...


class _GainToState:
    config: ChannelConfig

    def state_for_gain(self, gain: float, index: int = 0) -> ChannelState:
        """The link for a given total power gain ``h`` (uplink and downlink share it)."""
        if gain < 0 or not math.isfinite(gain):
            raise ValueError(f"channel gain must be finite and >= 0, got {gain}")
        cfg = self.config
        snr_up = cfg.uplink_power_w * gain / cfg.noise_w(cfg.uplink_bandwidth_hz)
        snr_dn = cfg.downlink_power_w * gain / cfg.noise_w(cfg.dl_bandwidth_hz)
        return ChannelState(index=index, fading=gain / cfg.path_loss.gain(), gain=gain, snr_db=_safe_db(snr_up),
                            uplink_bps=cfg.uplink_bps or shannon_rate(cfg.uplink_bandwidth_hz, snr_up),
                            downlink_bps=cfg.downlink_bps or shannon_rate(cfg.dl_bandwidth_hz, snr_dn),
                            downlink_snr_db=_safe_db(snr_dn))


class WirelessChannel(_GainToState):
    """Path loss times i.i.d. Rayleigh power fading (``Exp(1)``) per round; seeded, reproducible."""

    def __init__(self, config: ChannelConfig | None = None, seed: int | None = 0) -> None:
        self.config = config or ChannelConfig()
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        self._seed = seed if seed is not None else getattr(self, "_seed", 0)
        self.rng = np.random.default_rng(self._seed)
        self._count = 0

    def draw_fading(self) -> float:
        if self.config.fading == "none":
            return 1.0
        return float(self.rng.exponential(1.0))

    def state_for(self, fading: float, index: int = 0) -> ChannelState:
        """The link for a given small-scale fading value (1.0 = the mean gain)."""
        if fading < 0 or not math.isfinite(fading):
            raise ValueError(f"fading power must be finite and >= 0, got {fading}")
        return self.state_for_gain(self.config.path_loss.gain() * fading, index)

    def mean_state(self) -> ChannelState:
        return self.state_for(1.0, index=-1)

    def next_state(self) -> ChannelState:
        state = self.state_for(self.draw_fading(), index=self._count)
        self._count += 1
        return state


class TraceChannel(_GainToState):
    """Per-round link values read from a CSV file with a header row, one row per round.

    Recognised columns (at least one uplink column is required):
      ``uplink_bps`` (uplink rate, bit/s) or ``snr_db`` (uplink SNR, dB);
      optional ``downlink_bps`` or ``downlink_snr_db``. Without them the downlink is derived from the
      implied channel gain with the configured downlink bandwidth and power.
    """

    def __init__(self, path: str | Path, config: ChannelConfig | None = None, wrap: bool | None = None) -> None:
        self.config = config or ChannelConfig()
        self.path = Path(path)
        self.wrap = self.config.trace_wrap if wrap is None else wrap
        self.states = self._load()
        self._count = 0

    def _load(self) -> list[ChannelState]:
        if not self.path.is_file():
            raise FileNotFoundError(f"channel trace file not found: {self.path}")
        with self.path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            fields = set(reader.fieldnames or [])
            if not fields & {"uplink_bps", "snr_db"}:
                raise ValueError(f"channel trace {self.path} needs a 'uplink_bps' or 'snr_db' column; "
                                 f"found columns {sorted(fields)}")
            cfg = self.config
            states = []
            for i, row in enumerate(reader):
                try:
                    values = {k: float(v) for k, v in row.items() if k and v not in (None, "")}
                except ValueError as exc:
                    raise ValueError(f"channel trace {self.path} row {i + 2}: {exc}") from None
                if "uplink_bps" in values:
                    rate = values["uplink_bps"]
                    if rate < 0:
                        raise ValueError(f"channel trace {self.path} row {i + 2}: negative uplink_bps {rate}")
                    snr_up = 2.0 ** (rate / cfg.uplink_bandwidth_hz) - 1.0
                elif "snr_db" in values:
                    snr_up = db_to_linear(values["snr_db"])
                else:
                    raise ValueError(f"channel trace {self.path} row {i + 2} has no uplink value")
                gain = snr_up * cfg.noise_w(cfg.uplink_bandwidth_hz) / cfg.uplink_power_w
                state = self.state_for_gain(gain, index=i)
                if "uplink_bps" in values:
                    state = _replace(state, uplink_bps=values["uplink_bps"])
                if "downlink_bps" in values:
                    r = values["downlink_bps"]
                    state = _replace(state, downlink_bps=r,
                                     downlink_snr_db=_safe_db(2.0 ** (r / cfg.dl_bandwidth_hz) - 1.0))
                elif "downlink_snr_db" in values:
                    s = values["downlink_snr_db"]
                    state = _replace(state, downlink_snr_db=s,
                                     downlink_bps=shannon_rate(cfg.dl_bandwidth_hz, db_to_linear(s)))
                states.append(state)
        if not states:
            raise ValueError(f"channel trace {self.path} has no rows")
        return states

    def reset(self, seed: int | None = None) -> None:
        self._count = 0

    def mean_state(self) -> ChannelState:
        return self.state_for_gain(float(np.mean([s.gain for s in self.states])), index=-1)

    def next_state(self) -> ChannelState:
        i = self._count
        if i >= len(self.states) and not self.wrap:
            raise IndexError(f"channel trace {self.path} has only {len(self.states)} rounds")
        base = self.states[i % len(self.states)]
        self._count += 1
        return _replace(base, index=i)


def _replace(state: ChannelState, **changes) -> ChannelState:
    return ChannelState(**{**asdict(state), **changes})


def make_channel(config: ChannelConfig | None = None, seed: int | None = 0) -> WirelessChannel | TraceChannel:
    """The fading model, or the trace when ``config.trace_path`` is set."""
    config = config or ChannelConfig()
    if config.trace_path is not None:
        return TraceChannel(config.trace_path, config)
    return WirelessChannel(config, seed)
