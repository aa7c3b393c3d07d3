"""The one sweep framework of the paper figures (:mod:`gelato.experiments.paper`) and the draft-ahead results
(:mod:`gelato.experiments.pipelining`): a sweep point, the runner over (point, item, seed), and gains.

An *item* is whatever one line of a figure is (a paper ``Variant``, a policy name); ``run(item, point, seed)``
returns one flat record per run. Gains compare medians: :func:`relative_gain` of one throughput over another,
against the best run that stays within the energy budget (:func:`best_within_budget`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
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
