"""Draft-ahead results at the paper's settings: the pipelined controller against every unpipelined policy and
static-5-pipelined, on the synthetic regime and a greedy trace (any trace: ``--trace PATH``).

    python benchmarks/pipelining.py [--seeds 5] [--rounds 1000] [--jobs 2]
        [--trace docs/results/paper-reproduction/gsm8k-trace.npz] [--out docs/results/pipelining]

Writes pipelining.csv / pipelining_seeds.csv / pipelining_gains.csv / pipelining.png under --out and the
report next to it (docs/results/pipelining.md); prints the gains table as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gelato.experiments.pipelining import PIPELINED, paper_points, run_sweep, timed, unpipelined_policies, write_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--trace", type=Path, default=Path("docs/results/paper-reproduction/gsm8k-trace.npz"))
    ap.add_argument("--trace-seeds", type=int, default=None, help="seeds for the trace (default: --seeds)")
    ap.add_argument("--no-trace", action="store_true")
    ap.add_argument("--e-bar", type=float, default=1.2)
    ap.add_argument("--out", type=Path, default=Path("docs/results/pipelining"))
    args = ap.parse_args()
    if not args.no_trace and not args.trace.exists():
        sys.exit(f"error: trace file not found: {args.trace}")
    policies = unpipelined_policies() + list(PIPELINED)
    done = [0]

    def tick(row: dict) -> None:
        done[0] += 1
        if done[0] % 50 == 0:
            print(f"{done[0]} runs", file=sys.stderr, flush=True)

    def sweep() -> list[dict]:
        rows = run_sweep("synthetic", paper_points(), policies, args.seeds, args.rounds, e_bar=args.e_bar,
                         jobs=args.jobs, progress=tick)
        if not args.no_trace:
            rows += run_sweep("trace", paper_points(), policies, args.trace_seeds or args.seeds, args.rounds,
                              trace=args.trace, e_bar=args.e_bar, jobs=args.jobs, progress=tick)
        return rows

    rows, seconds = timed(sweep)
    sources = ["synthetic"] + ([] if args.no_trace else [f"trace {args.trace}"])
    meta = {"e_bar": args.e_bar, "seeds": args.seeds, "rounds": args.rounds, "sources": sources, "seconds": seconds,
            "jobs": args.jobs, "command": "python " + " ".join(sys.argv)}
    res = write_results(rows, args.out, meta)
    print(json.dumps({"seconds": seconds, "gains": res["gains"],
                      "paths": {k: str(v) for k, v in res["paths"].items()}}, indent=1))


if __name__ == "__main__":
    main()
