"""Draft-ahead results at the paper's settings: the pipelined controller against every unpipelined policy and
static-5-pipelined, on the synthetic regime and a greedy trace (any trace: ``--trace PATH``).

    python benchmarks/pipelining.py [--seeds 5] [--rounds 1000] [--jobs 2]
        [--trace docs/results/paper-reproduction/gsm8k-trace.npz] [--out docs/results/pipelining]

Writes pipelining.csv / pipelining_seeds.csv / pipelining_gains.csv / pipelining.png under --out and the
report next to it (docs/results/pipelining.md); prints the gains table as JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from gelato.constants import E_BAR_J
from gelato.experiments.pipelining import (
    PIPELINED,
    paper_points,
    sweep_runs,
    timed,
    unpipelined_policies,
    write_results,
)


def read_seed_rows(path: Path) -> list[dict]:
    """Rows of an earlier run's pipelining_seeds.csv, numbers as numbers."""
    if not path.exists():
        return []
    with path.open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k not in ("source", "policy"):
                r[k] = float(v) if any(c in v for c in ".e") else int(v)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--trace", type=Path, default=Path("docs/results/paper-reproduction/gsm8k-trace.npz"))
    ap.add_argument("--trace-seeds", type=int, default=None, help="seeds for the trace (default: --seeds)")
    ap.add_argument("--no-trace", action="store_true")
    ap.add_argument("--no-synthetic", action="store_true", help="skip the synthetic regime")
    ap.add_argument("--trace-label", default="trace", help="source name of the trace rows (e.g. trace-smollm2)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of other sources already in --out/pipelining_seeds.csv")
    ap.add_argument("--e-bar", type=float, default=E_BAR_J)
    ap.add_argument("--out", type=Path, default=Path("docs/results/pipelining"))
    args = ap.parse_args(argv)
    if not args.no_trace and not args.trace.exists():
        sys.exit(f"error: trace file not found: {args.trace}")
    policies = unpipelined_policies() + list(PIPELINED)
    done = [0]

    def tick(row: dict) -> None:
        done[0] += 1
        if done[0] % 50 == 0:
            print(f"{done[0]} runs", file=sys.stderr, flush=True)

    def sweep() -> list[dict]:
        rows = [] if args.no_synthetic else sweep_runs("synthetic", paper_points(), policies, args.seeds, args.rounds,
                                                      e_bar=args.e_bar, jobs=args.jobs, progress=tick)
        if not args.no_trace:
            traced = sweep_runs("trace", paper_points(), policies, args.trace_seeds or args.seeds, args.rounds,
                               trace=args.trace, e_bar=args.e_bar, jobs=args.jobs, progress=tick)
            rows += [{**r, "source": args.trace_label} for r in traced]
        return rows

    rows, seconds = timed(sweep)
    sources = ([] if args.no_synthetic else ["synthetic"]) + ([] if args.no_trace else [f"{args.trace_label} {args.trace}"])
    if args.merge:
        fresh = {r["source"] for r in rows}
        kept = [r for r in read_seed_rows(args.out / "pipelining_seeds.csv") if r["source"] not in fresh]
        rows = kept + rows
        sources = sorted({r["source"] for r in kept}) + sources
    meta = {"e_bar": args.e_bar, "seeds": args.seeds, "rounds": args.rounds, "sources": sources, "seconds": seconds,
            "jobs": args.jobs,
            "command": " ".join(["python benchmarks/pipelining.py", *(sys.argv[1:] if argv is None else argv)])}
    res = write_results(rows, args.out, meta)
    print(json.dumps({"seconds": seconds, "gains": res["gains"],
                      "paths": {k: str(v) for k, v in res["paths"].items()}}, indent=1))


if __name__ == "__main__":
    main()
