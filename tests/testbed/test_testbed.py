"""`gelato testbed` end to end on the fast pair: real edge, link and device processes, a short workload, a tiny
energy budget. Checks the JSON's shape and its internal consistency, never wall-clock speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gelato.constants import within_energy_budget

POLICIES = ["edge-streaming", "static-3", "gelato-improved", "static-5-pipelined"]
PHASES = {"draft", "uplink", "verify", "downlink", "waiting", "device_other"}


def _testbed(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gelato.cli.main", "testbed", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ})


@pytest.fixture(scope="module")
def result():
    proc = _testbed("--preset", "lte", "--rtt-ms", "10", "--workload", "gsm8k", "--prompts", "2", "--max-new-tokens",
                    "14", "--e-bar", "0.02", "--policies", ",".join(POLICIES), "--devices", "1,3",
                    "--json")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1  # one JSON object, nothing else on stdout
    assert "policy 4/4" in proc.stderr  # progress as plain lines when piped
    return json.loads(lines[0])


@pytest.mark.slow
def test_testbed_json_shape_and_lossless_output(result, fast_pair):
    import torch

    from gelato.decoding.sampling import SamplingParams
    from gelato.generation.loop import target_only_generate
    from gelato.models.cached import CachedCausalLM
    from gelato.models.chat import stop_token_id
    from gelato.models.loading import load_causal_lm, load_tokenizer
    from gelato.testbed.run import workload_prompts

    assert list(result["policies"]) == POLICIES and result["reference"] == "edge-streaming"
    assert result["link"]["delay_s"] == pytest.approx(0.005) and result["link"]["uplink_bps"] == 10e6
    tokenizer = load_tokenizer(fast_pair[0])
    target = CachedCausalLM(load_causal_lm(fast_pair[1]))
    reference = []
    for prompt in workload_prompts(tokenizer, "gsm8k", 2):
        target.reset()
        reference.append(target_only_generate(target, prompt["ids"], SamplingParams(), 14,
                                              stop_token_id(tokenizer)).token_ids)
    for name, p in result["policies"].items():
        assert p["token_ids"] == reference, name  # the target's own output, every policy
        assert p["same_output_as_reference"] is True
        assert p["over_reference"]["measured"] == pytest.approx(
            p["measured"]["tokens_per_second"] / result["policies"]["edge-streaming"]["measured"]["tokens_per_second"])
        for side in ("measured", "modelled"):
            assert p[side]["tokens_per_second"] > 0 and p[side]["ttft_s"] > 0
            assert set(p[side]["per_round_ms"]) == PHASES
            assert p[side]["tokens"] == sum(map(len, reference))
        assert p["measured"]["rounds"] == p["modelled"]["rounds"] > 0
        assert p["error"]["tokens_per_second"] == pytest.approx(
            p["modelled"]["tokens_per_second"] / p["measured"]["tokens_per_second"] - 1)
        assert p["measured"]["device_cpu_s"] > 0
        # policies that plan do so with measured costs (no suffix): their planner was fed every round
        planner = p["measured"]["planner"]
        fed = name in ("gelato-improved", "static-5-pipelined")
        assert planner["rounds"] == (p["measured"]["rounds"] if fed else 0) and planner["fitted"] == fed
    del torch


@pytest.mark.slow
def test_testbed_fleet_runs_n_devices_on_one_edge_losslessly(result):
    """3 devices at once on one batching edge: each answers its prompt exactly as one device alone does (device j
    takes prompt j of the workload); the edge counted its forwards; the model up to 64 devices is monotone."""
    fleet = result["fleet"]
    assert fleet["devices"] == [1, 3] and fleet["policies"] == ["edge-streaming", "gelato-improved"]
    alone = result["policies"]["edge-streaming"]["token_ids"]  # the target's answers to prompts 0 and 1
    for name in fleet["policies"]:
        one, three = fleet["measured"][name]["1"], fleet["measured"][name]["3"]
        assert one["token_ids"] == alone[:1]
        assert three["token_ids"] == [alone[0], alone[1], alone[0]]
        for f in (one, three):
            assert f["tokens"] == sum(map(len, f["token_ids"])) and 0 < f["forwards"] <= f["tokens"]
            assert f["per_device_tokens_per_second"] > 0 and f["edge_tokens_per_second"] > 0
        assert one["batch_mean"] == 1.0 and 1.0 <= three["batch_mean"] <= 3.0
        model = fleet["modelled"][name]
        assert [r["devices"] for r in model] == [1, 2, 4, 8, 16, 32, 64]
        per_device = [r["per_device_tokens_per_second"] for r in model]
        edge = [r["edge_tokens_per_second"] for r in model]
        assert per_device == sorted(per_device, reverse=True) and edge == sorted(edge)
    curve = fleet["batch_cost_curve"]
    assert curve["samples"] > 0 and curve["a_ms"] >= 0 and curve["b_ms_per_token"] >= 0


@pytest.mark.slow
def test_testbed_bytes_at_the_link_are_the_protocols_and_budget_flags_agree(result):
    pols = result["policies"]
    # every round costs exactly its protobuf message plus the gRPC framing at the link: what is left is the
    # session's (connection setup, open, close), the same for every policy over the same prompts; a policy
    # whose device reopened or retried a stream (a loaded machine) sent its opens again, so more
    clean = [p["measured"] for p in pols.values() if not p["measured"]["reopens"] and not p["measured"]["retries"]]
    assert clean
    for direction in ("up", "down"):
        session = {m[f"session_bytes_{direction}"] for m in clean}
        assert len(session) == 1 and min(session) > 0, session
        for p in pols.values():
            assert p["measured"][f"session_bytes_{direction}"] >= min(session)
    for name, p in pols.items():
        m, o = p["measured"], p["modelled"]
        assert m["link_bytes_up"] > m["protocol_bytes_up"] > 0
        # the clock bills the same messages, less the stream's position field and oneof wrapper (<= 5 bytes)
        assert 0 <= m["protocol_bytes_up"] - o["billed_bytes_up"] <= 5 * m["rounds"], name
        for side in (m, o):
            assert side["energy_budget_kept"] == within_energy_budget(side["j_per_round"], result["e_bar_j_per_round"])
        assert m["energy_j"] == pytest.approx(sum(m["energy_terms_j"].values()))
    # a device whose edge streams the answer drafts nothing: it computes far less than a drafting one
    assert pols["edge-streaming"]["measured"]["device_cpu_s"] < pols["static-3"]["measured"]["device_cpu_s"]


@pytest.mark.slow  # runs the testbed in subprocesses
def test_testbed_bad_input_is_one_line():
    for args in (["--preset", "nope"], ["--policies", "static-3,nope"], ["--edge-cores", "0", "--device-cores", "0"],
                 ["--temperature", "-1"], ["--max-new-tokens", "0"], ["--workload", "poems"]):
        proc = _testbed(*args)
        assert proc.returncode == 2, args
        assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_testbed_with_an_edge_the_user_started(fast_pair):
    from gelato.edge.process import EdgeServerThread, build_edge_server

    draft_dir, target_dir = fast_pair
    with EdgeServerThread(build_edge_server(target_dir, tokenizer_dir=draft_dir)) as edge:
        proc = _testbed("--edge", edge.address, "--preset", "wifi", "--workload", "chat", "--prompts", "1",
                        "--max-new-tokens", "6", "--policies", "edge-autoregressive,static-2", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["processes"]["edge"] == {"address": edge.address, "cores": out["processes"]["edge"]["cores"],
                                        "external": True}
    a, b = (out["policies"][n] for n in ("edge-autoregressive", "static-2"))
    assert a["token_ids"] == b["token_ids"] and len(a["token_ids"][0]) > 0
