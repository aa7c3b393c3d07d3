"""gelato run (YAML or flags), the runner's accounting, and the demo pipeline on a tiny pair."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gelato.cli.main import app
from gelato.experiments.config import RunConfig
from gelato.experiments.demo import conclusion, run_demo
from gelato.experiments.execute import execute
from gelato.models.tiny import noisy_copy, tiny_llama
from tests.conftest import random_prompts


def test_execute_synthetic_accounting(tmp_path):
    cfg = RunConfig(source="synthetic", policy="gelato-paper", rounds=300, bandwidth_mhz=2.0, out=tmp_path)
    result = execute(cfg)
    rows, s = result.rows, result.summary
    assert len(rows) == s["rounds"] == 300
    assert s["device_joules"] == pytest.approx(sum(r["e_round"] for r in rows))
    assert s["modelled_seconds"] == pytest.approx(sum(r["t_round"] for r in rows))
    assert s["tokens"] == sum(r["accepted"] + 1 for r in rows)  # synthetic answers are never truncated mid-round
    assert all(r["sent"] <= r["drafted"] <= r["budget"] for r in rows)
    lines = (tmp_path / "gelato-paper.rounds.jsonl").read_text().splitlines()
    assert len(lines) == 300 and "policy_queue" in json.loads(lines[0])
    assert json.loads((tmp_path / "gelato-paper.summary.json").read_text())["rounds"] == 300


def test_run_cli_from_yaml_with_flag_override(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("source: synthetic\npolicy: static-5\nrounds: 150\nbandwidth_mhz: 4\nname: yaml-run\n")
    result = CliRunner().invoke(app, ["run", "-c", str(config), "--rounds", "120", "--out", str(tmp_path / "o"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rounds"] == 120 and summary["config"]["bandwidth_mhz"] == 4
    assert 4.5 < summary["mean_budget"] <= 5.0  # 5 every round except those clipped at an answer's end


@pytest.mark.parametrize("policy, payload", [("static-5", "compact"), ("dssd", "dssd")])
def test_run_cli_defaults_to_the_demos_payload(tmp_path, policy, payload):
    """`gelato run` bills the same uplink as `gelato demo` (ids only) unless the policy has its own."""
    result = CliRunner().invoke(app, ["run", "--source", "synthetic", "--policy", policy, "--rounds", "10", "--out",
                                      str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["config"]["payload"] == (payload if policy == "static-5" else None)


@pytest.mark.parametrize("args,message", [
    (["--source", "trace"], "needs a trace file"),
    (["--source", "synthetic", "--policy", "nope"], "unknown policy 'nope'"),
    (["--source", "synthetic", "--system", "mars"], "invalid run configuration"),
])
def test_run_cli_bad_input(tmp_path, args, message):
    result = CliRunner().invoke(app, ["run", *args, "--rounds", "10", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.output


def test_bad_yaml_is_reported(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("source: synthetic\nrounds: -4\n")
    result = CliRunner().invoke(app, ["run", "-c", str(config)])
    assert result.exit_code == 2 and "rounds" in result.output


class _Tok:
    eos_token_id = None


@pytest.mark.slow  # records a trace and runs the whole demo
def test_demo_pipeline_is_lossless_and_writes_outputs(tmp_path):
    target = tiny_llama(vocab_size=64, seed=0)
    draft = noisy_copy(target, 0.15, seed=1)
    prompts = [(f"p{i}", p) for i, p in enumerate(random_prompts(2, seed=5, min_len=4))]
    outcome = run_demo(draft, target, _Tok(), prompts, tmp_path, max_new_tokens=24)
    assert outcome.lossless
    assert outcome.figure.exists() and outcome.table_csv.exists()
    summaries = {name: r.summary for name, r in outcome.results.items()}
    assert summaries["edge-autoregressive"]["mean_acceptance_length"] == 1.0
    assert summaries["static-5"]["mean_acceptance_length"] > 1.0
    assert {"static-1", "static-2"} <= set(summaries)  # the short fixed lengths GELATO competes with
    for s in summaries.values():
        assert s["tokens"] == 48
    # the conclusion names the fastest policy within the budget, computed from the same numbers
    fastest = max((n for n in summaries if summaries[n]["energy_constraint_met"]),
                  key=lambda n: summaries[n]["tokens_per_second"])
    assert conclusion(outcome.results, 1.2).startswith(f"fastest within the 1.2 J/round budget: {fastest} (")
    # energy is charged for the draft really used; the paper's profile (a 0.5B draft) stays selectable
    paper = run_demo(draft, target, _Tok(), prompts, tmp_path / "paper", max_new_tokens=24, live_check=(),
                     device_profile="paper")
    for name in ("static-5", "gelato-paper"):
        assert summaries[name]["joules_per_token"] < paper.results[name].summary["joules_per_token"]
    with pytest.raises(ValueError, match="device profile"):
        run_demo(draft, target, _Tok(), prompts, tmp_path, device_profile="laptop")


def test_policies_command_lists_the_registry():
    from gelato.policies.registry import POLICIES

    result = CliRunner().invoke(app, ["policies"])
    assert result.exit_code == 0
    assert all(name in result.output for name in POLICIES)


def test_grpc_framing_charges_the_measured_bytes_per_message():
    """--framing grpc bills GRPC_FRAMING_BYTES more on every uplink and downlink message, same rounds otherwise."""
    from gelato.wire.payload import GRPC_FRAMING_BYTES

    runs = {f: execute(RunConfig(source="synthetic", policy="static-5", payload="compact", rounds=50, framing=f),
                       write=False) for f in ("none", "grpc")}
    plain, framed = runs["none"].rows, runs["grpc"].rows
    assert len(plain) == len(framed) == 50
    for a, b in zip(plain, framed):
        assert b["bits_up"] - a["bits_up"] == 8 * GRPC_FRAMING_BYTES
        assert b["bits_down"] - a["bits_down"] == 8 * GRPC_FRAMING_BYTES
    assert runs["grpc"].summary["tokens_per_second"] < runs["none"].summary["tokens_per_second"]
