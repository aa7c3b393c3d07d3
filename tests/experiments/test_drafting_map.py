"""`gelato map`'s model: the edge's batched forward, one cell's replay, the grid and its figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gelato.experiments.drafting_map import (
    BASELINE,
    OURS,
    MapSetup,
    cell_tokens_per_second,
    drafting_map,
    measured_points,
    plot_map,
    summary_lines,
)
from gelato.experiments.trace import Trace
from gelato.system.compute import BatchedEdgeCompute, ConstantCompute

TRACE = Path(__file__).resolve().parents[2] / "docs" / "results" / "smollm2-trace.npz"


def test_batched_edge_forward_is_a_line_in_the_tokens_carried():
    edge = BatchedEdgeCompute(0.05, devices=4, saturation_tokens=5.0)
    assert BatchedEdgeCompute(0.05).forward_seconds(1, 100) == pytest.approx(0.05)  # alone, one token
    assert edge.forward_seconds(1, 0) == pytest.approx(0.05 * (5 + 4) / 6)
    assert edge.forward_seconds(3, 0) == pytest.approx(0.05 * (5 + 12) / 6)
    assert edge.forward_seconds(0, 0) == 0.0
    with pytest.raises(ValueError, match="must be > 0"):
        BatchedEdgeCompute(0.05, devices=0)


@pytest.fixture(scope="module")
def setup():
    return MapSetup(trace=Trace.load(TRACE), draft_compute=ConstantCompute(0.004), saturation_tokens=5.0, rounds=40)


def test_streaming_pays_the_round_trip_once_and_the_edge_per_token(setup):
    """The edge streaming its answer runs at about 1 / (edge time per token) once the link is short, and a
    longer round trip costs it once per answer, not once per token."""
    near = cell_tokens_per_second(setup, BASELINE, 1.0, 50.0, 1)
    far = cell_tokens_per_second(setup, BASELINE, 100.0, 50.0, 1)
    assert near == pytest.approx(20.0, rel=0.05)
    assert far < near and far > 0.5 * near  # 96-token answers: +100 ms on ~4.8 s
    autoregressive = cell_tokens_per_second(setup, "edge-autoregressive", 100.0, 50.0, 1)
    assert autoregressive < 0.5 * far  # one round trip a token


def test_map_grid_ratio_and_figure(setup, tmp_path):
    result = drafting_map(setup, rtt_ms=(2.0, 100.0), edge_ms=(5.0, 80.0), devices=(1, 4))
    assert result["devices"] == [1, 4] and result["rtt_ms"] == [2.0, 100.0]
    for n in ("1", "4"):
        cells = result["cells"][n]
        for i in range(2):
            for j in range(2):
                assert cells["ratio"][i][j] == pytest.approx(cells[OURS][i][j] / cells[BASELINE][i][j])
    # a slow edge on a short link is where drafting pays most (several tokens a forward)
    assert result["cells"]["1"]["ratio"][1][0] > 1.1
    points = [{"name": "lte", "rtt_ms": 50.0, "edge_ms": 60.0, "ratio": 0.98}]
    assert plot_map(result, points, tmp_path / "map.png").stat().st_size > 10_000
    assert len(summary_lines(result)) == 2 and "N = 4" in summary_lines(result)[1]


def test_measured_points_need_both_policies(tmp_path):
    row = {"measured": {"tokens_per_second": 10.0}}
    result = {"link": {"name": "lte", "delay_s": 0.025}, "verify_profile": {"a": 0.05, "b": 0.01, "c": 0.0, "scale": 1.0},
              "policies": {OURS: {"measured": {"tokens_per_second": 12.0}}, BASELINE: row}}
    (tmp_path / "a.json").write_text(json.dumps(result))
    (tmp_path / "b.json").write_text(json.dumps({**result, "policies": {OURS: result["policies"][OURS]}}))
    points = measured_points([tmp_path / "a.json", tmp_path / "b.json"])
    assert points == [{"name": "lte", "rtt_ms": 50.0, "edge_ms": pytest.approx(60.0), "ratio": pytest.approx(1.2)}]
