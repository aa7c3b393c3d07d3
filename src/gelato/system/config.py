"""One serialisable description of the whole system model (for YAML/JSON experiment configs).

``SystemConfig(...).build_clock(seed)`` gives a :class:`ModelledClock`; ``SystemConfig.paper()`` and
``SystemConfig.generic()`` match ``ModelledClock.paper_mode()`` and ``ModelledClock.default()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gelato.system.channel import ChannelConfig, PathLoss
from gelato.system.compute import (QWEN25_0_5B, QWEN25_7B, QWEN25_7B_PARAMS, ComputeModel, ConstantCompute,
                                   FlopsCompute, MeasuredProfile, ModelDims, RooflineCompute)
from gelato.system.energy import DevicePower, EdgePower
from gelato.system.presets import EDGE_L4, GENERIC_DISTANCE_KM, JETSON_ORIN_NANO_8GB, PAPER
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
              payload_mode: PayloadMode = "paper_topp", top_p: float = PAPER.top_p[0],
              greedy: bool = True) -> "SystemConfig":
        return cls(
            name="paper",
            channel=ChannelConfig(uplink_bandwidth_hz=bandwidth_mhz * MHZ, uplink_power_dbm=PAPER.uplink_power_dbm,
                                  noise_dbm_per_hz=PAPER.noise_dbm_per_hz,
                                  path_loss=PathLoss(intercept_db=PAPER.path_loss_intercept_db,
                                                     slope_db=PAPER.path_loss_slope_db,
                                                     distance_km=PAPER.distance_km)),
            draft=ComputeSpec(kind="flops", dims=_dims(PAPER.draft_dims), flops_per_s=PAPER.flops_per_s),
            verify=ComputeSpec(kind="constant", seconds=t_verify_s),
            device_power=DevicePower(compute_w=PAPER.compute_w, idle_w=0.0,
                                     receive_w=dbm_to_w(PAPER.dssd_receive_dbm) if payload_mode in ("dssd", "edge_ar") else 0.0),
            edge_power=EdgePower(verify_w=EDGE_L4.verify_w),
            payload=PayloadConfig(mode=payload_mode, greedy=greedy, top_p=top_p, b_index=PAPER.b_index,
                                  b_prob=PAPER.b_prob),
            accounting="paper")

    @classmethod
    def generic(cls, bandwidth_mhz: float = 1.0) -> "SystemConfig":
        dev, edge = JETSON_ORIN_NANO_8GB, EDGE_L4
        return cls(
            name=f"{dev.name}+{edge.name}",
            channel=ChannelConfig(uplink_bandwidth_hz=bandwidth_mhz * MHZ, uplink_power_dbm=dev.tx_power_dbm,
                                  downlink_power_dbm=edge.tx_power_dbm,
                                  path_loss=PathLoss(distance_km=GENERIC_DISTANCE_KM)),
            draft=ComputeSpec(kind="flops", dims=_dims(QWEN25_0_5B), flops_per_s=dev.flops_per_s),
            verify=ComputeSpec(kind="roofline", dims=_dims(QWEN25_7B), peak_flops_per_s=edge.peak_flops_per_s,
                               memory_bw_bytes_per_s=edge.memory_bw_bytes_per_s, weight_bytes=2 * QWEN25_7B_PARAMS),
            device_power=DevicePower(compute_w=dev.compute_w, receive_w=dev.receive_w, idle_w=dev.idle_w),
            edge_power=EdgePower(verify_w=edge.verify_w), payload=PayloadConfig(), accounting="sequential")
