"""The engine benchmark's arithmetic, and a small run on tiny models (figures are printed, never asserted)."""

from __future__ import annotations

import pytest

from gelato.experiments.bench_engine import analytic_speedup, fit_acceptance, run_engine_bench
from gelato.models.tiny import noisy_copy, tiny_llama
from gelato.policies.common import expected_tokens_const
from tests.conftest import random_prompts


@pytest.mark.parametrize("a,k", [(0.0, 4), (0.5, 4), (0.786, 4), (0.95, 8)])
def test_fit_acceptance_inverts_expected_tokens(a, k):
    assert fit_acceptance(expected_tokens_const(a, k), k) == pytest.approx(a, abs=1e-6)


def test_analytic_speedup_matches_leviathan_formula():
    a, k, c = 0.8, 4, 0.1
    assert analytic_speedup(a, k, c) == pytest.approx((1 - a ** 5) / ((1 - a) * (1 + 4 * 0.1)))
    assert expected_tokens_const(1.0, 3) == 4.0


def test_small_run_reports_identical_outputs():
    target = tiny_llama(vocab_size=64, seed=0)
    draft = noisy_copy(target, 0.15, seed=1)
    result = run_engine_bench(draft, target, random_prompts(2, seed=3, min_len=4), k=3, max_new_tokens=16)
    assert result.outputs_identical
    assert 1.0 <= result.mean_acceptance_length <= 4.0
    assert 0.0 <= result.draft_acceptance_rate <= 1.0 and result.verify_cost_ratio > 0


@pytest.mark.slow  # the CLI on two workloads of the fast pair
@pytest.mark.parametrize("workload", ["humaneval", "spec-bench"])
def test_cli_runs_the_named_workload_on_the_fast_pair(workload):
    import json

    from typer.testing import CliRunner

    from gelato.cli.main import app

    res = CliRunner().invoke(app, ["bench", "engine", "--workload", workload, "--prompts", "1",
                                   "--max-new-tokens", "6", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["workload"] == workload and out["prompts"] == 1 and out["outputs_identical"]


def test_cli_refuses_an_unknown_workload_in_one_line():
    from typer.testing import CliRunner

    from gelato.cli.main import app

    res = CliRunner().invoke(app, ["bench", "engine", "--workload", "poems"])
    assert res.exit_code != 0
    assert "unknown workload 'poems'" in res.output and "Traceback" not in res.output
