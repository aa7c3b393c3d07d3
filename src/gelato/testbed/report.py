"""The testbed's markdown table and plot (measured beside modelled, per policy)."""

from __future__ import annotations

import json
from pathlib import Path

from gelato.testbed.metrics import PHASES


def markdown_table(result: dict) -> str:
    link, power = result["link"], result["power_profile"]
    ref = result.get("reference") or "reference"
    lines = [f"Link `{link['name']}` ({link['description']}); device power profile `{power['name']}`; "
             f"E_bar {result['e_bar_j_per_round']} J/round. tok/s over the decode rounds (the session open is in "
             "TTFT). Measured: wall clock, link counters, device CPU time x the profile's watts. Modelled: the "
             "modelled clock charged with the same rounds, fed the measured compute costs and the link preset.", "",
             f"x {ref}: tok/s over the reference's, the edge streaming its own answer where it ran (what a user runs "
             "without gelato).", "",
             f"| policy | tok/s measured | x {ref} meas. / mod. | tok/s modelled | error | TTFT ms meas. / mod. | "
             "tokens/round | J/token meas. / mod. | budget kept meas. / mod. | link bytes up / down | same output |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: | :---: |"]
    for name, p in result["policies"].items():
        if "measured" not in p:
            lines.append(f"| {name} | error: {p.get('error')} | | | | | | | | | |")
            continue
        m, o = p["measured"], p["modelled"]
        same = p.get("same_output_as_reference")
        over = p.get("over_reference", {})
        lines.append(f"| {name} | {m['tokens_per_second']:.2f} | {over.get('measured', 0):.2f}x / "
                     f"{over.get('modelled', 0):.2f}x | {o['tokens_per_second']:.2f} | "
                     f"{100 * p['error']['tokens_per_second']:+.1f}% | {1e3 * m['ttft_s']:.0f} / {1e3 * o['ttft_s']:.0f} | "
                     f"{m['mean_acceptance_length']:.2f} | {m['j_per_token']:.3f} / {o['j_per_token']:.3f} | "
                     f"{'yes' if m['energy_budget_kept'] else 'no'} / {'yes' if o['energy_budget_kept'] else 'no'} | "
                     f"{m['link_bytes_up']} / {m['link_bytes_down']} | {'-' if same is None else same} |")
    lines += ["", "Where a round's time goes, ms per round, measured (modelled):", "",
              "| policy | " + " | ".join(PHASES) + " |", "| --- |" + " ---: |" * len(PHASES)]
    for name, p in result["policies"].items():
        if "measured" in p:
            m, o = p["measured"]["per_round_ms"], p["modelled"]["per_round_ms"]
            lines.append(f"| {name} | " + " | ".join(f"{m[k]:.1f} ({o[k]:.1f})" for k in PHASES) + " |")
    if "fleet" in result:
        lines += ["", *fleet_table(result["fleet"])]
    return "\n".join(lines) + "\n"


def fleet_table(fleet: dict) -> list[str]:
    """N devices on one edge: measured rows for each N run, then the model up to 64 devices."""
    lines = [f"Many devices on one edge ({fleet['note']}):", "",
             "| policy | devices | tok/s per device | edge tok/s | edge forwards / token | mean batch | source |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name in fleet["policies"]:
        for n, f in fleet["measured"][name].items():
            lines.append(f"| {name} | {n} | {f['per_device_tokens_per_second']:.2f} | "
                         f"{f['edge_tokens_per_second']:.2f} | {f['forwards_per_token']:.3f} | {f['batch_mean']:.2f} "
                         "| measured |")
        for r in fleet["modelled"][name]:
            lines.append(f"| {name} | {r['devices']} | {r['per_device_tokens_per_second']:.2f} | "
                         f"{r['edge_tokens_per_second']:.2f} | {r['forwards_per_token']:.3f} | | modelled |")
    c = fleet["batch_cost_curve"]
    lines += ["", f"Edge batch-cost curve (fitted to {c['samples']} measured forwards): forward ms = "
              f"{c['a_ms']:.2f} + {c['b_ms_per_token']:.3f} x tokens carried."]
    return lines


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [n for n, p in result["policies"].items() if "measured" in p]
    meas = [result["policies"][n]["measured"] for n in names]
    mod = [result["policies"][n]["modelled"] for n in names]
    x = np.arange(len(names))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5))
    ax1.bar(x - 0.2, [m["tokens_per_second"] for m in meas], 0.4, label="measured")
    ax1.bar(x + 0.2, [m["tokens_per_second"] for m in mod], 0.4, label="modelled")
    ax1.set_ylabel("tokens/s (decode rounds)")
    ax1.set_title(f"testbed, link {result['link']['name']}: measured vs modelled")
    ax1.legend()
    bottom = np.zeros(len(names))
    for phase in ("draft", "uplink", "verify", "downlink", "waiting", "device_other"):
        # pipelined policies pre-draft during the wait, so their measured waiting is negative: drawn as 0
        values = np.maximum(np.array([m["per_round_ms"][phase] for m in meas]), 0.0)
        ax2.bar(x, values, 0.6, bottom=bottom, label=phase)
        bottom += values
    ax2.set_ylabel("ms per round (measured)")
    ax2.set_title("where a round's time goes (measured)")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.set_xticks(x, names, rotation=35, ha="right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(result: dict, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    md_path = out_dir / f"{name}.md"
    md_path.write_text(f"# Testbed: link `{result['link']['name']}`\n\n" + markdown_table(result)
                       + f"\n![measured vs modelled]({name}.png)\n")
    return [json_path, md_path, plot(result, out_dir / f"{name}.png")]
