"""The one sweep framework of the paper figures (:mod:`gelato.experiments.paper`) and the draft-ahead results
(:mod:`gelato.experiments.pipelining`): a sweep point, the runner over (point, item, seed), gains, and the
CSV files they write.

An *item* is whatever one line of a figure is (a paper ``Variant``, a policy name); ``run(item, point, seed)``
returns one flat record per run. Gains compare medians at one point (:func:`gains`): :func:`relative_gain` of
one throughput (or J/token) over another, paired per seed where the runs are given, often against the best run
that stays within the energy budget (:func:`best_within_budget`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gelato.constants import BUDGET_TOLERANCE, within_energy_budget


@dataclass(frozen=True)
class Point:
    """One operating point of a sweep: the uplink bandwidth and the edge's verification time."""

    bandwidth_mhz: float
    t_verify_ms: float

    def label(self) -> str:
        return f"{self.bandwidth_mhz:g} MHz, {self.t_verify_ms:g} ms"


def _call(job: tuple) -> dict:
    run, item, point, seed = job
    return run(item, point, seed)


def run_sweep(run: Callable[[Any, Point, int], dict], points: Iterable[Point], items: Sequence[Any],
              seeds: Iterable[int], jobs: int = 1, progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Every (point, item, seed), point-major; one record per run, in that order.

    ``jobs > 1`` runs them in a process pool (``run`` must then pickle: a module-level function or a
    ``functools.partial`` of one). ``progress`` sees each record as it arrives."""
    seeds = list(seeds)
    work = [(run, item, point, seed) for point in points for item in items for seed in seeds]
    records: list[dict] = []
    if jobs <= 1:
        results: Iterable[dict] = map(_call, work)
        for rec in results:
            records.append(rec)
            if progress is not None:
                progress(rec)
        return records
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for rec in pool.map(_call, work):
            records.append(rec)
            if progress is not None:
                progress(rec)
    return records


def relative_gain(new: float, old: float) -> float:
    """``new / old - 1`` (0.25: 25% more); NaN when ``old`` is not positive."""
    return float(new) / float(old) - 1.0 if float(old) > 0 else math.nan


def best_within_budget(rows: Iterable[dict], e_bar: float, tolerance: float = BUDGET_TOLERANCE,
                       metric: str = "tokens_per_second") -> dict | None:
    """The row with the highest ``metric`` among those whose ``mean_round_energy`` is within the budget."""
    ok = [r for r in rows if within_energy_budget(r["mean_round_energy"], e_bar, tolerance)]
    return max(ok, key=lambda r: float(r[metric])) if ok else None


def point_key(r: dict) -> tuple:
    """Where a row ran: (source, sweep, bandwidth MHz, T_V ms); rows without a sweep name share ``""``."""
    return (r["source"], r.get("sweep", ""), float(r["bandwidth_mhz"]), float(r["t_verify_ms"]))


def by_point(rows: Iterable[dict]) -> dict[tuple, list[dict]]:
    """Rows grouped by :func:`point_key`, points and rows in their first-seen order."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(point_key(r), []).append(r)
    return out


@dataclass(frozen=True)
class Gain:
    """``ours``' gain over ``base`` (two median rows at one point): :func:`relative_gain` of tokens/s (``tp``:
    positive is faster) and of J/token (``jpt``: negative is cheaper); ``paired_tp`` / ``paired_jpt``: the same
    per seed, each run against the other's run with the same seed (same fading), in seed order."""

    point: tuple
    ours: dict
    base: dict
    tp: float
    jpt: float
    paired_tp: tuple[float, ...] = ()
    paired_jpt: tuple[float, ...] = ()


def gains(rows: Iterable[dict], ours: Sequence[str], against: Callable[[list[dict]], Iterable[dict]],
          item: str = "variant", seed_records: Iterable[dict] | None = None) -> list[Gain]:
    """Each of ``ours`` (item names) against each row ``against(rows at the point)`` picks, at every point.

    ``rows`` are medians with ``item``, ``tokens_per_second`` and ``joules_per_token``; with ``seed_records``
    (one row per run, with ``seed``) each gain also carries its paired per-seed gains. Points, ``ours`` and the
    rows picked keep their order."""
    per_seed = {(*point_key(r), r[item], r["seed"]): r for r in seed_records or ()}
    out = []
    for key, at in by_point(rows).items():
        for name in ours:
            mine = next((r for r in at if r[item] == name), None)
            if mine is None:
                continue
            seeds = sorted({k[-1] for k in per_seed if k[:-2] == key and k[-2] == name})
            for base in against(at):
                pairs = [(per_seed[(*key, name, s)], per_seed[(*key, base[item], s)]) for s in seeds
                         if (*key, base[item], s) in per_seed]
                out.append(Gain(key, mine, base, _gain(mine, base, "tokens_per_second"),
                                _gain(mine, base, "joules_per_token"),
                                tuple(_gain(a, b, "tokens_per_second") for a, b in pairs),
                                tuple(_gain(a, b, "joules_per_token") for a, b in pairs)))
    return out


def _gain(new: dict, old: dict, metric: str) -> float:
    return relative_gain(float(new[metric]), float(old[metric]))


def write_csv(path: str | Path, rows: Sequence[dict], columns: Sequence[str] | None = None) -> Path:
    """``rows`` as CSV (parent folders made): ``columns`` in order (default: every key, first-seen order; others
    left out); None as an empty cell, floats as ``repr`` (round-trip exact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in columns})
    return path


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return v


def _parse(v: str) -> Any:
    if v == "":
        return None
    if v in ("True", "False"):
        return v == "True"
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def read_csv(path: str | Path) -> list[dict]:
    """A CSV written by :func:`write_csv`, with numbers, booleans and None parsed back."""
    with Path(path).open(newline="") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]
