"""``gelato system ...``: inspect the system model (costs, rates, presets) and calibrate compute profiles."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from gelato.constants import E_BAR_J, G_MAX
from gelato.system.channel import ChannelConfig, PathLoss, WirelessChannel
from gelato.system.compute import QWEN25_0_5B, FlopsCompute, forward_flops
from gelato.system.config import SystemConfig
from gelato.system.presets import DEVICE_PRESETS, EDGE_PRESETS, GENERIC_DISTANCE_KM, PAPER, device_preset
from gelato.system.units import MHZ, dbm_to_w
from gelato.wire.payload import PayloadConfig, PayloadMode, packed_nbytes, synthetic_topp_bits

app = typer.Typer(rich_markup_mode=None, help="The system model: channel, compute, energy, presets.",
                  no_args_is_help=True)
console = Console()


def _fmt(x: float, unit: str = "") -> str:
    if x == 0:
        return f"0 {unit}".strip()
    mag = abs(x)
    if mag >= 1e4 or mag < 1e-3:
        return f"{x:.4g} {unit}".strip()
    return f"{x:.4f} {unit}".strip()


@app.command()
def show(bandwidth_mhz: list[float] = typer.Option([1.0, 10.0], "--bandwidth-mhz", "-b",
                                                   help="uplink bandwidths to show (repeat the option)"),
         paper: bool = typer.Option(False, "--paper", help="the paper's Table I + the paper-mode constants "
                                   "(docs/design-decisions.md)"),
         context: int = typer.Option(PAPER.prompt_context, "--context", "-L", min=0,
                                     help="draft context length L_k (tokens)"),
         device: str = typer.Option(None, "--device", help=f"device preset (generic mode): {sorted(DEVICE_PRESETS)}"),
         distance_km: float = typer.Option(None, "--distance-km", min=1e-6, help="device-edge distance"),
         support: int = typer.Option(int(PAPER.support_mean), "--support", min=1,
                                     help="top-p support size |S| per token for the payload example"),
         g: int = typer.Option(7, "--gamma", "-g", min=1, help="draft length for the round example")) -> None:
    """Draft cost per token and uplink rates of the model, each beside its hand calculation."""
    if device is not None and device not in DEVICE_PRESETS:
        raise typer.BadParameter(f"unknown device preset {device!r}; choose one of {sorted(DEVICE_PRESETS)}",
                                 param_hint="--device")
    if paper:
        dev_name, flops_s, p_d, p_u_dbm = "paper Table I", PAPER.flops_per_s, PAPER.compute_w, PAPER.uplink_power_dbm
        dist = distance_km if distance_km is not None else PAPER.distance_km
    else:
        preset = device_preset(device or "jetson-orin-nano-8gb-15w")
        dev_name, flops_s, p_d, p_u_dbm = preset.name, preset.flops_per_s, preset.compute_w, preset.tx_power_dbm
        dist = distance_km if distance_km is not None else GENERIC_DISTANCE_KM
    n0_dbm = PAPER.noise_dbm_per_hz
    dims = QWEN25_0_5B

    settings = Table(title=f"Settings ({'paper mode' if paper else 'generic: ' + dev_name})")
    for col in ("parameter", "value", "source"):
        settings.add_column(col)
    src_t1 = "paper Table I" if paper else f"preset {dev_name}"
    settings.add_row("draft model dims", f"n_layers={dims.n_layers}, d={dims.d_model}, d_ff={dims.d_ff}",
                     "Qwen2.5-0.5B config.json")
    settings.add_row("device FLOP/s f_D", f"{flops_s / 1e9:g} GFLOP/s", src_t1)
    settings.add_row("compute power P_D", f"{p_d:g} W", src_t1)
    settings.add_row("uplink power P_U", f"{p_u_dbm:g} dBm = {dbm_to_w(p_u_dbm):.4f} W", src_t1)
    settings.add_row("noise density N0", f"{n0_dbm:g} dBm/Hz", "paper Table I")
    settings.add_row("path loss", f"128.1 + 37.6 log10(d/km) dB, d = {dist:g} km",
                     "paper-mode constants" if paper else "generic distance")
    settings.add_row("fading", "Rayleigh, power gain ~ Exp(1), i.i.d. per round", "system model")
    if paper:
        settings.add_row("T_V, E_bar, g_max", f"{PAPER.t_verify_s * 1e3:g} ms, {E_BAR_J:g} J, {G_MAX}",
                         "paper Table I")
        settings.add_row("b_index, b_prob", f"{PAPER.b_index}, {PAPER.b_prob} bits", "paper-mode constants")
    console.print(settings)

    # ---- draft compute per token --------------------------------------------------------------------
    model = FlopsCompute(dims, flops_s)
    f_model = model.flops(1, context)
    t_model = model.forward_seconds(1, context)
    d, dff, nl = dims.d_model, dims.d_ff, dims.n_layers
    inner = 8 * d * d + 4 * (context + 0.5) * d + 4 * d * dff
    f_hand = nl * 1 * inner
    t_hand = f_hand / flops_s
    comp = Table(title=f"Draft cost per token (g = 1) at context L = {context}")
    for col in ("quantity", "model", "hand calculation", "match"):
        comp.add_column(col)
    comp.add_row("FLOPs", f"{f_model:,.0f}",
                 f"{nl} x 1 x (8*{d}^2 + 4*({context} + 1/2)*{d} + 4*{d}*{dff}) = {nl} x {inner:,.0f} = {f_hand:,.0f}",
                 _ok(f_model, f_hand))
    comp.add_row("seconds", _fmt(t_model, "s"), f"{f_hand:,.0f} / {flops_s:.4g} = {_fmt(t_hand, 's')}",
                 _ok(t_model, t_hand))
    comp.add_row("joules", _fmt(p_d * t_model, "J"), f"{p_d:g} W x {_fmt(t_hand, 's')} = {_fmt(p_d * t_hand, 'J')}",
                 _ok(p_d * t_model, p_d * t_hand))
    f_g = forward_flops(dims, g, context)
    cost_g = f"{f_g:,.0f} FLOP, {_fmt(f_g / flops_s, 's')}, {_fmt(p_d * f_g / flops_s, 'J')}"
    comp.add_row(f"{g} tokens (paper F)", cost_g,
                 f"{nl} x {g} x (8*{d}^2 + 4*({context} + {g}/2)*{d} + 4*{d}*{dff})", _ok(
                     f_g, nl * g * (8 * d * d + 4 * (context + g / 2) * d + 4 * d * dff)))
    console.print(comp)

    # ---- uplink rate at the mean gain ---------------------------------------------------------------
    rate = Table(title="Uplink rate at the mean channel gain (fading = 1)")
    for col in ("B", "model SNR", "model rate", "hand calculation", "match"):
        rate.add_column(col)
    pl_db = 128.1 + 37.6 * math.log10(dist)
    h = 10 ** (-pl_db / 10)
    p_u = 10 ** ((p_u_dbm - 30) / 10)
    n0 = 10 ** ((n0_dbm - 30) / 10)
    for b_mhz in bandwidth_mhz:
        cfg = ChannelConfig(uplink_bandwidth_hz=b_mhz * MHZ, uplink_power_dbm=p_u_dbm, noise_dbm_per_hz=n0_dbm,
                            path_loss=PathLoss(distance_km=dist), fading="none")
        state = WirelessChannel(cfg).mean_state()
        bw = b_mhz * MHZ
        snr = p_u * h / (n0 * bw)
        r_hand = bw * math.log2(1 + snr)
        hand = (f"PL = 128.1 + 37.6 log10({dist:g}) = {pl_db:.3f} dB, h = 10^(-{pl_db:.3f}/10) = {h:.4e}; "
                f"N0 B = {n0:.4e} W/Hz x {bw:.4g} Hz = {n0 * bw:.4e} W; SNR = {p_u:.4f} x {h:.4e} / {n0 * bw:.4e} "
                f"= {snr:,.1f} ({10 * math.log10(snr):.2f} dB); "
                f"r = {bw:.4g} log2(1 + {snr:,.1f}) = {r_hand / 1e6:.4f} Mbit/s")
        rate.add_row(f"{b_mhz:g} MHz", f"{state.snr_db:.2f} dB", f"{state.uplink_bps / 1e6:.4f} Mbit/s", hand,
                     _ok(state.uplink_bps, r_hand))
    console.print(rate)

    # ---- payload and one round ----------------------------------------------------------------------
    b_mhz = bandwidth_mhz[0]
    system = (SystemConfig.paper(bandwidth_mhz=b_mhz, distance_km=dist) if paper else
              SystemConfig.generic(bandwidth_mhz=b_mhz, device=device_preset(device or "jetson-orin-nano-8gb-15w"),
                                   distance_km=dist, payload=PayloadConfig(mode=PayloadMode.PAPER_TOPP)))
    clock = system.build_clock()
    pcfg = PayloadConfig(b_index=PAPER.b_index, b_prob=PAPER.b_prob)
    per_token_bytes = packed_nbytes(support, pcfg.b_index, pcfg.b_prob)
    bits_up = synthetic_topp_bits([support] * g, pcfg, position=context)
    link = clock.channel.mean_state()
    terms = clock.predict_terms(g, link, context, bits_up / g).as_dict()  # the predicted RoundCharge, by name
    pay = Table(title=f"One paper_topp round at the mean gain, B = {b_mhz:g} MHz, g = {g}, |S| = {support}")
    for col in ("quantity", "value", "note"):
        pay.add_column(col)
    pay.add_row("packed q per token", f"{per_token_bytes:,} bytes",
                f"ceil({support} x ({pcfg.b_index} + {pcfg.b_prob}) / 8)")
    pay.add_row("DraftUp bits", f"{bits_up:,}", "8 x len(serialised message), framing included")
    for k in ("t_draft", "t_uplink", "t_verify", "t_downlink", "t_round"):
        pay.add_row(k, _fmt(terms[k], "s"), "")
    for k in ("e_draft", "e_uplink", "e_downlink", "e_idle", "e_round", "e_edge"):
        pay.add_row(k, _fmt(terms[k], "J"), "edge, not charged to the device" if k == "e_edge" else "")
    console.print(pay)


def _ok(a: float, b: float) -> str:
    return "yes" if math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0) else f"NO ({a} vs {b})"


@app.command()
def presets() -> None:
    """Device and edge presets with their published sources."""
    t = Table(title="Device presets")
    for col in ("name", "eff. GFLOP/s", "P_compute W", "P_U dBm", "P_rx W", "P_idle W", "source"):
        t.add_column(col, overflow="fold")
    for p in DEVICE_PRESETS.values():
        t.add_row(p.name, f"{p.flops_per_s / 1e9:g}", f"{p.compute_w:g}", f"{p.tx_power_dbm:g}", f"{p.receive_w:.3g}",
                  f"{p.idle_w:g}", p.source)
    console.print(t)
    e = Table(title="Edge presets (energy never charged to the device)")
    for col in ("name", "P_verify W", "P_tx dBm", "peak TFLOP/s", "mem GB/s", "source"):
        e.add_column(col, overflow="fold")
    for p in EDGE_PRESETS.values():
        e.add_row(p.name, f"{p.verify_w:g}", f"{p.tx_power_dbm:g}", f"{(p.peak_flops_per_s or 0) / 1e12:g}",
                  f"{(p.memory_bw_bytes_per_s or 0) / 1e9:g}", p.source)
    console.print(e)


@app.command()
def calibrate(model_dir: Path = typer.Option(None, "--model", help="local Hugging Face model directory"),
              tiny: bool = typer.Option(False, "--tiny", help="time a tiny random Llama instead (smoke test)"),
              out: Path = typer.Option(Path("profile.json"), "--out", "-o", help="where to write the profile JSON"),
              threads: int = typer.Option(0, "--threads", min=0, help="torch threads (0: leave as is)"),
              repeats: int = typer.Option(5, "--repeats", min=1),
              scale: float = typer.Option(1.0, "--scale", min=1e-9,
                                          help="multiply times by this (host speed / device speed)")) -> None:
    """Time a real model's forwards on this machine and fit t = a + b n + c n L (JSON, reusable)."""
    import torch

    from gelato.system.compute import calibrate_profile

    if threads:
        torch.set_num_threads(threads)
    if tiny == (model_dir is not None):
        raise typer.BadParameter("give exactly one of --model DIR or --tiny")
    if tiny:
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
        model, name = LlamaForCausalLM(cfg), "tiny-random-llama"
    else:
        from gelato.models.loading import load_causal_lm

        model, name = load_causal_lm(model_dir), str(model_dir)
    profile = calibrate_profile(model, repeats=repeats, meta={"model": name}).scaled(scale)
    profile.save(out)
    console.print(f"a = {profile.a:.4e} s, b = {profile.b:.4e} s/token, c = {profile.c:.4e} s/(token*ctx), "
                  f"scale = {profile.scale:g}; written to {out}")
