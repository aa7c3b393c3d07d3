"""Write docs/results/edge-streaming.md from testbed JSON files: gelato against the edge streaming its own answer.

    python scripts/edge_streaming_report.py --lte L.json --wifi W.json --rtt 5=R5.json --rtt 20=R20.json ...
        [--map docs/results/drafting-map.json] [--t1 draws=D.json --t1 compact=C.json] --out docs/results/edge-streaming.md

Every number is read from the files (measured: wall clock of the real programs; modelled: the clock fed the
measured costs); nothing is typed in.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gelato.testbed.report import fleet_table

OURS, REF = "gelato-improved", "edge-streaming"


def _load(path: str) -> dict:
    return json.loads(Path(path).read_text())


def _tps(result: dict, name: str, side: str = "measured") -> float:
    return result["policies"][name][side]["tokens_per_second"]


def link_rows(results: dict[str, dict]) -> list[str]:
    lines = ["| link | edge-streaming tok/s | gelato-improved tok/s | ratio measured (modelled) | best static K "
             "(tok/s) | gelato-improved / best of {edge-streaming, static K} | modelled error, gelato-improved / "
             "edge-streaming |", "| --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    for label, r in results.items():
        pols = r["policies"]
        statics = {n: _tps(r, n) for n in pols if n.startswith("static-") and "-pipelined" not in n
                   and "measured" in pols[n]}
        best_static = max(statics, key=statics.get) if statics else None
        best = max([_tps(r, REF), *statics.values()])
        lines.append(f"| {label} | {_tps(r, REF):.2f} | {_tps(r, OURS):.2f} | {_tps(r, OURS) / _tps(r, REF):.2f}x "
                     f"({_tps(r, OURS, 'modelled') / _tps(r, REF, 'modelled'):.2f}x) | "
                     f"{best_static} ({statics.get(best_static, 0):.2f}) | {_tps(r, OURS) / best:.2f}x | "
                     f"{100 * pols[OURS]['error']['tokens_per_second']:+.1f}% / "
                     f"{100 * pols[REF]['error']['tokens_per_second']:+.1f}% |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lte", required=True)
    ap.add_argument("--wifi", required=True)
    ap.add_argument("--rtt", action="append", default=[], help="MS=FILE, a fixed-rate 10 Mbit/s link")
    ap.add_argument("--t1", action="append", default=[], help="PAYLOAD=FILE, lte at temperature 1")
    ap.add_argument("--map", default=None)
    ap.add_argument("--fleet", default=None, help="a testbed JSON with the fleet runs (default: the lte file's)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    lte, wifi = _load(args.lte), _load(args.wifi)
    links = {"lte (10 Mbit/s, 50 ms RTT)": lte, "wifi (50 Mbit/s, 5 ms RTT)": wifi}
    for spec in args.rtt:
        ms, path = spec.split("=", 1)
        links[f"10 Mbit/s, {ms} ms RTT"] = _load(path)
    w = lte["workload"]
    lines = ["# gelato against the edge streaming its own answer", "",
             "Measured on this 2-core CPU machine with `gelato testbed` (edge, link emulator and device as separate "
             "processes on their own cores; default pair; greedy; "
             f"{w['prompts']} prompts of the `{w['name']}` workload x {w['max_new_tokens']} tokens). `edge-streaming` is what a user runs without gelato: the "
             "device sends the prompt and the edge decodes alone, streaming each token as it exists (one round "
             "trip per answer). Ratios are taken within one run (policies run back to back on the same edge).",
             "", *link_rows(links), ""]
    fleet = _load(args.fleet).get("fleet") if args.fleet else lte.get("fleet")
    if fleet:
        lines += ["## Many devices on one edge (lte)", "", *fleet_table(fleet), ""]
    if args.t1:
        lines += ["## Temperature 1 on lte: the payload", "", "| payload | policy | tok/s measured | tokens/round | "
                  "protocol bytes up a round |", "| --- | --- | ---: | ---: | ---: |"]
        for spec in args.t1:
            payload, path = spec.split("=", 1)
            for name, p in _load(path)["policies"].items():
                if "measured" in p:
                    m = p["measured"]
                    lines.append(f"| {payload} | {name} | {m['tokens_per_second']:.2f} | "
                                 f"{m['mean_acceptance_length']:.2f} | {m['protocol_bytes_up'] / max(1, m['rounds']):.0f} |")
        lines.append("")
    if args.map:
        from gelato.experiments.drafting_map import summary_lines

        result = _load(args.map)
        lines += ["## Where device drafting pays (modelled map, measured points on top)", "",
                  "![drafting map](drafting-map.png)", "", *[f"- {x}" for x in summary_lines(result)],
                  f"- modelled: {result['modelled']}; edge batching: forward time doubles at "
                  f"{result['saturation_tokens']:.1f} tokens (this CPU's fitted edge profile)", ""]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
