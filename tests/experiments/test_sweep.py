"""The one sweep framework (experiments/sweep.py) that the paper figures and the draft-ahead results share."""

from __future__ import annotations

import csv
import math

import pytest

from gelato.constants import E_BAR_J, within_energy_budget
from gelato.experiments import pipelining
from gelato.experiments.sweep import Point, best_within_budget, gains, read_csv, relative_gain, run_sweep, write_csv


def fake_run(item: str, point: Point, seed: int) -> dict:
    return {"item": item, "bandwidth_mhz": point.bandwidth_mhz, "seed": seed}


def test_run_sweep_visits_every_point_item_seed_point_major():
    seen = []
    recs = run_sweep(fake_run, [Point(1.0, 100.0), Point(5.0, 60.0)], ["a", "b"], range(2), progress=seen.append)
    assert [(r["bandwidth_mhz"], r["item"], r["seed"]) for r in recs] == [
        (1.0, "a", 0), (1.0, "a", 1), (1.0, "b", 0), (1.0, "b", 1),
        (5.0, "a", 0), (5.0, "a", 1), (5.0, "b", 0), (5.0, "b", 1)]
    assert seen == recs


def test_run_sweep_in_a_process_pool_keeps_the_order():
    points = [Point(1.0, 100.0), Point(2.0, 100.0)]
    assert run_sweep(fake_run, points, ["a"], [0, 1], jobs=2) == run_sweep(fake_run, points, ["a"], [0, 1])


def test_point_label():
    assert Point(5.0, 100.0).label() == "5 MHz, 100 ms"


def test_relative_gain_and_best_within_budget():
    assert relative_gain(12.5, 10.0) == pytest.approx(0.25)
    assert math.isnan(relative_gain(1.0, 0.0))
    rows = [{"p": "fast-hungry", "tokens_per_second": 30.0, "mean_round_energy": 1.3},
            {"p": "ok", "tokens_per_second": 20.0, "mean_round_energy": 1.22},
            {"p": "slow", "tokens_per_second": 10.0, "mean_round_energy": 0.5}]
    assert best_within_budget(rows, 1.2)["p"] == "ok"
    assert best_within_budget(rows, 0.1) is None


def _med(policy: str, tps: float, energy: float) -> dict:
    return {"source": "synthetic", "bandwidth_mhz": 5.0, "t_verify_ms": 100.0, "policy": policy,
            "tokens_per_second": tps, "joules_per_token": 0.1, "mean_round_energy": energy,
            "within_e_bar": within_energy_budget(energy, E_BAR_J)}  # as medians() marks it


def test_pipelining_gains_compare_against_the_best_unpipelined_run_within_the_budget():
    med = [_med(pipelining.OURS, 25.0, 1.1), _med(pipelining.STATIC_PIPELINED, 20.0, 1.0),
           _med("static-9", 40.0, 2.0), _med("static-5", 16.0, 1.1), _med("gelato-improved", 20.0, 1.2)]
    (g,) = pipelining.headline(med, E_BAR_J)
    assert g["best_unpipelined"] == "gelato-improved"  # static-9 is faster but over the budget
    assert g["gain_vs_best"] == pytest.approx(0.25)
    assert g["gain_vs_static_pipelined"] == pytest.approx(0.25)


def test_pipelining_sweep_runs_one_row_per_point_policy_seed():
    rows = pipelining.sweep_runs("synthetic", [Point(5.0, 100.0)], ["static-3", pipelining.STATIC_PIPELINED],
                                 seeds=2, rounds=20)
    assert [(r["policy"], r["seed"]) for r in rows] == [("static-3", 0), ("static-3", 1),
                                                          (pipelining.STATIC_PIPELINED, 0),
                                                          (pipelining.STATIC_PIPELINED, 1)]
    assert all(r["rounds"] == 20 and r["tokens_per_second"] > 0 for r in rows)
    med = pipelining.medians(rows, E_BAR_J)
    assert {m["policy"] for m in med} == {"static-3", pipelining.STATIC_PIPELINED}


def test_gains_pair_each_run_with_the_baselines_run_of_the_same_seed():
    def row(item: str, tps: float, jpt: float, **extra) -> dict:
        return {"source": "s", "bandwidth_mhz": 5.0, "t_verify_ms": 100.0, "variant": item,
                "tokens_per_second": tps, "joules_per_token": jpt, **extra}

    med = [row("ours", 12.0, 0.08), row("base", 10.0, 0.1), row("other", 6.0, 0.1)]
    seeds = [row("ours", 11.0, 0.1, seed=0), row("ours", 13.0, 0.1, seed=1), row("base", 10.0, 0.1, seed=0),
             row("base", 10.0, 0.05, seed=1), row("other", 1.0, 1.0, seed=0)]
    (g,) = gains(med, ["ours"], lambda at: [r for r in at if r["variant"] == "base"], seed_records=seeds)
    assert g.point == ("s", "", 5.0, 100.0) and g.base["variant"] == "base"
    assert g.tp == pytest.approx(0.2) and g.jpt == pytest.approx(-0.2)
    assert g.paired_tp == pytest.approx((0.1, 0.3)) and g.paired_jpt == pytest.approx((0.0, 1.0))
    assert gains(med, ["missing"], lambda at: at) == []


def test_write_csv_writes_what_csv_writes_and_reads_back(tmp_path):
    rows = [{"a": 1, "b": 0.1, "c": None}, {"a": 2, "d": True, "b": float("nan")}]
    plain = tmp_path / "plain.csv"
    with plain.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["a", "b", "c", "d"])
        w.writeheader()
        w.writerows(rows)
    assert write_csv(tmp_path / "ours.csv", rows).read_text() == plain.read_text()
    back = read_csv(tmp_path / "ours.csv")
    assert back[0] == {"a": 1, "b": 0.1, "c": None, "d": None} and back[1]["d"] is True
    assert write_csv(tmp_path / "cols.csv", rows, ["b", "a"]).read_text().splitlines()[0] == "b,a"
