"""The system model: wireless channel, compute cost, energy, device presets and the modelled clock.

The decisions behind it are in docs/design-decisions.md (the system model, where the paper is silent,
paper-mode constants, metrics); formulas and sources in docs/system-model.md.
"""

from gelato.system.channel import (
                                   ChannelConfig,
                                   ChannelState,
                                   PathLoss,
                                   TraceChannel,
                                   WirelessChannel,
                                   make_channel,
                                   shannon_rate,
)
from gelato.system.clock import CHARGE_KEYS, ModelledClock
from gelato.system.compute import (
                                   QWEN25_0_5B,
                                   QWEN25_7B,
                                   ComputeModel,
                                   ConstantCompute,
                                   FlopsCompute,
                                   MeasuredProfile,
                                   ModelDims,
                                   RooflineCompute,
                                   calibrate_profile,
                                   draft_seconds,
                                   forward_flops,
                                   next_pending,
                                   verify_seconds,
)
from gelato.system.config import ComputeSpec, SystemConfig
from gelato.system.energy import DeviceEnergy, DevicePower, EdgePower
from gelato.system.measured import MeasuredPlanner
from gelato.system.presets import PAPER, DevicePreset, EdgePreset, PaperConstants
from gelato.system.units import db_to_linear, dbm_to_w, linear_to_db, w_to_dbm

__all__ = ["ChannelConfig", "ChannelState", "PathLoss", "TraceChannel", "WirelessChannel", "make_channel",
           "shannon_rate", "CHARGE_KEYS", "ModelledClock", "QWEN25_0_5B", "QWEN25_7B", "ComputeModel",
           "ConstantCompute", "FlopsCompute", "MeasuredProfile", "ModelDims", "RooflineCompute", "calibrate_profile",
           "draft_seconds", "forward_flops", "next_pending", "verify_seconds", "ComputeSpec", "SystemConfig",
           "MeasuredPlanner",
           "DeviceEnergy", "DevicePower", "EdgePower", "PAPER", "DevicePreset", "EdgePreset", "PaperConstants",
           "db_to_linear", "dbm_to_w", "linear_to_db", "w_to_dbm"]
