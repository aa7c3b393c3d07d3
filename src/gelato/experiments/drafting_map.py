"""Where device drafting pays: gelato-improved's tokens/s over edge-streaming's, across the link's round trip and
the edge's time per token, at N devices per edge (modelled), with the testbed's measured points on top.

Every cell replays the default pair's recorded greedy trace through the real policies in the modelled clock
(:func:`gelato.experiments.runner.run_policy`): a fixed-rate link (``link_mbps`` each way, half the round trip
each way), the edge's forward a :class:`~gelato.system.compute.BatchedEdgeCompute` (``N`` sessions in every
forward, its time a line in the tokens carried) and the device's draft cost as measured on this machine (the
testbed's calibrated profile). The policies plan with the same clock. What is modelled: every time and the
edge's batching; what is measured: the draft's acceptance (the trace) and its forward cost.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gelato.constants import E_BAR_J
from gelato.experiments.runner import run_policy, trace_prompt_runs
from gelato.experiments.trace import Trace
from gelato.policies.registry import make_policy
from gelato.system.channel import ChannelConfig
from gelato.system.clock import ModelledClock
from gelato.system.compute import BatchedEdgeCompute, ComputeModel
from gelato.system.energy import DevicePower

RTT_MS = tuple(float(x) for x in np.round(np.geomspace(1, 200, 10), 1))
EDGE_MS = tuple(float(x) for x in np.round(np.geomspace(2, 100, 10), 1))
DEVICES = (1, 16)
OURS, BASELINE = "gelato-improved", "edge-streaming"


@dataclass(frozen=True)
class MapSetup:
    """What every cell shares: the trace, the device's draft cost and power, the edge's batching shape."""

    trace: Trace
    draft_compute: ComputeModel
    saturation_tokens: float = 5.0
    link_mbps: float = 10.0
    rounds: int = 150
    e_bar: float = E_BAR_J
    device_power: DevicePower | None = None


def cell_tokens_per_second(setup: MapSetup, policy: str, rtt_ms: float, edge_ms: float, devices: int) -> float:
    """One policy's modelled tokens/s per device at one point of the map."""
    channel = ChannelConfig(uplink_bps=setup.link_mbps * 1e6, downlink_bps=setup.link_mbps * 1e6,
                            delay_s=rtt_ms / 2e3, fading="none")
    clock = ModelledClock(channel=channel, draft_compute=setup.draft_compute, device_power=setup.device_power,
                          verify_compute=BatchedEdgeCompute(edge_ms / 1e3, devices, setup.saturation_tokens),
                          name="drafting-map")
    run_policy(make_policy(policy, predictor=clock, energy_budget=setup.e_bar), clock,
               trace_prompt_runs(setup.trace), setup.rounds)
    return clock.cum_tokens / clock.cum_time if clock.cum_time > 0 else 0.0


def drafting_map(setup: MapSetup, rtt_ms: Sequence[float] = RTT_MS, edge_ms: Sequence[float] = EDGE_MS,
                 devices: Sequence[int] = DEVICES, on_cell: Callable[[], None] = lambda: None) -> dict:
    """Every cell's tokens/s for both policies and their ratio (``ratio[n][i][j]``: edge time ``i``, rtt ``j``)."""
    cells = {}
    for n in devices:
        ours = np.zeros((len(edge_ms), len(rtt_ms)))
        base = np.zeros_like(ours)
        for i, e in enumerate(edge_ms):
            for j, r in enumerate(rtt_ms):
                ours[i, j] = cell_tokens_per_second(setup, OURS, r, e, n)
                base[i, j] = cell_tokens_per_second(setup, BASELINE, r, e, n)
                on_cell()
        cells[str(n)] = {OURS: ours.tolist(), BASELINE: base.tolist(), "ratio": (ours / base).tolist()}
    return {"rtt_ms": list(rtt_ms), "edge_ms": list(edge_ms), "devices": list(devices), "cells": cells,
            "link_mbps": setup.link_mbps, "saturation_tokens": setup.saturation_tokens, "rounds": setup.rounds,
            "trace": setup.trace.header.get("workload"), "modelled": "every time (trace replay in the modelled "
            "clock); measured: acceptance (the trace) and the draft's forward cost"}


def measured_points(paths: Sequence[Path]) -> list[dict]:
    """The testbed runs that measured both policies: (rtt, the edge's fitted one-token time, measured ratio)."""
    points = []
    for path in paths:
        result = json.loads(Path(path).read_text())
        pols = result.get("policies", {})
        if not all("measured" in pols.get(p, {}) for p in (OURS, BASELINE)):
            continue
        v = result["verify_profile"]
        edge_ms = 1e3 * v["scale"] * (v["a"] + v["b"] + v["c"] * 100)  # one token at a 100-token context
        ratio = pols[OURS]["measured"]["tokens_per_second"] / pols[BASELINE]["measured"]["tokens_per_second"]
        points.append({"name": result["link"]["name"], "rtt_ms": 2e3 * result["link"]["delay_s"],
                       "edge_ms": edge_ms, "ratio": ratio})
    return points


def plot_map(result: dict, points: Sequence[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    rtt, edge = np.array(result["rtt_ms"]), np.array(result["edge_ms"])
    ratios = [np.array(result["cells"][str(n)]["ratio"]) for n in result["devices"]]
    hi = max(2.0, max(float(r.max()) for r in ratios))
    norm = TwoSlopeNorm(vmin=min(0.5, min(float(r.min()) for r in ratios)), vcenter=1.0, vmax=hi)
    fig, axes = plt.subplots(1, len(ratios), figsize=(6.5 * len(ratios), 5), squeeze=False)
    for ax, n, ratio in zip(axes[0], result["devices"], ratios):
        mesh = ax.pcolormesh(rtt, edge, ratio, cmap="RdBu", norm=norm, shading="nearest")
        ax.contour(rtt, edge, ratio, levels=[1.0], colors="k", linewidths=1.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("link round trip, ms")
        ax.set_ylabel("edge time per token (alone), ms")
        ax.set_title(f"{OURS} / {BASELINE} tok/s, N = {n} devices (modelled)")
        if n == 1:
            for p in points:
                ax.scatter([p["rtt_ms"]], [p["edge_ms"]], c="k", marker="o", s=30, zorder=3)
                ax.annotate(f"{p['name']}: {p['ratio']:.2f}x measured", (p["rtt_ms"], p["edge_ms"]),
                            textcoords="offset points", xytext=(5, 5), fontsize=8)
        fig.colorbar(mesh, ax=ax, label="tok/s ratio (>1: device drafting pays)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_lines(result: dict) -> list[str]:
    """Where drafting wins, in words: per N, the cells with ratio > 1.05 and the best ratio."""
    lines = []
    for n in result["devices"]:
        ratio = np.array(result["cells"][str(n)]["ratio"])
        wins = ratio > 1.05
        best = np.unravel_index(int(ratio.argmax()), ratio.shape)
        lines.append(f"N = {n}: drafting wins (>1.05x) in {int(wins.sum())}/{wins.size} cells; best "
                     f"{ratio.max():.2f}x at {result['rtt_ms'][best[1]]:g} ms round trip and "
                     f"{result['edge_ms'][best[0]]:g} ms per edge token; worst {ratio.min():.2f}x")
    return lines
