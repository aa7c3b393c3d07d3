"""Figures of the paper reproduction (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gelato.constants import E_BAR_J, G_MAX, RHO0, C  # noqa: E402
from gelato.experiments.acceptance import AcceptanceFit  # noqa: E402
from gelato.experiments.paper import PAPER_RANGES, Sweep  # noqa: E402

_GELATO_STYLE = {
    "gelato-paper": dict(color="tab:red", lw=2.4, marker="o"),
    "gelato-improved": dict(color="tab:green", lw=2.4, marker="*", ms=9),
    "gelato-paper-fitted": dict(color="tab:pink", lw=1.8, marker="o", ls="--"),
    "gelato-outer-only": dict(color="tab:orange", lw=1.2, marker=".", ls="--"),
    "gelato-inner-only": dict(color="tab:brown", lw=1.2, marker=".", ls="--"),
}
_STATIC_COLORS = {5: "tab:blue", 7: "tab:purple", 9: "tab:cyan"}


def _style(label: str, group: str, extra_index: int = 0) -> dict:
    if label in _GELATO_STYLE:
        return dict(_GELATO_STYLE[label])
    if label.startswith("static-"):
        g = int(label.split("@")[0].split("-")[1])
        p = label.split("@")[1] if "@" in label else ""
        return dict(color=_STATIC_COLORS.get(g, "tab:gray"), lw=1.4, marker="s" if p == "0.99995" else "^",
                    ls="-" if p == "0.99995" else ":")
    if label == "dssd":
        return dict(color="black", lw=1.6, marker="D")
    return dict(color=_EXTRA_COLORS[extra_index % len(_EXTRA_COLORS)], lw=0.9, marker="x", ms=4, ls="-.",
                alpha=0.75)


_EXTRA_COLORS = ("tab:olive", "tab:gray", "goldenrod", "teal", "navy", "salmon", "magenta", "slateblue",
                 "peru")


def plot_sweep(rows: Sequence[dict], sweep: Sweep, path: str | Path, title: str = "") -> Path:
    """Two panels (tokens/s and J/token against the sweep axis), median across seeds with min-max bars for
    GELATO; the paper's figure ranges shaded."""
    import statistics

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    order = {"gelato": 0, "paper-baseline": 1}
    labels = sorted(dict.fromkeys(r["variant"] for r in rows),
                    key=lambda v: order.get(next(r["group"] for r in rows if r["variant"] == v), 2))
    # a policy with ~no device energy (edge-only decoding in paper mode) would squash the J/token axis
    median_jpt = statistics.median(float(r["joules_per_token"]) for r in rows)
    hidden = sorted({r["variant"] for r in rows if float(r["joules_per_token"]) < 0.01 * median_jpt})
    handles = []
    extra = 0
    for label in labels:
        pts = sorted((r for r in rows if r["variant"] == label), key=lambda r: float(r[sweep.axis]))
        xs = [float(r[sweep.axis]) for r in pts]
        st = _style(label, pts[0]["group"], extra)
        extra += pts[0]["group"] == "baseline"
        for ax, m in zip(axes, ("tokens_per_second", "joules_per_token")):
            if m == "joules_per_token" and label in hidden:
                continue
            ys = [float(r[m]) for r in pts]
            if pts[0]["group"] == "gelato":
                lo = [y - float(r[f"{m}_min"]) for y, r in zip(ys, pts)]
                hi = [float(r[f"{m}_max"]) - y for y, r in zip(ys, pts)]
                h = ax.errorbar(xs, ys, yerr=[lo, hi], capsize=3, label=label, **st)
            else:
                h = ax.plot(xs, ys, label=label, **st)[0]
            if m == "tokens_per_second":
                handles.append(h)
    ranges = PAPER_RANGES.get(sweep.name, {})
    for ax, m, ylabel in zip(axes, ("tokens_per_second", "joules_per_token"), ("tokens / s", "device J / token")):
        if m in ranges:
            lo, hi = ranges[m]
            ax.axhspan(lo, hi, color="gold", alpha=0.15)
        ax.set_xlabel(sweep.axis_label)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.set_xticks([float(sweep.x(p)) for p in sweep.points])
    if hidden:
        axes[1].text(0.01, 0.01, "not shown (~0 device J/token): " + ", ".join(hidden), transform=axes[1].transAxes,
                     fontsize=7, color="0.4")
    from matplotlib.patches import Patch

    handles.append(Patch(color="gold", alpha=0.3, label="paper's figure range"))
    fig.legend(handles=handles, loc="center right", fontsize=7.5, frameon=False)
    fig.suptitle(title or sweep.title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.84, 0.95))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_fig4(trajectories: Sequence[dict], path: str | Path, title: str = "", e_bar: float = E_BAR_J) -> Path:
    """Chosen budget (top) and virtual queue Q_k (bottom) per round, one line per variant (first seed)."""
    fig, axes = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    labels = list(dict.fromkeys(r["variant"] for r in trajectories))
    styles = [dict(color="tab:blue", lw=1.8, ls="-"), dict(color="tab:red", lw=0.9, ls="--"),
              dict(color="tab:green", lw=0.8, ls="-", alpha=0.7), dict(color="tab:purple", lw=0.8, ls=":")]
    for st, label in zip(styles, labels):
        rows = sorted((r for r in trajectories if r["variant"] == label), key=lambda r: int(r["round"]))
        xs = [int(r["round"]) for r in rows]
        axes[0].plot(xs, [float(r["budget"]) for r in rows], label=label, **st)
        q = [float(r["queue_at_budget"]) if r["queue_at_budget"] not in ("", None) else math.nan for r in rows]
        axes[1].plot(xs, q, label=label, **st)
    axes[0].set_ylabel("chosen budget g_ref")
    axes[0].set_ylim(0, G_MAX + 1)
    axes[1].set_ylabel(f"virtual queue Q_k (J; E_bar = {e_bar:g} J/round)")
    axes[1].set_xlabel("round k")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(title or "Budget and queue over the rounds", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_fig2(fits: Sequence[AcceptanceFit], path: str | Path, title: str = "") -> Path:
    """Binned acceptance against entropy with each fitted exp(-c H), and the paper's exp(-0.35 H)."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    h_max = max([max((b["h_mean"] for b in f.bins), default=1.0) for f in fits] + [1.0])
    grid = np.linspace(0, h_max * 1.05, 300)
    colors = ["tab:blue", "tab:green", "tab:purple", "tab:orange"]
    for color, f in zip(colors, fits):
        xs = [b["h_mean"] for b in f.bins]
        ys = [b["acceptance"] for b in f.bins]
        sizes = [8 + 60 * math.sqrt(b["count"] / max(1, f.n)) * 4 for b in f.bins]
        ax.scatter(xs, ys, s=sizes, color=color, alpha=0.6, label=f"{f.name}: binned (0.1 nats, n = {f.n})")
        ax.plot(grid, np.exp(-f.c * grid), color=color, lw=1.6, label=f"{f.name}: fit exp(-{f.c:.3f} H)")
    ax.plot(grid, np.exp(-C * grid), color="tab:red", lw=2, ls="--",
            label=f"paper: exp(-{C} H)")
    ax.axhline(RHO0, color="0.5", lw=0.8, ls=":", label=f"rho0 = {RHO0}")
    ax.set_xlabel("draft entropy H of the first drafted token (nats)")
    ax.set_ylabel("acceptance rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "Acceptance against draft entropy")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
