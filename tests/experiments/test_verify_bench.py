"""``gelato bench verify``: structure and equivalence checks only (never timings: those are the benchmark's)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gelato.cli.bench_cmd import app
from gelato.experiments.verify_bench import run_verify_bench
from gelato.models.tiny import tiny_llama


def test_bench_times_every_size_on_every_cpu_path_and_checks_logits(tiny_target):
    bench = run_verify_bench(tiny_target, sizes=(1, 3, 16), context=20, reps=2, warmup=1)
    assert bench.paths == ["eager", "static"]  # no graph path without cuda
    assert [(t.path, t.tokens) for t in bench.timings] == [("eager", 1), ("eager", 3), ("eager", 16),
                                                             ("static", 1), ("static", 3), ("static", 16)]
    for t in bench.timings:
        assert t.median_ms > 0 and t.p10_ms <= t.p90_ms
        assert t.argmax_equal and t.max_abs_diff < 1e-4
    assert bench.median("static", 3) is not None and bench.median("graph", 3) is None


@pytest.mark.parametrize("kwargs, needle", [
    ({"paths": ["graph"]}, "needs --device cuda"),
    ({"paths": ["warp"]}, "bad benchmark arguments"),
    ({"sizes": [0]}, "bad benchmark arguments"),
])
def test_bench_refuses_bad_arguments(tiny_target, kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        run_verify_bench(tiny_target, **kwargs)


@pytest.fixture(scope="module")
def target_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "target"
    tiny_llama(vocab_size=64, hidden=32, layers=2, seed=0).save_pretrained(path)
    return path


def test_cli_prints_json_with_every_size(target_dir, tmp_path):
    out = tmp_path / "verify.json"
    result = CliRunner().invoke(app, ["verify", "--target", str(target_dir), "--sizes", "1,2", "--context", "8",
                                      "--reps", "2", "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data == json.loads(out.read_text())
    assert {(t["path"], t["tokens"]) for t in data["timings"]} == {(p, n) for p in ("eager", "static") for n in (1, 2)}


@pytest.mark.parametrize("args, needle", [
    (["--sizes", "1,x"], "--sizes"),
    (["--paths", "graph"], "needs --device cuda"),
    (["--device", "cuda"], "CUDA is not available"),
])
def test_cli_bad_input_is_one_line(target_dir, args, needle):
    import torch
    if needle == "CUDA is not available" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = CliRunner().invoke(app, ["verify", "--target", str(target_dir), "--reps", "1", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1, result.output
    assert needle in result.output, result.output
