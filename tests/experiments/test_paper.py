"""The paper reproduction: sweep artifacts, gains, medians, the fig2 fit, the report (fast: small sweeps)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from gelato.experiments.acceptance import acceptance_fit, bin_acceptance, fit_exp_c, trace_acceptance_samples
from gelato.experiments.paper import (
    PaperSource,
    Variant,
    aggregate,
    default_variants,
    make_sweep,
    run_variant,
)
from gelato.experiments.report import (
    ARTIFACT_DIR,
    GAIN_COLUMNS,
    IVP_COLUMNS,
    REPORT_NAME,
    gains,
    improved_vs_paper,
    pct_gain,
    produce_fig2,
    produce_sweep,
    read_csv,
    write_report,
)
from gelato.experiments.sweep import Point
from gelato.experiments.trace import PromptTrace, Trace
from gelato.system.compute import ModelDims

SMALL_VARIANTS = [
    Variant("gelato-paper", "gelato-paper", 0.99995, (("V", 100.0),), "gelato"),
    Variant("gelato-improved", "gelato-improved", 0.99995, (), "gelato"),
    Variant("static-5@0.99995", "static-5", 0.99995, (), "paper-baseline"),
    Variant("static-7@0.99998", "static-7", 0.99998, (), "paper-baseline"),
    Variant("pmin", "pmin", 0.99995, (), "baseline"),
]


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper") / ARTIFACT_DIR
    sweep = make_sweep("fig5ab", [Point(1.0, 100.0), Point(10.0, 100.0)])
    source = PaperSource("synthetic")
    paths = produce_sweep(out, sweep, source, SMALL_VARIANTS, seeds=[0], rounds=200)
    return out, paths


def _header(path) -> list[str]:
    with open(path, newline="") as f:
        return next(csv.reader(f))


def test_small_sweep_writes_csv_png_markdown(small_sweep):
    out, paths = small_sweep
    for key in ("summary", "seeds", "gains", "improved_vs_paper", "png", "md"):
        assert paths[key].exists() and paths[key].stat().st_size > 0, key
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["png"].stat().st_size > 20_000  # a real figure, not an empty canvas

    summary = read_csv(paths["summary"])
    cols = _header(paths["summary"])
    for c in ("source", "sweep", "bandwidth_mhz", "t_verify_ms", "variant", "group", "top_p", "seeds", "rounds",
              "tokens_per_second", "tokens_per_second_min", "tokens_per_second_max", "joules_per_token",
              "joules_per_token_min", "joules_per_token_max", "mean_round_energy", "energy_ok_seeds"):
        assert c in cols, c
    assert len(summary) == 2 * len(SMALL_VARIANTS)
    assert {r["bandwidth_mhz"] for r in summary} == {1.0, 10.0}
    assert all(r["rounds"] == 200 and r["seeds"] == 1 for r in summary)
    # 1 seed: median = min = max = the run's own value
    seeds = read_csv(paths["seeds"])
    assert len(seeds) == len(summary)
    for r in summary:
        s = next(x for x in seeds if x["variant"] == r["variant"] and x["bandwidth_mhz"] == r["bandwidth_mhz"])
        assert r["tokens_per_second"] == pytest.approx(s["tokens_per_second"])
        assert r["tokens_per_second_min"] == r["tokens_per_second_max"] == pytest.approx(s["tokens_per_second"])
        assert s["tokens_per_second"] > 0
    # paper top-p 0.99998 payloads are 2.5x larger: slower at 1 MHz than the same static g at 0.99995 would be
    s5 = next(r for r in summary if r["variant"] == "static-5@0.99995" and r["bandwidth_mhz"] == 1.0)
    s7 = next(r for r in summary if r["variant"] == "static-7@0.99998" and r["bandwidth_mhz"] == 1.0)
    assert s7["uplink_bytes_per_token"] > 1.5 * s5["uplink_bytes_per_token"]

    assert tuple(_header(paths["gains"])) == GAIN_COLUMNS
    g = read_csv(paths["gains"])
    assert len(g) == 2 * 2 * 3  # points x GELATO variants x baselines
    assert tuple(_header(paths["improved_vs_paper"])) == IVP_COLUMNS
    assert len(read_csv(paths["improved_vs_paper"])) == 2

    md = paths["md"].read_text()
    assert "| policy | 1 MHz | 10 MHz |" in md
    assert "fig5ab_synthetic.png" in md
    assert "Headline gains" in md and "`gelato-improved`: gain over every baseline" in md
    assert "+64.98%" in md  # the paper's reported number sits next to ours at 1 MHz


def test_gains_of_the_sweep_match_its_medians(small_sweep):
    out, paths = small_sweep
    summary = read_csv(paths["summary"])
    for row in read_csv(paths["gains"]):
        gr = next(r for r in summary if r["variant"] == row["gelato"] and r["bandwidth_mhz"] == row["bandwidth_mhz"])
        br = next(r for r in summary if r["variant"] == row["baseline"] and r["bandwidth_mhz"] == row["bandwidth_mhz"])
        assert row["tp_gain_pct"] == pytest.approx(100 * (gr["tokens_per_second"] / br["tokens_per_second"] - 1))
        assert row["jpt_gain_pct"] == pytest.approx(100 * (gr["joules_per_token"] / br["joules_per_token"] - 1))


def test_report_assembles_from_artifacts(small_sweep):
    out, _ = small_sweep
    produce_fig2(out, None)
    path = write_report(out.parent)
    assert path.name == REPORT_NAME
    text = path.read_text()
    for heading in ("## 1. The re-simulation's findings next to ours", "## 2. gelato-improved against gelato-paper",
                    "## 3. Where our numbers differ", "## 4. Fig. 5(a, b)", "## 7. Fig. 2"):
        assert heading in text, heading
    assert "+66% throughput at 1 MHz" in text  # the re-simulation's finding quoted next to ours
    assert f"{ARTIFACT_DIR}/fig5ab_synthetic.png" in text
    assert "Not run: trace-paper, trace-own-pair" in text


def _row(variant, group, tp, jpt, energy=1.0, bw=1.0, seeds=1, sweep="fig5ab"):
    return {"source": "synthetic", "sweep": sweep, "bandwidth_mhz": bw, "t_verify_ms": 100.0, "variant": variant,
            "policy": variant, "group": group, "top_p": 0.99995, "seeds": seeds, "rounds": 1000,
            "tokens_per_second": tp, "joules_per_token": jpt, "mean_round_energy": energy,
            "mean_round_energy_max": energy, "energy_ok_seeds": seeds}


def test_gains_hand_built_table():
    table = [_row("gelato-paper", "gelato", 12.0, 0.8),
             _row("static-5@0.99995", "paper-baseline", 10.0, 1.0),
             _row("static-9@0.99998", "paper-baseline", 8.0, 1.6, energy=1.5),
             _row("dssd", "paper-baseline", 15.0, 0.5),
             _row("pmin", "baseline", 16.0, 0.4)]
    rows = {r["baseline"]: r for r in gains(table, gelato=["gelato-paper"])}
    assert set(rows) == {"static-5@0.99995", "static-9@0.99998", "dssd", "pmin"}
    assert rows["static-5@0.99995"]["tp_gain_pct"] == pytest.approx(20.0)
    assert rows["static-5@0.99995"]["jpt_gain_pct"] == pytest.approx(-20.0)
    assert rows["static-9@0.99998"]["tp_gain_pct"] == pytest.approx(50.0)
    assert rows["static-9@0.99998"]["jpt_gain_pct"] == pytest.approx(-50.0)
    assert rows["dssd"]["tp_gain_pct"] == pytest.approx(-20.0)
    # best / worst baseline per metric: among the paper's set, and among all
    assert rows["dssd"]["tp_rank_paper"] == "best" and rows["static-9@0.99998"]["tp_rank_paper"] == "worst"
    assert rows["dssd"]["jpt_rank_paper"] == "best" and rows["static-9@0.99998"]["jpt_rank_paper"] == "worst"
    assert rows["static-5@0.99995"]["tp_rank_paper"] == ""
    assert rows["pmin"]["tp_rank_all"] == "best" and rows["pmin"]["tp_rank_paper"] == ""
    assert rows["dssd"]["tp_rank_all"] == ""
    assert rows["static-9@0.99998"]["baseline_energy_ok"] is False
    assert rows["static-5@0.99995"]["baseline_energy_ok"] is True
    # the paper's reported gains ride along at 1 MHz
    assert rows["dssd"]["paper_tp_gain_pct"] == 64.98 and rows["dssd"]["paper_jpt_gain_pct"] == -47.47
    assert math.isnan(pct_gain(1.0, 0.0))


def test_gains_paired_per_seed_range():
    table = [_row("gelato-paper", "gelato", 12.0, 0.8, seeds=2), _row("dssd", "paper-baseline", 10.0, 1.0, seeds=2)]
    seeds = [dict(_row("gelato-paper", "gelato", 11.0, 0.9), seed=0),
             dict(_row("gelato-paper", "gelato", 13.0, 0.7), seed=1),
             dict(_row("dssd", "paper-baseline", 10.0, 1.0), seed=0),
             dict(_row("dssd", "paper-baseline", 10.0, 1.0), seed=1)]
    (row,) = gains(table, gelato=["gelato-paper"], seed_records=seeds)
    assert row["tp_gain_pct_seed_min"] == pytest.approx(10.0)
    assert row["tp_gain_pct_seed_max"] == pytest.approx(30.0)
    assert row["jpt_gain_pct_seed_min"] == pytest.approx(-30.0)
    assert row["jpt_gain_pct_seed_max"] == pytest.approx(-10.0)


def test_improved_vs_paper_target():
    def table(tp_improved, energy_improved):
        return [_row("gelato-paper", "gelato", 10.0, 0.5, energy=1.0),
                _row("gelato-improved", "gelato", tp_improved, 0.5, energy=energy_improved)]

    (ok,) = improved_vs_paper(table(11.6, 1.2))
    assert ok["tp_gain_pct"] == pytest.approx(16.0) and ok["target_met"] is True
    (too_hungry,) = improved_vs_paper(table(11.6, 1.23))  # above 1.2 * 1.02
    assert too_hungry["improved_energy_ok"] is False and too_hungry["target_met"] is False
    (too_slow,) = improved_vs_paper(table(11.4, 1.0))
    assert too_slow["tp_gain_pct"] == pytest.approx(14.0) and too_slow["target_met"] is False


def _rec(variant, seed, tp, bw=1.0):
    return {"source": "synthetic", "sweep": "fig5ab", "bandwidth_mhz": bw, "t_verify_ms": 100.0, "variant": variant,
            "policy": variant, "group": "gelato", "top_p": 0.99995, "seed": seed, "rounds": 1000,
            "tokens_per_second": tp, "joules_per_token": 1.0 / tp, "energy_ok": tp < 20}


def test_medians_across_seeds():
    recs = [_rec("a", 0, 1.0), _rec("a", 1, 5.0), _rec("a", 2, 3.0),
            _rec("b", 0, 1.0), _rec("b", 1, 2.0), _rec("b", 2, 3.0), _rec("b", 3, 30.0),
            _rec("a", 0, 7.0, bw=2.0)]
    rows = {(r["variant"], r["bandwidth_mhz"]): r
            for r in aggregate(recs, metrics=("tokens_per_second", "joules_per_token"))}
    a = rows[("a", 1.0)]
    assert (a["tokens_per_second"], a["tokens_per_second_min"], a["tokens_per_second_max"]) == (3.0, 1.0, 5.0)
    assert a["seeds"] == 3
    assert a["joules_per_token"] == pytest.approx(1 / 3)  # the median of each metric, not 1 / median
    b = rows[("b", 1.0)]
    assert b["tokens_per_second"] == pytest.approx(2.5)  # even count: mean of the middle two
    assert b["tokens_per_second_max"] == 30.0
    assert b["energy_ok_seeds"] == 3
    assert rows[("a", 2.0)]["tokens_per_second"] == 7.0  # points are kept apart


@pytest.mark.parametrize("c_true", [0.35, 1.2])
def test_fit_recovers_known_c(c_true):
    rng = np.random.default_rng(1)
    h = rng.uniform(0.0, 3.0, 20_000)
    accepted = (rng.random(h.size) < np.exp(-c_true * h)).astype(float)
    c = fit_exp_c(h, accepted)
    assert c == pytest.approx(c_true, rel=0.06)
    # and a wrong c fits worse
    loss = lambda k: float(np.sum((accepted - np.exp(-k * h)) ** 2))  # noqa: E731
    assert loss(c) < loss(c_true * 1.5) and loss(c) < loss(c_true / 1.5)


def test_binned_r2_tells_an_exponential_map_from_none():
    rng = np.random.default_rng(2)
    h = rng.uniform(0.0, 3.0, 20_000)
    exp_fit = acceptance_fit("exp", h, (rng.random(h.size) < np.exp(-0.8 * h)).astype(float))
    flat_fit = acceptance_fit("flat", h, (rng.random(h.size) < 0.7).astype(float))
    assert exp_fit.binned_r2 > 0.9
    assert flat_fit.binned_r2 < 0.1
    assert flat_fit.mean_acceptance == pytest.approx(0.7, abs=0.02)


def test_bin_acceptance_by_tenth_of_a_nat():
    h = np.array([0.01, 0.05, 0.12, 0.19, 0.31, 0.31])
    acc = np.array([1, 0, 1, 1, 0, 0], dtype=float)
    bins = bin_acceptance(h, acc, 0.1)
    assert [b["h_lo"] for b in bins] == pytest.approx([0.0, 0.1, 0.3])
    assert [b["count"] for b in bins] == [2, 2, 2]
    assert [b["acceptance"] for b in bins] == [0.5, 1.0, 0.0]


def test_trace_acceptance_samples_use_first_rollout_token():
    k = 15
    target = np.array([5, 6, 7], dtype=np.int32)
    draft = np.zeros((3, k), dtype=np.int32)
    draft[:, 0] = [5, 9, 7]  # accepted, rejected, accepted
    ent = np.full((3, k), 9.0, dtype=np.float32)
    ent[:, 0] = [0.1, 2.0, 0.3]
    p = PromptTrace([1, 2], target, draft, ent, np.ones((3, k), np.float32), np.ones((3, k), np.float32),
                    np.ones((2, 3, k), np.int32))
    h, acc = trace_acceptance_samples(Trace({"k_max": k, "top_ps": [0.99995, 0.99998]}, [p]))
    assert h.tolist() == pytest.approx([0.1, 2.0, 0.3])
    assert acc.tolist() == [1.0, 0.0, 1.0]


def test_budget_cap_limits_long_schedules():
    variant = next(v for v in default_variants() if v.label == "hf-confidence")
    rec = run_variant(PaperSource("synthetic"), variant, Point(10.0, 100.0), 0, rounds=30, keep_rows=True)
    assert max(r["budget"] for r in rec["rows"]) == 15  # it asks for 20: the round loop's ceiling is g_max


def test_own_pair_charging_uses_the_pairs_dims(tmp_path):
    draft = tmp_path / "draft"
    draft.mkdir()
    (draft / "config.json").write_text(json.dumps({"num_hidden_layers": 2, "hidden_size": 64,
                                                    "intermediate_size": 128, "vocab_size": 1000}))
    k = 15
    p = PromptTrace([1], np.array([3, 4], np.int32), np.zeros((2, k), np.int32), np.zeros((2, k), np.float32),
                    np.ones((2, k), np.float32), np.ones((2, k), np.float32), np.ones((2, 2, k), np.int32))
    trace = Trace({"k_max": k, "top_ps": [0.99995, 0.99998], "draft": str(draft)}, [p])
    src = PaperSource("trace", "own-pair", trace=trace)
    assert src.key == "trace-own-pair" and src.draft_dir == draft
    static = Variant("static-7@0.99995", "static-7", 0.99995)
    cfg = src.system_config(static, Point(1.0, 100.0))
    assert cfg.draft.model_dims() == ModelDims(2, 64, 128)
    assert cfg.payload.b_index == 10 and cfg.payload.mode == "paper_topp"
    dssd = src.system_config(Variant("dssd", "dssd"), Point(1.0, 100.0))
    assert dssd.payload.mode == "dssd" and dssd.payload.dssd_target_support == 1000
    paper = PaperSource("trace", "paper", trace=trace).system_config(static, Point(1.0, 100.0))
    assert paper.draft.model_dims() == ModelDims(24, 896, 4864) and paper.payload.b_index == 18
    with pytest.raises(ValueError):
        PaperSource("synthetic", "own-pair")
    with pytest.raises(ValueError, match="k_max"):
        PaperSource("trace", trace=Trace({"k_max": 4, "top_ps": [0.99995, 0.99998]}, [p]))


def test_cli_fig2_and_errors(tmp_path):
    from typer.testing import CliRunner

    from gelato.cli.paper_cmd import app

    runner = CliRunner()
    r = runner.invoke(app, ["fig2", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "fig2.png").exists() and (tmp_path / "fig2.md").exists()
    (fit,) = json.loads((tmp_path / "fig2.json").read_text())
    assert fit["name"] == "synthetic regime" and fit["c"] == pytest.approx(0.35, rel=0.1)
    assert fit["mean_acceptance"] == pytest.approx(0.9, abs=0.01)
    r = runner.invoke(app, ["fig5ab", "--source", "trace", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--trace" in r.output
    r = runner.invoke(app, ["report", "--out", str(tmp_path / "nothing")])
    assert r.exit_code == 2
