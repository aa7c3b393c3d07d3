"""Faults: lost and delayed messages, an edge restart, idle expiry, an edge that never comes back."""

from __future__ import annotations

import threading
import time

import pytest
from edge_helpers import PROMPTS, FaultyClient, finishes, reference, remote_generate, start_edge

from gelato.policies import StaticPolicy
from gelato.wire.errors import EdgeUnavailableError

pytestmark = pytest.mark.slow  # starts an edge server

N = 24


def test_lost_and_delayed_messages_are_retried(pair, edge):
    target, draft = pair
    client = FaultyClient(edge.address, {2: "drop_request", 4: "drop_response", 5: "drop_response", 7: "delay:0.2"})
    result, verifier = finishes(remote_generate, client, draft, PROMPTS[0], N, policy=StaticPolicy(3), rpc_timeout=0.5)
    client.close()
    assert result.token_ids == reference(target, PROMPTS[0], N)
    assert client.injected == ["drop_request", "drop_response", "drop_response", "delay:0.2"]
    # every lost round drops its stream; the device resumes on a new one with what it committed
    assert verifier.stats.retries == 3 and verifier.stats.reopens == 3
    # one extra attempt per lost round, no more (a delayed round is not retried)
    assert verifier.stats.attempts == verifier.stats.rounds + 3
    assert sum(t.attempts for t in verifier.stats.timings) == verifier.stats.attempts


def test_a_stream_dropped_mid_burst_resumes_with_identical_output(pair, edge):
    """Issue 31: the stream breaks inside bursts (after 3, then 1 tokens) and on a burst's first reply; the
    device commits what it received, resumes on a new stream and asks for the rest."""
    from burst_helpers import BurstMixPolicy

    target, draft = pair
    for pattern, plan in (("all-burst", {1: "cut:3"}), ("alternate", {1: "cut:1", 2: "drop_response", 4: "cut:2"})):
        client = FaultyClient(edge.address, plan)
        heard: list[int] = []
        result, verifier = finishes(remote_generate, client, draft, PROMPTS[0], N,
                                    policy=BurstMixPolicy(3, pattern, n=5), rpc_timeout=2.0, on_token=heard.append)
        client.close()
        assert result.token_ids == reference(target, PROMPTS[0], N), pattern
        assert client.injected == list(plan.values())
        assert verifier.stats.reopens == len(plan)  # every break resumed on a new stream
        streamed = [t for r in result.rounds if r.streamed for t in r.tokens]
        assert heard == streamed  # each streamed token was reported once, across the resumes


def test_edge_restart_mid_generation_keeps_output(pair):
    target, draft = pair
    first = start_edge(target)
    port, state = first.port, {}

    def on_round(record):
        if record.index == 3:
            first.stop()  # kill the edge between rounds; every session is gone

            def restart():
                time.sleep(0.3)
                state["second"] = start_edge(target, port=port)
            state["thread"] = threading.Thread(target=restart)
            state["thread"].start()

    try:
        result, verifier = remote_generate(first.address, draft, PROMPTS[2], N, policy=StaticPolicy(4),
                                           on_round=on_round)
    finally:
        state["thread"].join(10)
    second = state["second"]
    try:
        metrics = second.metrics()
    finally:
        second.stop()
    assert result.token_ids == reference(target, PROMPTS[2], N)
    assert verifier.stats.retries >= 1 and verifier.stats.reopens == 1
    assert metrics["sessions"]["opened"] == 1 and metrics["rounds"] >= 1


def test_idle_session_expires_and_device_reopens(pair):
    target, draft = pair
    server = start_edge(target, idle_timeout_s=0.2)

    def on_round(record):
        if record.index == 2:
            time.sleep(0.6)  # the edge expires the session meanwhile

    try:
        result, verifier = remote_generate(server.address, draft, PROMPTS[0], N, on_round=on_round)
        metrics = server.metrics()
    finally:
        server.stop()
    assert result.token_ids == reference(target, PROMPTS[0], N)
    assert metrics["sessions"]["expired"] == 1 and verifier.stats.reopens == 1
    assert metrics["errors"].get("NOT_FOUND") == 1


def test_unreachable_edge_raises_with_committed_tokens(pair):
    target, draft = pair
    server = start_edge(target)

    def on_round(record):
        if record.index == 2:
            server.stop()

    with pytest.raises(EdgeUnavailableError) as info:  # finishes(): a hang fails the test
        finishes(remote_generate, server.address, draft, PROMPTS[0], N, on_round=on_round, unreachable_after=1.0,
                 rpc_timeout=0.5)
    err = info.value
    ref = reference(target, PROMPTS[0], N)
    assert err.committed_ids[: len(PROMPTS[0])] == PROMPTS[0]
    assert 3 <= len(err.generated_ids) < N and err.generated_ids == ref[: len(err.generated_ids)]
    assert "unreachable" in str(err) and err.waited_s >= 1.0


def test_edge_dies_after_verifying_a_round_whose_reply_is_lost(pair):
    """The lost round is re-verified by the restarted edge from the device's committed tokens: same text."""
    target, draft = pair
    first = start_edge(target)
    port, state = first.port, {}

    def kill():
        first.stop(grace=0)
        state["second"] = start_edge(target, port=port)

    client = FaultyClient(first.address, {4: "kill"}, on_kill=kill)
    result, verifier = remote_generate(client, draft, PROMPTS[0], N, policy=StaticPolicy(5))
    client.close()
    state["second"].stop()
    assert result.token_ids == reference(target, PROMPTS[0], N)
    assert verifier.stats.reopens == 1
