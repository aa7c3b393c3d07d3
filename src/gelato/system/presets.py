"""Device and edge presets with their sources, and the paper-mode constants (docs/design-decisions.md: "The round and the system model", "Paper-mode constants").

Effective FLOP/s of real devices. Batch-1 decoding is memory-bandwidth bound: every weight is read
once per forward, and each weight does 2 FLOPs (a multiply-add) per token. A device with memory
bandwidth ``BW`` bytes/s running ``bytes_per_param``-byte weights therefore sustains at most
``2 * BW / bytes_per_param`` FLOP/s on decode, far below its peak. The presets use that bound with
fp16/bf16 weights (2 bytes), i.e. ``flops_per_s = BW``, and keep the peak figure for reference. The
paper's 40 GFLOP/s device is of the same order (Qwen2.5-0.5B: ~0.58 GFLOP per token at L = 100).
"""

from __future__ import annotations

from dataclasses import dataclass

from gelato.system.compute import QWEN25_0_5B, QWEN25_7B, ModelDims
from gelato.system.units import GFLOPS, TFLOPS, dbm_to_w

RECEIVE_W_19DBM = dbm_to_w(19.0)  # the paper's DSSD device receive power, ~0.079 W


def decode_flops_from_bandwidth(memory_bw_bytes_per_s: float, bytes_per_param: float = 2.0) -> float:
    """Bandwidth-bound decode throughput ``2 * BW / bytes_per_param`` FLOP/s."""
    if memory_bw_bytes_per_s <= 0 or bytes_per_param <= 0:
        raise ValueError("memory bandwidth and bytes per parameter must be > 0")
    return 2.0 * memory_bw_bytes_per_s / bytes_per_param


@dataclass(frozen=True)
class DevicePreset:
    """A battery-powered device: effective FLOP/s for the FLOPs model, power draws, radio power."""

    name: str
    flops_per_s: float  # effective FLOP/s used by FlopsCompute
    compute_w: float  # power while drafting
    tx_power_dbm: float = 23.0  # radiated uplink power
    receive_w: float = 0.0
    idle_w: float = 0.0
    peak_flops_per_s: float | None = None  # for reference only
    memory_bw_bytes_per_s: float | None = None
    source: str = ""


@dataclass(frozen=True)
class EdgePreset:
    """A grid-powered edge server: power while verifying, radiated downlink power, roofline figures."""

    name: str
    verify_w: float
    tx_power_dbm: float = 30.0
    peak_flops_per_s: float | None = None  # dense FP16/BF16 tensor throughput
    memory_bw_bytes_per_s: float | None = None
    source: str = ""


# --- the paper ----------------------------------------------------------------------------------------

PAPER_DEVICE = DevicePreset(
    name="paper-table-1", flops_per_s=40 * GFLOPS, compute_w=12.0, tx_power_dbm=23.0,
    source="GELATO, arXiv 2605.10124, Table I: f_D = 40 GFLOP/s, P_D = 12 W, P_U = 23 dBm")

# --- real edge devices (published figures; effective FLOP/s = bandwidth bound with fp16 weights) -------

JETSON_ORIN_NANO_8GB = DevicePreset(
    name="jetson-orin-nano-8gb-15w", flops_per_s=decode_flops_from_bandwidth(68e9), compute_w=15.0,
    receive_w=RECEIVE_W_19DBM, idle_w=2.2, peak_flops_per_s=1024 * 2 * 0.625e9, memory_bw_bytes_per_s=68e9,
    source="NVIDIA Jetson Orin Nano series datasheet: 1024 CUDA cores at 625 MHz (1.28 TFLOPS FP32), "
           "40 INT8 TOPS (sparse), 8 GB 128-bit LPDDR5 68 GB/s, 7 W / 15 W power modes (15 W used). Idle 2.2 W: "
           "module input power (VDD_IN) at near-zero load reported on the NVIDIA developer forum (thread "
           "'Jetson Orin Nano 8GB - lowest theoretical operating power consumption'); receive power = the "
           "paper's 19 dBm")

JETSON_ORIN_NANO_SUPER = DevicePreset(
    name="jetson-orin-nano-super-25w", flops_per_s=decode_flops_from_bandwidth(102e9), compute_w=25.0,
    receive_w=RECEIVE_W_19DBM, idle_w=2.2, peak_flops_per_s=1024 * 2 * 1.02e9, memory_bw_bytes_per_s=102e9,
    source="NVIDIA Jetson Orin Nano Super Developer Kit (JetPack 6.1+, Dec 2024): GPU 1.02 GHz, 67 INT8 TOPS "
           "(sparse), LPDDR5 102 GB/s, MAXN 25 W mode; idle and receive power as the 15 W Orin Nano preset")

JETSON_ORIN_NX_16GB = DevicePreset(
    name="jetson-orin-nx-16gb-25w", flops_per_s=decode_flops_from_bandwidth(102.4e9), compute_w=25.0,
    receive_w=RECEIVE_W_19DBM, idle_w=2.2, peak_flops_per_s=1024 * 2 * 0.918e9, memory_bw_bytes_per_s=102.4e9,
    source="NVIDIA Jetson Orin NX series datasheet: 1024 CUDA cores at 918 MHz (1.88 TFLOPS FP32), up to 100 "
           "INT8 TOPS (sparse), 16 GB 128-bit LPDDR5 102.4 GB/s, power configurable 10 W - 25 W (25 W used); "
           "idle 2.2 W ASSUMED equal to the Orin Nano's, receive power = the paper's 19 dBm")

SNAPDRAGON_8_GEN_3 = DevicePreset(
    name="snapdragon-8-gen-3-phone", flops_per_s=decode_flops_from_bandwidth(76.8e9), compute_w=5.0,
    tx_power_dbm=23.0, receive_w=RECEIVE_W_19DBM, idle_w=0.5, memory_bw_bytes_per_s=76.8e9,
    source="Qualcomm Snapdragon 8 Gen 3 product brief: LPDDR5X up to 4800 MHz (64-bit: 76.8 GB/s), on-device "
           "LLMs 'up to 20 tokens/s'; uplink 23 dBm = 3GPP power class 3 UE (TS 38.101-1). The 5 W compute "
           "power and 0.5 W idle power are ASSUMPTIONS (typical sustained phone SoC envelope), not published")

DEVICE_PRESETS: dict[str, DevicePreset] = {p.name: p for p in (
    PAPER_DEVICE, JETSON_ORIN_NANO_8GB, JETSON_ORIN_NANO_SUPER, JETSON_ORIN_NX_16GB, SNAPDRAGON_8_GEN_3)}

# --- edge servers (never charged to the device) ------------------------------------------------------

EDGE_L4 = EdgePreset(name="nvidia-l4", verify_w=72.0, tx_power_dbm=30.0, peak_flops_per_s=121 * TFLOPS,
                     memory_bw_bytes_per_s=300e9,
                     source="NVIDIA L4 datasheet: 72 W max board power, FP16 tensor 242 TFLOPS with sparsity "
                            "(121 dense), 300 GB/s GDDR6. Downlink 30 dBm is an ASSUMPTION (between 3GPP TS "
                            "38.104 local-area <= 24 dBm and medium-range <= 38 dBm base stations)")
EDGE_H100 = EdgePreset(name="nvidia-h100-sxm", verify_w=700.0, tx_power_dbm=30.0, peak_flops_per_s=989 * TFLOPS,
                       memory_bw_bytes_per_s=3.35e12,
                       source="NVIDIA H100 SXM datasheet: up to 700 W TDP, FP16 tensor 1979 TFLOPS with sparsity "
                              "(989 dense), 3.35 TB/s HBM3; downlink power as EDGE_L4")
EDGE_PRESETS: dict[str, EdgePreset] = {p.name: p for p in (EDGE_L4, EDGE_H100)}


def device_preset(name: str) -> DevicePreset:
    try:
        return DEVICE_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown device preset {name!r}; choose one of {sorted(DEVICE_PRESETS)}") from None


def edge_preset(name: str) -> EdgePreset:
    try:
        return EDGE_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown edge preset {name!r}; choose one of {sorted(EDGE_PRESETS)}") from None


# --- paper-mode constants ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperConstants:
    """Table I of the paper and the values docs/design-decisions.md ("Paper-mode constants") fixes where it is silent."""

    # Table I
    noise_dbm_per_hz: float = -174.0
    flops_per_s: float = 40 * GFLOPS
    compute_w: float = 12.0
    uplink_power_dbm: float = 23.0
    # E_bar, g_max, rho0, c, the bucket factor and V: gelato/constants.py
    bandwidths_mhz: tuple[float, ...] = (1, 2, 4, 7, 10)  # bandwidth sweep, at t_verify_s
    t_verify_s: float = 0.100
    t_verify_sweep_s: tuple[float, ...] = (0.060, 0.080, 0.100, 0.120, 0.140)  # at sweep_bandwidth_mhz
    sweep_bandwidth_mhz: float = 5.0
    v_values: tuple[float, ...] = (10, 100)
    static_g: tuple[int, ...] = (5, 7, 9)
    top_p: tuple[float, ...] = (0.99995, 0.99998)
    dssd_g: int = 7
    dssd_receive_dbm: float = 19.0
    rounds: int = 1000
    draft_dims: ModelDims = QWEN25_0_5B
    target_dims: ModelDims = QWEN25_7B
    # where the paper is silent: docs/design-decisions.md, "Paper-mode constants"
    path_loss_intercept_db: float = 128.1
    path_loss_slope_db: float = 37.6
    distance_km: float = 0.175
    b_prob: int = 32
    b_index: int = 18  # ceil(log2 151,936) for the Qwen2.5 vocabulary
    prompt_context: int = 100
    reset_every: int = 256
    support_mean: float = 5000.0  # |S| at p = 0.99995, lognormal mean (synthetic regime)
    support_sigma: float = 1.5
    support_entropy_corr: float = 0.4  # correlation of log |S| with log entropy
    support_ratio_99998: float = 2.5  # |S| at p = 0.99998 / |S| at p = 0.99995
    entropy_sigma: float = 0.25  # per-token entropy lognormal sigma
    seeds: int = 5


PAPER = PaperConstants()
GENERIC_DISTANCE_KM = 0.1


def paper_context_len(generated: int, prompt_context: int = PAPER.prompt_context,
                      reset_every: int = PAPER.reset_every) -> int:
    """Draft context length in the paper's synthetic regime: the prompt plus tokens since the last reset."""
    if generated < 0:
        raise ValueError(f"generated tokens must be >= 0, got {generated}")
    return prompt_context + generated % reset_every


__all__ = ["DevicePreset", "EdgePreset", "PaperConstants", "PAPER", "PAPER_DEVICE", "JETSON_ORIN_NANO_8GB",
           "JETSON_ORIN_NANO_SUPER", "JETSON_ORIN_NX_16GB", "SNAPDRAGON_8_GEN_3", "EDGE_L4", "EDGE_H100",
           "DEVICE_PRESETS", "EDGE_PRESETS", "RECEIVE_W_19DBM", "device_preset", "edge_preset",
           "decode_flops_from_bandwidth",
           "paper_context_len", "GENERIC_DISTANCE_KM", "TFLOPS", "GFLOPS"]
