"""One experiment configuration (YAML or flags): source, pair, workload, policy, system model, rounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gelato.constants import E_BAR_J
from gelato.decoding.payload_modes import DEFAULT_PAYLOAD, PayloadMode
from gelato.policies.registry import policy_spec
from gelato.system.config import SystemConfig
from gelato.system.units import MHZ
from gelato.wire.payload import FRAMING_BYTES

SourceKind = Literal["synthetic", "trace", "live"]


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "run"
    source: SourceKind = "trace"
    trace: Path | None = Field(None, description="trace file (.npz) for source=trace")
    draft: Path | None = Field(None, description="draft dir for source=live (default: built-in pair)")
    target: Path | None = None
    pair: str = Field("gsm8k", description="built-in pair name (prompt format)")
    workload: Literal["gsm8k", "spec-bench", "humaneval"] = "gsm8k"
    data_dir: Path | None = None
    prompts: int = Field(8, ge=1)
    max_new_tokens: int = Field(256, ge=1, description="tokens per answer (context reset after)")
    temperature: float = Field(0.0, ge=0)
    top_k: int = Field(0, ge=0)
    sampling_top_p: float = Field(1.0, gt=0, le=1)
    policy: str = "static-7"
    policy_args: dict[str, Any] = Field(default_factory=dict)
    rounds: int = Field(1000, ge=1)
    seed: int = 0
    system: Literal["paper", "generic"] = "paper"
    bandwidth_mhz: float = Field(1.0, gt=0)
    t_verify_ms: float = Field(100.0, ge=0, description="constant verification time (paper system)")
    payload: PayloadMode | None = Field(None, description="default: the policy's own, else paper_topp (paper) "
                                                          "or compact (generic)")
    payload_top_p: float = Field(0.99995, gt=0, le=1)
    framing: Literal["none", "grpc"] = Field("none", description="also charge each message's framing on the "
                                             "link: grpc = the bytes measured on a gelato stream (40 per message)")
    e_bar: float = Field(E_BAR_J, gt=0, description="device energy budget per round, J")
    dssd_target_support: int | None = Field(None, ge=1, description="DSSD: entries of the target distribution "
                                            "sent down at a rejection (default: the whole vocabulary, dense)")
    out: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> "RunConfig":
        if self.source == "trace" and self.trace is None:
            raise ValueError("source=trace needs a trace file (record one with `gelato trace record`)")
        if (self.draft is None) != (self.target is None):
            raise ValueError("give both draft and target, or neither (the built-in pair)")
        return self

    @staticmethod
    def from_yaml(path: str | Path, **overrides: Any) -> "RunConfig":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"config file not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a mapping of settings, got {type(data).__name__}")
        return RunConfig(**{**data, **{k: v for k, v in overrides.items() if v is not None}})

    def payload_mode(self) -> PayloadMode:
        """The run's payload: as set, else the policy's own (its registry entry), else the system's default."""
        if self.payload is not None:
            return self.payload
        implied = policy_spec(self.policy).payload_mode
        if implied is not None:
            return PayloadMode(implied)
        return PayloadMode.PAPER_TOPP if self.system == "paper" else DEFAULT_PAYLOAD

    def system_config(self) -> SystemConfig:
        base = self._system_config()
        bits = 8 * FRAMING_BYTES[self.framing]
        return base.model_copy(update={"payload": base.payload.model_copy(
            update={"header_bits_up": bits, "header_bits_down": bits})})

    def _system_config(self) -> SystemConfig:
        mode = self.payload_mode()
        greedy = self.temperature == 0
        if self.system == "paper":
            base = SystemConfig.paper(self.bandwidth_mhz, self.t_verify_ms / 1000, mode, self.payload_top_p, greedy)
            if mode is PayloadMode.DSSD:  # the paper's vocabulary (Qwen2.5, 151,936 ids) unless told otherwise
                base = base.model_copy(update={"payload": base.payload.model_copy(
                    update={"dssd_target_support": self.dssd_target_support or 151_936, "vocab_size": 151_936})})
            return base
        base = SystemConfig.generic(self.bandwidth_mhz)
        payload = base.payload.model_copy(update={"mode": mode, "greedy": greedy, "top_p": self.payload_top_p,
                                                  "dssd_target_support": self.dssd_target_support or 151_936,
                                                  "vocab_size": 151_936})
        return base.model_copy(update={"payload": payload,
                                       "channel": base.channel.model_copy(
                                           update={"uplink_bandwidth_hz": self.bandwidth_mhz * MHZ})})
