"""Every script under ``benchmarks/`` runs at tiny sizes, so a change that breaks one fails here, not months later.

Scripts that start processes of their own (an edge process, a Ray cluster) run as subprocesses; the others run
in process through their ``main(argv)``. Each asserts on what the script reports: its JSON has the expected keys
and positive figures, and the outputs that must equal target-only decoding do. Sizes come from each script's own
arguments; nothing here reaches inside a script.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
SMOKED = {"bench_api.py", "bench_api_concurrency.py", "bench_cluster.py", "bench_edge.py", "bench_link_airtime.py",
          "bench_memory.py", "cluster_autoscale.py", "draft_truncation.py", "pipelining.py", "sampling_answer.py",
          "sampling_payload.py"}
# a random Llama as small as bench_edge / bench_cluster build it, and few rounds
TINY_EDGE = ["--vocab", "512", "--hidden", "32", "--layers", "1", "--rounds", "6", "--single-rounds", "12"]


def test_every_benchmark_has_a_smoke_run():
    assert {p.name for p in BENCH.glob("*.py")} == SMOKED, "a new benchmark needs its smoke run here"


def run_script(name: str, *args: str, timeout: float = 600) -> str:
    """The script's stdout, run as ``python benchmarks/NAME ARGS`` on this checkout's sources."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
           "GELATO_THREADS": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(BENCH / name), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"{name} failed:\n{r.stderr[-4000:]}"
    return r.stdout


def last_json(stdout: str) -> dict:
    """The last line that is a JSON object (Ray's workers may log onto the same stdout)."""
    return json.loads(next(line for line in reversed(stdout.splitlines()) if line.startswith("{")))


def run_main(name: str, *args: str) -> None:
    """The script's ``main(argv)``, in this process."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{Path(name).stem}", BENCH / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(list(args))


def positive(d: dict, *keys: str) -> None:
    for k in keys:
        assert d[k] > 0, (k, d[k])


# --------------------------------------------------------------------------- in process


@pytest.mark.slow
def test_bench_api(tmp_path):
    out = tmp_path / "api.json"
    run_main("bench_api.py", "--requests", "1", "--max-tokens", "4", "--concurrency", "2", "--json", str(out))
    report = json.loads(out.read_text())
    positive(report["median"], "direct_s", "http_whole_s", "http_stream_first_chunk_s", "http_stream_total_s",
             "http_2_concurrent_wall_s")
    assert len(report["samples"]["direct_s"]) == 1


def test_bench_api_concurrency(capsys):
    run_main("bench_api_concurrency.py", "--max-tokens", "4")
    out = last_json(capsys.readouterr().out)
    assert out["batched"] is True and 0 < out["sequential_tokens"] == out["concurrent_tokens"] <= 4 * 4
    positive(out, "sequential_s", "concurrent_s", "speedup")


def test_bench_link_airtime(capsys):
    run_main("bench_link_airtime.py", "--tokens", "8", "--json")
    out = last_json(capsys.readouterr().out)
    assert out["identical"] is True and out["rounds"] > 0 and 0 < out["tokens"] <= 8
    for direction in ("uplink", "downlink"):
        d = out[direction]
        positive(d, "rate_bps", "payload_bytes", "modelled_s", "measured_s")
        assert d["wire_bytes"] > d["payload_bytes"]  # the framing the model does not charge


@pytest.mark.slow
def test_draft_truncation(tmp_path, capsys):
    run_main("draft_truncation.py", "--max-new-tokens", "6", "--out", str(tmp_path))
    result = json.loads((tmp_path / "draft-truncation.json").read_text())
    assert [r["k"] for r in result["rows"]] == [1, 2, 4, 8, 16, 24, 32, 64, 256, 0] and result["positions"] > 0
    for r in result["rows"]:
        positive(r, "bytes_per_drafted_token", "mean_support")
        assert 0 < r["acceptance"] <= 1
    assert (tmp_path / "draft-truncation.png").stat().st_size > 0 and "| whole q |" in capsys.readouterr().out


@pytest.mark.slow
def test_sampling_payload(tmp_path, capsys):
    run_main("sampling_payload.py", "--max-new-tokens", "6", "--out", str(tmp_path))
    result = json.loads((tmp_path / "sampling-payload.json").read_text())
    assert [r["temperature"] for r in result["results"]] == [1.0, 0.7]
    for r in result["results"]:
        assert r["positions"] > 0 and 0 < r["acceptance"]["rounded"] <= 1
        positive(r["up_bytes_per_drafted_token"], "draws", "compact_k24")
        fallbacks = [row["fallback_per_rejection"] for row in r["rows"]]
        assert [row["m"] for row in r["rows"]] == [1, 2, 4, 8, 16, 32] and fallbacks == sorted(fallbacks, reverse=True)
    assert "| 16 |" in capsys.readouterr().out


@pytest.mark.slow
def test_pipelining(tmp_path, capsys):
    out = tmp_path / "pipelining"
    run_main("pipelining.py", "--seeds", "1", "--rounds", "20", "--no-trace", "--out", str(out))
    report = json.loads(capsys.readouterr().out)
    assert report["gains"] and all(g["source"] == "synthetic" and g["ours_tps"] > 0 for g in report["gains"])
    for path in report["paths"].values():
        assert Path(path).stat().st_size > 0


def test_sampling_answer(capsys):
    run_main("sampling_answer.py", "--max-new-tokens", "8")
    out = last_json(capsys.readouterr().out)
    assert out["tokens"] == 8 and 0 <= out["acceptance"] <= 1
    positive(out, "drafted_sent", "uplink_bytes_per_drafted_token", "measured_tok_s", "modelled_tok_s")


# --------------------------------------------------------------------------- processes of their own


@pytest.mark.slow
def test_bench_edge():
    report = json.loads(run_script("bench_edge.py", "--json", *TINY_EDGE, "--devices", "1,2", "--contexts", "16"))
    positive(report, "overhead_ms_per_round", "wire_over_payload_up", "wire_over_payload_down", "fairness_p99_ratio")
    for mode in ("unbatched", "batched"):
        assert set(report["rounds_per_s"][mode]) == {"1", "2"} and min(report["rounds_per_s"][mode].values()) > 0
        assert report["context_scaling"][mode]["16"]["rounds_per_s"] > 0
    assert report["wire_bytes_per_round"]["up"]["payload"] > 0


@pytest.mark.slow
def test_bench_memory():
    out = last_json(run_script("bench_memory.py", "--json", "--kv-memory", "64MiB", "--cancelled-opens", "4",
                               "--long-prompt", "200", "--fair-rounds", "12"))
    assert out["held_slots_after_cancelled_opens"] == 0 and out["kv_within_budget"] is True
    assert out["sessions_opened"] == out["sessions_closed"] > 0
    positive(out, "rss_idle_bytes", "rss_after_over_idle", "fairness_p99_ratio", "kv_peak_bytes")


@pytest.mark.slow
def test_bench_cluster(tmp_path):
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install -e '.[cluster]'")
    out = tmp_path / "cluster.json"  # the report's file: Ray's workers log onto the script's stdout
    run_script("bench_cluster.py", "--out", str(out), *TINY_EDGE, "--devices", "2", "--blocks", "1",
               "--block-rounds", "6", "--replicas", "1")
    report = json.loads(out.read_text())
    for part in ("direct_edge", "cluster_1"):
        positive(report[part], "overhead_ms_per_round")
        positive(report[part]["devices"], "rounds_per_s")
    assert set(report["ingress_extra_ms_per_round"]) == {"cluster_1"}


@pytest.mark.slow
def test_cluster_autoscale():
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install -e '.[cluster]'")
    out = last_json(run_script("cluster_autoscale.py", "--seconds", "5", "--devices", "2", "--max-new-tokens", "16",
                               "--every", "2"))
    assert out["mismatches"] == [] and sum(out["generations"]) > 0 and out["final_replicas"] >= 1
