"""The edge with static-shape verification (EdgeConfig.static_verify; ``gelato serve --static-verify``):
networked greedy output equals the target's own, with one session and with several taking turns in the
static cache; ``gelato serve --device cuda`` without CUDA is one clear line."""

from __future__ import annotations

import threading

import pytest
import torch
from edge_helpers import PROMPTS, reference, remote_generate, start_edge
from typer.testing import CliRunner

from gelato.cli.main import app
from gelato.policies import StaticPolicy
from gelato.wire.errors import EdgeRejectedError

pytestmark = pytest.mark.slow  # starts an edge server

N = 24


def test_static_edge_greedy_equals_target_only(pair):
    target, draft = pair
    server = start_edge(target, static_verify=True, max_batch=4)
    try:
        for prompt in PROMPTS[:3]:
            for k in (1, 6, 16):  # rounds of 2, 7 and 17 tokens (each K plus the newest committed token)
                result, _ = remote_generate(server.address, draft, prompt, N, policy=StaticPolicy(k))
                assert result.token_ids == reference(target, prompt, N), (prompt, k)
        m = server.metrics()
    finally:
        server.stop()
    assert m["errors"] == {} and m["sessions"]["active"] == 0
    assert 0 < m["accepted"] < m["drafted"]  # rejections were rolled back
    assert m["static_forwards"] > 0 and m["static_padded_tokens"] > 0  # the static path really verified
    assert "kv_slots" not in m  # no slot store beside it
    assert {int(b) for b in m["batch_sizes"]} == {1}  # one session per forward


def test_static_edge_sessions_take_turns_and_stay_exact(pair):
    target, draft = pair
    prompts, n = PROMPTS[:3], 20
    results, errors = [None] * len(prompts), []
    barrier = threading.Barrier(len(prompts))

    def device(i):
        try:
            barrier.wait(timeout=10)
            results[i] = remote_generate(server.address, draft, prompts[i], n, policy=StaticPolicy(3))[0].token_ids
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    server = start_edge(target, static_verify=True)
    try:
        threads = [threading.Thread(target=device, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        m = server.metrics()
    finally:
        server.stop()
    assert not errors, errors
    assert results == [reference(target, p, n) for p in prompts]
    assert m["static_swaps"] > 0  # sessions really interleaved in the one cache


def test_static_edge_context_is_its_cache_and_over_long_is_refused(pair):
    """The static cache's length caps the edge's context: an open beyond it is refused with a status."""
    target, draft = pair
    server = start_edge(target, static_verify=True, static_max_len=40)
    try:
        with pytest.raises(EdgeRejectedError, match="context of 40"):
            remote_generate(server.address, draft, list(range(1, 36)), 10)
        result, _ = remote_generate(server.address, draft, PROMPTS[0], 10)  # a short one still works
        assert result.token_ids == reference(target, PROMPTS[0], 10)
    finally:
        server.stop()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_serve_on_cuda_without_cuda_is_one_clear_line(pair, tmp_path):
    target, _ = pair
    target.save_pretrained(tmp_path / "target")
    result = CliRunner().invoke(app, ["serve", "--target", str(tmp_path / "target"), "--device", "cuda", "--port",
                                      "0", "--fingerprint", "synthetic:96", "--log-level", "error"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1, result.output
    assert "CUDA is not available" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
