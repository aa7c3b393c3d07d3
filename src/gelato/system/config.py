"""One serialisable description of the whole system model (for YAML/JSON experiment configs).

``SystemConfig(...).build_clock(seed)`` gives a :class:`ModelledClock`. ``SystemConfig.paper()`` and
``SystemConfig.generic()`` are THE system presets: every paper-mode or generic clock is built from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gelato.system.channel import ChannelConfig, PathLoss
from gelato.system.compute import (
    QWEN25_0_5B,
    QWEN25_7B,
    QWEN25_7B_PARAMS,
    ComputeModel,
    ConstantCompute,
    FlopsCompute,
    MeasuredProfile,
    ModelDims,
    RooflineCompute,
)
from gelato.system.energy import DevicePower, EdgePower
from gelato.system.presets import EDGE_L4, GENERIC_DISTANCE_KM, JETSON_ORIN_NANO_8GB, PAPER, DevicePreset, EdgePreset
from gelato.system.units import MHZ, dbm_to_w
from gelato.wire.payload import PayloadConfig, PayloadMode

_STRICT = ConfigDict(extra="forbid", frozen=True)


class ComputeSpec(BaseModel):
    """Which compute model, with its parameters.

    ``flops``: ``dims`` (or ``hf_config``, a config.json / model directory) and ``flops_per_s``;
    ``constant``: ``seconds``; ``profile``: ``profile_path`` (JSON from ``calibrate_profile``) times
    ``scale``; ``roofline``: ``dims``, ``peak_flops_per_s``, ``memory_bw_bytes_per_s``, ``weight_bytes``.
    """

    model_config = _STRICT
    kind: Literal["flops", "constant", "profile", "roofline"]
    dims: tuple[int, int, int] | None = None  # (n_layers, d_model, d_ff)
    hf_config: Path | None = None
    flops_per_s: float | None = Field(None, gt=0)
    seconds: float | None = Field(None, ge=0)
    profile_path: Path | None = None
    scale: float = Field(1.0, gt=0)
    peak_flops_per_s: float | None = Field(None, gt=0)
    memory_bw_bytes_per_s: float | None = Field(None, gt=0)
    weight_bytes: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> "ComputeSpec":
        need = {"flops": ("flops_per_s",), "constant": ("seconds",), "profile": ("profile_path",),
                "roofline": ("peak_flops_per_s", "memory_bw_bytes_per_s", "weight_bytes")}[self.kind]
        missing = [k for k in need if getattr(self, k) is None]
        if self.kind in ("flops", "roofline") and self.dims is None and self.hf_config is None:
            missing.append("dims or hf_config")
        if missing:
            raise ValueError(f"compute model {self.kind!r} needs {', '.join(missing)}")
        return self

    def model_dims(self) -> ModelDims:
        return ModelDims(*self.dims) if self.dims is not None else ModelDims.from_config(self.hf_config)

    def build(self) -> ComputeModel:
        if self.kind == "flops":
            return FlopsCompute(self.model_dims(), self.flops_per_s)
        if self.kind == "constant":
            return ConstantCompute(self.seconds)
        if self.kind == "profile":
            return MeasuredProfile.load(self.profile_path).scaled(self.scale)
        return RooflineCompute(self.model_dims(), self.peak_flops_per_s, self.memory_bw_bytes_per_s,
                               self.weight_bytes)


def _dims(d: ModelDims) -> tuple[int, int, int]:
    return (d.n_layers, d.d_model, d.d_ff)


class SystemConfig(BaseModel):
    model_config = _STRICT
    name: str = "custom"
    channel: ChannelConfig = ChannelConfig()
    draft: ComputeSpec = ComputeSpec(kind="flops", dims=_dims(QWEN25_0_5B), flops_per_s=PAPER.flops_per_s)
    verify: ComputeSpec = ComputeSpec(kind="constant", seconds=PAPER.t_verify_s)
    device_power: DevicePower = DevicePower()
    edge_power: EdgePower = EdgePower()
    payload: PayloadConfig = PayloadConfig()
    accounting: Literal["paper", "sequential"] = "sequential"
    count_downlink_time: bool = True

    def build_clock(self, seed: int = 0):
        from gelato.system.clock import ModelledClock

        return ModelledClock(channel=self.channel, draft_compute=self.draft.build(), verify_compute=self.verify.build(),
                             device_power=self.device_power, edge_power=self.edge_power, payload=self.payload,
                             seed=seed, accounting=self.accounting, count_downlink_time=self.count_downlink_time,
                             name=self.name)

    @classmethod
    def paper(cls, bandwidth_mhz: float = 1.0, t_verify_s: float = PAPER.t_verify_s,
              payload_mode: PayloadMode | str = PayloadMode.PAPER_TOPP, top_p: float = PAPER.top_p[0],
              greedy: bool = True, distance_km: float = PAPER.distance_km, header_bits: int = 0,
              dssd_target_support: int | None = None) -> "SystemConfig":
        """The paper's system: Table I and the paper-mode constants (docs/design-decisions.md): 23 dBm uplink,
        -174 dBm/Hz, 0.175 km, Rayleigh fading; Qwen2.5-0.5B FLOPs at 40 GFLOP/s and 12 W; constant T_V; top-p
        payload with b_index 18 and b_prob 32; only draft and uplink energy charged (plus 19 dBm receive power
        where the payload has the device listen: DSSD, edge-only)."""
        mode = PayloadMode(payload_mode)
        return cls(
            name="paper",
            channel=ChannelConfig(uplink_bandwidth_hz=bandwidth_mhz * MHZ, uplink_power_dbm=PAPER.uplink_power_dbm,
                                  noise_dbm_per_hz=PAPER.noise_dbm_per_hz, fading="rayleigh",
                                  path_loss=PathLoss(intercept_db=PAPER.path_loss_intercept_db,
                                                     slope_db=PAPER.path_loss_slope_db, distance_km=distance_km)),
            draft=ComputeSpec(kind="flops", dims=_dims(PAPER.draft_dims), flops_per_s=PAPER.flops_per_s),
            verify=ComputeSpec(kind="constant", seconds=t_verify_s),
            device_power=DevicePower(compute_w=PAPER.compute_w, idle_w=0.0,
                                     receive_w=dbm_to_w(PAPER.dssd_receive_dbm) if mode.listens_downlink else 0.0),
            edge_power=EdgePower(verify_w=EDGE_L4.verify_w),
            payload=PayloadConfig(mode=mode, greedy=greedy, top_p=top_p, b_index=PAPER.b_index, b_prob=PAPER.b_prob,
                                  header_bits_up=header_bits, header_bits_down=header_bits,
                                  dssd_target_support=dssd_target_support),
            accounting="paper", count_downlink_time=True)

    @classmethod
    def generic(cls, bandwidth_mhz: float = 1.0, device: DevicePreset = JETSON_ORIN_NANO_8GB,
                edge: EdgePreset = EDGE_L4, distance_km: float = GENERIC_DISTANCE_KM,
                payload: PayloadConfig | None = None) -> "SystemConfig":
        """A generic real system: a device preset drafting with the FLOPs model at its effective FLOP/s, an edge
        GPU verifying on a roofline (bf16 Qwen2.5-7B weights), all four device energy terms, the compact
        payload unless given, the real proposer's accounting."""
        if edge.peak_flops_per_s is None or edge.memory_bw_bytes_per_s is None:
            raise ValueError(f"edge preset {edge.name} lacks roofline figures (peak FLOP/s, memory bandwidth)")
        return cls(
            name=f"{device.name}+{edge.name}",
            channel=ChannelConfig(uplink_bandwidth_hz=bandwidth_mhz * MHZ, uplink_power_dbm=device.tx_power_dbm,
                                  downlink_power_dbm=edge.tx_power_dbm, path_loss=PathLoss(distance_km=distance_km)),
            draft=ComputeSpec(kind="flops", dims=_dims(QWEN25_0_5B), flops_per_s=device.flops_per_s),
            verify=ComputeSpec(kind="roofline", dims=_dims(QWEN25_7B), peak_flops_per_s=edge.peak_flops_per_s,
                               memory_bw_bytes_per_s=edge.memory_bw_bytes_per_s, weight_bytes=2 * QWEN25_7B_PARAMS),
            device_power=DevicePower(compute_w=device.compute_w, receive_w=device.receive_w, idle_w=device.idle_w),
            edge_power=EdgePower(verify_w=edge.verify_w), payload=payload or PayloadConfig(), accounting="sequential",
            count_downlink_time=True)
