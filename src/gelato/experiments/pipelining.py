"""Draft-ahead results: the pipelined controller against every unpipelined policy and static-5-pipelined.

At the paper's settings (paper system, ids-only ``compact`` payload, E_bar = ``gelato.constants.E_BAR_J`` J/round): bandwidth
{1, 5, 10} MHz at T_V = 100 ms and T_V {60, 80, 120, 140} ms at 5 MHz, on the synthetic regime and on a
greedy trace; the median over seeds of throughput, J/token and mean round energy per policy. Writes
``pipelining.csv`` (medians), ``pipelining_seeds.csv`` (every run), ``pipelining.png`` and
``pipelining.md`` with the gains table.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from gelato.constants import E_BAR_J, within_energy_budget
from gelato.decoding.payload_modes import PayloadMode
from gelato.experiments.config import RunConfig
from gelato.experiments.execute import execute
from gelato.experiments.sweep import Point, best_within_budget, by_point, gains, run_sweep, write_csv

OURS = "gelato-improved-pipelined"
STATIC_PIPELINED = "static-5-pipelined"
PIPELINED = (OURS, STATIC_PIPELINED)


def paper_points(bandwidths: Sequence[float] = (1, 5, 10), t_verifies: Sequence[float] = (60, 80, 100, 120, 140)
                 ) -> list[Point]:
    """Bandwidths at T_V = 100 ms, then T_V values at 5 MHz (the 5 MHz / 100 ms point once)."""
    pts = [Point(b, 100.0) for b in bandwidths]
    pts += [Point(5.0, t) for t in t_verifies if Point(5.0, t) not in pts]
    return pts


def unpipelined_policies() -> list[str]:
    from gelato.policies.registry import POLICIES

    return [n for n in POLICIES if n not in PIPELINED]


def run_one(policy: str, point: Point, seed: int, *, source: str, trace: Path | None, rounds: int,
            e_bar: float) -> dict:
    """One run of ``policy`` at ``point`` (the ``run`` of :func:`gelato.experiments.sweep.run_sweep`)."""
    import torch

    torch.set_num_threads(1)
    cfg = RunConfig(source=source, trace=trace, policy=policy, payload=PayloadMode.COMPACT,
                    bandwidth_mhz=point.bandwidth_mhz, t_verify_ms=point.t_verify_ms, seed=seed, rounds=rounds,
                    e_bar=e_bar)
    s = execute(cfg, write=False).summary
    return {"source": source, "bandwidth_mhz": point.bandwidth_mhz, "t_verify_ms": point.t_verify_ms,
            "policy": policy, "seed": seed, "tokens_per_second": s["tokens_per_second"],
            "joules_per_token": s["joules_per_token"], "mean_round_energy": s["mean_round_energy"],
            "predrafted": s.get("predrafted", 0), "predraft_used_rounds": s.get("predraft_used_rounds", 0),
            "rounds": s["rounds"]}


def sweep_runs(source: str, points: Iterable[Point], policies: Sequence[str], seeds: int, rounds: int,
               trace: Path | None = None, e_bar: float = E_BAR_J, jobs: int = 1,
               progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Every (point, policy, seed) run of one source, through the shared :func:`~gelato.experiments.sweep.run_sweep`."""
    run = functools.partial(run_one, source=source, trace=trace, rounds=rounds, e_bar=e_bar)
    return run_sweep(run, points, policies, range(seeds), jobs=jobs, progress=progress)


def medians(rows: Sequence[dict], e_bar: float) -> list[dict]:
    """Median over seeds per (source, point, policy); ``within`` = median round energy within E_bar."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["source"], r["bandwidth_mhz"], r["t_verify_ms"], r["policy"]), []).append(r)
    out = []
    for (source, bw, tv, pol), rs in groups.items():
        m = {k: statistics.median(r[k] for r in rs) for k in ("tokens_per_second", "joules_per_token",
                                                               "mean_round_energy")}
        used = sum(r["predraft_used_rounds"] for r in rs) / max(1, sum(r["rounds"] for r in rs))
        out.append({"source": source, "bandwidth_mhz": bw, "t_verify_ms": tv, "policy": pol, "seeds": len(rs), **m,
                    "predraft_used_share": used, "within_e_bar": within_energy_budget(m["mean_round_energy"], e_bar)})
    return out


def headline(med: Sequence[dict], e_bar: float) -> list[dict]:
    """Per (source, point): ours, the best unpipelined policy within E_bar, static-5-pipelined, and ours' gains
    over the two (:func:`~gelato.experiments.sweep.gains`)."""
    out = []
    for at in by_point(med).values():
        pols = {r["policy"]: r for r in at}
        ours, stp = pols.get(OURS), pols.get(STATIC_PIPELINED)
        best = best_within_budget([r for n, r in pols.items() if n not in PIPELINED], e_bar)
        vs = {g.base["policy"]: g.tp for g in gains(at, [OURS], lambda _: [r for r in (best, stp) if r],
                                                        item="policy")}
        row = {k: at[0][k] for k in ("source", "bandwidth_mhz", "t_verify_ms")}
        if ours:
            row.update(ours_tps=ours["tokens_per_second"], ours_jpt=ours["joules_per_token"],
                       ours_energy=ours["mean_round_energy"], ours_within=ours["within_e_bar"])
        if best and ours:
            row.update(best_unpipelined=best["policy"], best_tps=best["tokens_per_second"],
                       best_jpt=best["joules_per_token"], gain_vs_best=vs[best["policy"]])
        if stp and ours:
            row.update(static_pipelined_tps=stp["tokens_per_second"], static_pipelined_jpt=stp["joules_per_token"],
                       static_pipelined_energy=stp["mean_round_energy"],
                       static_pipelined_within=stp["within_e_bar"], gain_vs_static_pipelined=vs[STATIC_PIPELINED])
        out.append(row)
    return out


def plot(med: Sequence[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = sorted({r["source"] for r in med})
    fig, axes = plt.subplots(len(sources), 2, figsize=(10, 3.6 * len(sources)), squeeze=False)
    for i, src in enumerate(sources):
        rows = [r for r in med if r["source"] == src]
        for j, (axis, fixed, key) in enumerate((("bandwidth_mhz", ("t_verify_ms", 100.0), "MHz"),
                                                ("t_verify_ms", ("bandwidth_mhz", 5.0), "T_V ms"))):
            ax = axes[i][j]
            pts = sorted({r[axis] for r in rows if r[fixed[0]] == fixed[1]})
            series = {OURS: OURS, STATIC_PIPELINED: STATIC_PIPELINED, "best unpipelined within E_bar": None}
            for label, pol in series.items():
                ys = []
                for x in pts:
                    at = [r for r in rows if r[axis] == x and r[fixed[0]] == fixed[1]]
                    if pol is None:
                        c = [r["tokens_per_second"] for r in at if r["policy"] not in PIPELINED and r["within_e_bar"]]
                        ys.append(max(c) if c else float("nan"))
                    else:
                        ys.append(next((r["tokens_per_second"] for r in at if r["policy"] == pol), float("nan")))
                ax.plot(pts, ys, marker="o", label=label)
            ax.set_xlabel(key)
            ax.set_ylabel("tokens/s (modelled)")
            ax.set_title(f"{src}: {fixed[0]} = {fixed[1]:g}")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def markdown(med: Sequence[dict], gain_rows: Sequence[dict], meta: dict) -> str:
    lines = ["# Draft-ahead (pipelined drafting) under the energy budget", "",
             f"Paper system, ids-only `compact` payload, E_bar = {meta['e_bar']} J/round, median of "
             f"{meta['seeds']} seeds, {meta['rounds']} rounds each; sources: {', '.join(meta['sources'])}. "
             f"Sweep time: {meta['seconds']:.0f} s on {meta['jobs']} process(es). Command: `{meta['command']}`.", "",
             "\"Within E_bar\": median mean round energy <= E_bar (1 + 2%). Goals: >= +25% throughput over the best "
             "unpipelined policy within E_bar at 5 MHz, T_V = 100 ms (synthetic); >= +10% over static-5-pipelined "
             "at equal or lower J/token.", "",
             "## Gains", "",
             "| source | MHz | T_V ms | ours tok/s | ours J/tok | ours J/round | best unpipelined within E_bar | its tok/s "
             "| gain | static-5-pipelined tok/s | its J/tok | its J/round | gain |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in gain_rows:
        lines.append(f"| {g['source']} | {g['bandwidth_mhz']:g} | {g['t_verify_ms']:g} | {g.get('ours_tps', 0):.2f} | "
                     f"{g.get('ours_jpt', 0):.4f} | {g.get('ours_energy', 0):.3f} | {g.get('best_unpipelined', '-')} | "
                     f"{g.get('best_tps', 0):.2f} | {_pct(g.get('gain_vs_best'))} | "
                     f"{g.get('static_pipelined_tps', 0):.2f} | {g.get('static_pipelined_jpt', 0):.4f} | "
                     f"{g.get('static_pipelined_energy', 0):.3f} | {_pct(g.get('gain_vs_static_pipelined'))} |")
    lines += ["", "## Every policy (medians)", "",
              "| source | MHz | T_V ms | policy | tok/s | J/token | J/round | within E_bar | pre-draft used |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(med, key=lambda r: (r["source"], r["bandwidth_mhz"], r["t_verify_ms"], -r["tokens_per_second"])):
        lines.append(f"| {r['source']} | {r['bandwidth_mhz']:g} | {r['t_verify_ms']:g} | {r['policy']} | "
                     f"{r['tokens_per_second']:.2f} | {r['joules_per_token']:.4f} | {r['mean_round_energy']:.3f} | "
                     f"{'yes' if r['within_e_bar'] else 'no'} | {100 * r['predraft_used_share']:.0f}% |")
    return "\n".join(lines) + "\n"


def write_results(rows: Sequence[dict], out: Path, meta: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    med = medians(rows, meta["e_bar"])
    g = headline(med, meta["e_bar"])
    paths = {"seeds": write_csv(out / "pipelining_seeds.csv", rows), "csv": write_csv(out / "pipelining.csv", med),
             "gains": write_csv(out / "pipelining_gains.csv", g), "png": plot(med, out / "pipelining.png")}
    md = out.parent / "pipelining.md" if out.name == "pipelining" else out / "pipelining.md"
    md.write_text(markdown(med, g, meta))
    paths["md"] = md
    return {"paths": paths, "gains": g, "medians": med}


def timed(fn: Callable[[], list[dict]]) -> tuple[list[dict], float]:
    t = time.perf_counter()
    rows = fn()
    return rows, time.perf_counter() - t
