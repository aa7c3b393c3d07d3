"""Render the paper reproduction's numbers as markdown: number formats, tables, and one section per figure.

Every sentence here describes how a table was made; conclusions drawn from the numbers are in
``narrative``.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from gelato.constants import BUDGET_TOLERANCE, E_BAR_J, RHO0, C, within_energy_budget
from gelato.experiments.acceptance import AcceptanceFit
from gelato.experiments.paper import (
    IMPROVED_TARGET_PCT,
    PAPER_RANGES,
    SWEEPS,
    Sweep,
    aggregate,
)
from gelato.experiments.report.analysis import GELATO_COMPARED, source_title, x_of
from gelato.experiments.sweep import Point


def fmt_pct(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    x = float(x)
    if abs(x) >= 1000:
        return ">+999%" if x > 0 else "<-999%"
    return f"{x:+.{digits}f}%"


def fmt_num(x: Any, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    x = float(x)
    if x != 0 and abs(x) < 10 ** -digits:
        return f"{x:.1e}"
    return f"{x:.{digits}f}"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    headers = [str(h) for h in headers]
    align = align or ("l" + "r" * (len(headers) - 1))
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


def _grid(labels: Sequence[str], xs: Sequence[float], cell: dict, render) -> list[list[str]]:
    """Table rows: one per label, one column per x; ``render(cell[(label, x)])``, blank where there is none."""
    return [[f"`{label}`"] + [render(cell[(label, x)]) if (label, x) in cell else "" for x in xs] for label in labels]


def _xlabel(sweep: Sweep, x: float) -> str:
    return f"{x:g} MHz" if sweep.axis == "bandwidth_mhz" else f"{x:g} ms"


def section_sweep(summary: Sequence[dict], gain_rows: Sequence[dict], sweep: Sweep, source_key: str,
                  img: str | None, e_bar: float = E_BAR_J, level: int = 3) -> str:
    h = "#" * level
    xs = sorted({x_of(r, sweep) for r in summary})
    labels = list(dict.fromkeys(r["variant"] for r in summary))
    cell = {(r["variant"], x_of(r, sweep)): r for r in summary}
    seeds = max((int(r["seeds"]) for r in summary), default=0)
    rounds = max((int(r["rounds"]) for r in summary), default=0)
    parts = [f"{h} {sweep.title} ({source_title(source_key)})", ""]
    if img:
        parts += [f"![{sweep.name} {source_key}]({img})", ""]
    parts.append(f"Median across {seeds} seeds of {rounds}-round runs (min-max bars on GELATO). "
                 f"`†`: the median run spends more than E_bar (1 + {BUDGET_TOLERANCE:g}) = "
                 f"{e_bar * (1 + BUDGET_TOLERANCE):.3f} J per round (it does not meet the paper's energy budget). "
                 f"The paper's figure ranges: {_range_text(sweep.name)}.")
    parts.append("")
    for metric, title, digits in (("tokens_per_second", "tokens/s", 2), ("joules_per_token", "device J/token", 4)):
        def render(r: dict, metric: str = metric, digits: int = digits) -> str:
            dagger = "" if within_energy_budget(r["mean_round_energy"], e_bar) else " †"
            return fmt_num(r[metric], digits) + dagger

        rows = _grid(labels, xs, cell, render)
        parts += [f"**{title}**", "", md_table(["policy"] + [_xlabel(sweep, x) for x in xs], rows), ""]
    parts += [section_headline_gains(gain_rows, sweep, level + 1), ""]
    parts += [section_gain_matrix(gain_rows, sweep, "gelato-paper", level + 1), ""]
    parts += [section_gain_matrix(gain_rows, sweep, "gelato-improved", level + 1), ""]
    return "\n".join(parts)


def _range_text(sweep_name: str) -> str:
    r = PAPER_RANGES.get(sweep_name)
    if not r:
        return "n/a"
    tp, e = r["tokens_per_second"], r["joules_per_token"]
    return f"{tp[0]:g}-{tp[1]:g} tok/s and {e[0]:g}-{e[1]:g} J/token"


def _pick(gain_rows: Sequence[dict], gelato: str, x: float, sweep: Sweep, **match: str) -> dict | None:
    for g in gain_rows:
        if g["gelato"] != gelato or x_of(g, sweep) != x or g["sweep"] != sweep.name:
            continue
        if all(g.get(k) == v for k, v in match.items()):
            return g
    return None


def section_headline_gains(gain_rows: Sequence[dict], sweep: Sweep, level: int = 4) -> str:
    h = "#" * level
    xs = sorted({x_of(g, sweep) for g in gain_rows if g["sweep"] == sweep.name})
    parts = [f"{h} Headline gains: best and worst baseline per metric", "",
             "Gain of GELATO over the baseline (median runs): throughput `+` is better, J/token `-` is better. "
             "*Paper set* = the paper's baselines (static SD g = 5/7/9 at top-p 0.99995 and 0.99998, DSSD); "
             "*all* adds edge-only decoding, transformers' schedules, early-exit rules and adaptive goodput "
             "(edge-only decoding, which spends ~0 device J, is left out of the J/token ranking). "
             "Per-seed paired gains (same seed, same fading) in brackets, min..max.", ""]
    for gelato in GELATO_COMPARED:
        rows = []
        for x in xs:
            def g(**m: str) -> dict | None:
                return _pick(gain_rows, gelato, x, sweep, **m)

            def cell(r: dict | None, metric: str) -> str:
                if r is None:
                    return "n/a"
                lo, hi = r[f"{metric}_gain_pct_seed_min"], r[f"{metric}_gain_pct_seed_max"]
                rng = f" [{fmt_pct(lo, 0)}..{fmt_pct(hi, 0)}]" if lo is not None else ""
                return f"{fmt_pct(r[f'{metric}_gain_pct'])} vs `{r['baseline']}`{rng}"

            any_row = g()
            reported = ""
            if any_row is not None:
                rp = (any_row.get("paper_tp_gain_pct"), any_row.get("paper_jpt_gain_pct"))
                reported = " / ".join(fmt_pct(v, 2) if v is not None else "—" for v in rp)
            rows.append([_xlabel(sweep, x), reported or "— / —",
                         cell(g(tp_rank_paper="worst"), "tp"), cell(g(tp_rank_paper="best"), "tp"),
                         cell(g(baseline="dssd"), "tp"), cell(g(tp_rank_all="best"), "tp"),
                         cell(g(jpt_rank_paper="worst"), "jpt"), cell(g(jpt_rank_paper="best"), "jpt"),
                         cell(g(baseline="dssd"), "jpt"), cell(g(jpt_rank_all="best"), "jpt")])
        parts += [f"`{gelato}`:", "",
                  md_table(["point", "paper reported (tp / J)", "tp vs worst (paper set)", "tp vs best (paper set)",
                            "tp vs DSSD", "tp vs best (all)", "J/tok vs worst (paper set)",
                            "J/tok vs best (paper set)", "J/tok vs DSSD", "J/tok vs best (all)"], rows,
                           align="l" + "r" * 9), ""]
    return "\n".join(parts)


def section_gain_matrix(gain_rows: Sequence[dict], sweep: Sweep, gelato: str, level: int = 4) -> str:
    h = "#" * level
    rows_g = [g for g in gain_rows if g["gelato"] == gelato and g["sweep"] == sweep.name]
    if not rows_g:
        return ""
    xs = sorted({x_of(g, sweep) for g in rows_g})
    baselines = list(dict.fromkeys(g["baseline"] for g in rows_g))
    cell = {(g["baseline"], x_of(g, sweep)): g for g in rows_g}
    marks = {"best": "ᵇ", "worst": "ʷ", "": ""}

    def render(g: dict) -> str:
        tp_mark = marks[g["tp_rank_paper"] or ""] if g["baseline_group"] == "paper-baseline" else ""
        e_mark = marks[g["jpt_rank_paper"] or ""] if g["baseline_group"] == "paper-baseline" else ""
        dagger = "" if g["baseline_energy_ok"] else " †"
        return f"{fmt_pct(g['tp_gain_pct'])}{tp_mark} / {fmt_pct(g['jpt_gain_pct'])}{e_mark}{dagger}"

    rows = _grid(baselines, xs, cell, render)
    return "\n".join([f"{h} `{gelato}`: gain over every baseline (throughput / J per token)", "",
                      "ᵇ best and ʷ worst baseline of the paper set for that metric; † the baseline exceeds the "
                      "energy budget.", "",
                      md_table(["baseline"] + [_xlabel(sweep, x) for x in xs], rows)])


def section_improved_vs_paper(rows: Sequence[dict], source_key: str, e_bar: float = E_BAR_J, level: int = 3) -> str:
    h = "#" * level
    limit = e_bar * (1 + BUDGET_TOLERANCE)
    table = []
    for r in rows:
        sweep = SWEEPS.get(r["sweep"])
        x = _xlabel(sweep, x_of(r, sweep)) if sweep else f"{r['bandwidth_mhz']:g} MHz, {r['t_verify_ms']:g} ms"
        lo, hi = r.get("tp_gain_pct_seed_min"), r.get("tp_gain_pct_seed_max")
        table.append([f"{r['sweep']} {x}", fmt_num(r["tp_paper"]), fmt_num(r["tp_improved"]), fmt_pct(r["tp_gain_pct"]),
                      f"{fmt_pct(lo, 0)}..{fmt_pct(hi, 0)}" if lo is not None else "n/a",
                      fmt_pct(r["jpt_gain_pct"]), fmt_num(r["energy_paper"], 3), fmt_num(r["energy_improved"], 3),
                      "yes" if r["improved_energy_ok"] else "**no**",
                      f"{r.get('improved_energy_ok_seeds', '?')}/{r.get('seeds', '?')}",
                      "**yes**" if r["target_met"] else "no",
                      f"`{r.get('best_in_budget')}` {fmt_pct(r.get('best_in_budget_gain_pct'))}"
                      if r.get("best_in_budget") else "n/a"])
    met = sum(bool(r["target_met"]) for r in rows)
    gains_ = [float(r["tp_gain_pct"]) for r in rows]
    summary = (f"Target (docs/design-decisions.md, gelato-improved): throughput >= +{IMPROVED_TARGET_PCT:g}% over gelato-paper with mean round energy "
               f"<= {limit:.3f} J. Met at {met} of {len(rows)} points; median gain "
               f"{fmt_pct(statistics.median(gains_))}, "
               f"range {fmt_pct(min(gains_))} to {fmt_pct(max(gains_))}." if rows else "No data.")
    return "\n".join([f"{h} {source_title(source_key)}", "", summary, "",
                      md_table(["point", "paper tok/s", "improved tok/s", "tp gain", "per-seed gain",
                                "J/token change", "paper E/round (J)", "improved E/round (J)",
                                f"improved E <= {limit:.3f}", "seeds within budget", "target met",
                                "best policy within budget (vs paper)"], table),
                      "", "The last column is the fastest policy of the whole sweep whose median run stays within "
                      "the budget, and its throughput over gelato-paper: the headroom any controller had at that "
                      "point among the policies we run.", ""])


def section_fig4(trajectories: Sequence[dict], records: Sequence[dict], point: Point, source_key: str,
                 img: str | None, e_bar: float = E_BAR_J, level: int = 3) -> str:
    h = "#" * level
    summary = aggregate(records)
    by_variant: dict[str, list[dict]] = defaultdict(list)
    for t in trajectories:
        by_variant[t["variant"]].append(t)
    rows = []
    for s in summary:
        traj = sorted(by_variant.get(s["variant"], []), key=lambda r: int(r["round"]))
        qs = [float(t["queue_at_budget"]) for t in traj if t["queue_at_budget"] not in (None, "")]
        budgets = [float(t["budget"]) for t in traj]
        changes = sum(1 for a, b in zip(budgets, budgets[1:]) if a != b)
        rows.append([f"`{s['variant']}`", fmt_num(s["tokens_per_second"]), fmt_num(s["joules_per_token"], 4),
                     fmt_num(s["mean_round_energy"], 3), fmt_num(s["mean_budget"]),
                     fmt_num(statistics.mean(budgets)) if budgets else "n/a",
                     fmt_num(max(qs), 2) if qs else "n/a", fmt_num(statistics.mean(qs), 2) if qs else "n/a",
                     str(changes)])
    parts = [f"{h} Fig. 4: budget and queue over {max((len(v) for v in by_variant.values()), default=0)} rounds "
             f"({source_title(source_key)}, {point.label()})", ""]
    if img:
        parts += [f"![fig4 {source_key}]({img})", ""]
    parts += [f"Trajectories: first seed. Table: medians across seeds, plus the first seed's trajectory statistics. "
              f"E_bar = {e_bar:g} J/round. For gelato-improved the plotted 'queue' is its logged energy queue "
              f"(its control is an energy price; see docs of the policy) and the budget is its round budget.", "",
              md_table(["policy", "tok/s", "J/token", "E/round (J)", "mean round budget", "mean g_ref (seed 0)",
                        "max Q (seed 0)", "mean Q (seed 0)", "budget changes (seed 0)"], rows), ""]
    return "\n".join(parts)


def section_fig2(fits: Sequence[AcceptanceFit], img: str | None, level: int = 3) -> str:
    h = "#" * level
    rows = [[f.name, str(f.n), fmt_num(f.mean_entropy, 3), fmt_num(f.mean_acceptance, 3), fmt_num(f.c, 3),
             fmt_num(f.binned_r2, 2), fmt_num(f.h_th, 3)] for f in fits]
    rows.append(["paper (Qwen2.5-0.5B / 7B, GSM8K)", "—", "—", f"{RHO0:g} (rho0)", f"{C:g}", "—",
                 fmt_num(-math.log(RHO0) / C, 3)])
    parts = [f"{h} Fig. 2: acceptance against entropy", ""]
    if img:
        parts += [f"![fig2]({img})", ""]
    parts += ["First drafted token of every round position (greedy trace: `entropies[s, 0]`, accepted iff "
              "`draft_tokens[s, 0] == target_tokens[s]`), binned by 0.1 nats; `c` is the least-squares fit of "
              "`accepted ~ exp(-c H)` over the raw samples; binned R^2 is the count-weighted R^2 of that curve on "
              "the bins (near 1: the exponential map describes the pair; near or below 0: it does not, whatever "
              "c). `H_th` = phi^-1(0.9) with that c, the paper's bucket threshold.", "",
              md_table(["samples", "n", "mean H (nats)", "mean acceptance", "fitted c", "binned R^2",
                        "H_th = -ln 0.9 / c"], rows), ""]
    return "\n".join(parts)


