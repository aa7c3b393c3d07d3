"""Edge bursts over a real loopback edge (issue 31): the edge generates tokens by itself and streams each.

Greedy output with bursts interleaved with drafted rounds is target-only's, alone and with several devices
batched on one edge (a burst's steps join other sessions' verifications in one forward: continuous
batching); a bad burst request is one INVALID_ARGUMENT line and the edge stays up.
(Faults: tests/device/test_device_faults.py; sampling: tests/edge/test_edge_distribution.py.)
"""

from __future__ import annotations

import threading

import grpc
import pytest
from burst_helpers import PATTERNS, BurstMixPolicy
from edge_helpers import FINGERPRINT, PROMPTS, finishes, reference, remote_generate, start_edge

from gelato.device.edge_client import EdgeClient
from gelato.policies import make_policy
from gelato.wire.proto import gelato_pb2 as pb
from gelato.wire.protocol import GENERATE

pytestmark = pytest.mark.slow  # starts an edge server

N = 20


@pytest.fixture(scope="module")
def edge(pair):
    server = start_edge(pair[0], max_batch=4)
    yield server
    server.stop()


def test_bursts_interleaved_over_the_network_give_target_only_text(pair, edge):
    target, draft = pair
    before = EdgeClient(edge.address).metrics()
    streamed = 0
    for pattern in PATTERNS:
        for prompt in PROMPTS[:2]:
            result, verifier = remote_generate(edge.address, draft, prompt, N, policy=BurstMixPolicy(3, pattern, n=4))
            assert result.token_ids == reference(target, prompt, N), (pattern, prompt)
            streamed += sum(r.streamed for r in result.rounds)
            burst = next(r for r in result.rounds if r.streamed)
            assert (burst.budget, burst.sent, burst.accepted) == (0, 0, 0)
            assert burst.measured is not None and burst.measured.down_bytes > 0
    after = EdgeClient(edge.address).metrics()
    assert after["streamed"] - before["streamed"] == streamed > 0  # the edge counts streamed tokens


def test_several_streaming_devices_are_batched_with_drafting_ones(pair):
    """Four devices on one edge: two stream their whole answer, two draft; every output is target-only's
    and the bursts' steps shared forwards with other sessions."""
    target, draft = pair
    server = start_edge(target, max_batch=4, batch_window_ms=20.0)
    results: dict[int, tuple] = {}

    def device(i: int) -> None:
        policy = make_policy("edge-streaming") if i % 2 == 0 else BurstMixPolicy(2, "alternate", n=3)
        results[i] = remote_generate(server.address, draft, PROMPTS[i], 32, policy=policy)

    try:
        threads = [threading.Thread(target=finishes, args=(device, i)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        metrics = server.metrics()
    finally:
        server.stop()
    assert sorted(results) == [0, 1, 2, 3]
    for i, (result, _) in results.items():
        assert result.token_ids == reference(target, PROMPTS[i], 32), i
    assert any(t.batch > 1 for i in (0, 2) for t in results[i][1].stats.timings)  # a burst was batched
    assert sum(v for k, v in metrics["batch_sizes"].items() if int(k) > 1) > 0


def _raw(address: str, *messages: pb.StreamUp) -> tuple[list[pb.StreamDown], grpc.StatusCode, str]:
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(GENERATE)
        replies = []
        try:
            for r in call(iter([m.SerializeToString() for m in messages]), timeout=20):
                replies.append(pb.StreamDown.FromString(r))
        except grpc.RpcError as exc:
            return replies, exc.code(), exc.details()
    return replies, grpc.StatusCode.OK, ""


def _open(max_new_tokens=0, stop_ids=()) -> pb.StreamUp:
    return pb.StreamUp(open=pb.OpenRequest(prompt_ids=PROMPTS[0], tokenizer_fingerprint=FINGERPRINT,
                                           max_new_tokens=max_new_tokens, stop_ids=list(stop_ids)))


def _burst(n, round_=1, position=len(PROMPTS[0]), tokens=()) -> pb.StreamUp:
    return pb.StreamUp(draft=pb.DraftUp(round=round_, position=position, stream_tokens=n, token_ids=list(tokens)))


def test_bad_bursts_get_one_invalid_argument_line_and_the_edge_stays_up(pair, edge):
    target, draft = pair
    ref = reference(target, PROMPTS[0], 8)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    for messages, words in (((_open(), _burst(5000)), "at most 4096"),
                            ((_open(), _burst(3, tokens=[5])), "carries no draft"),
                            ((_open(max_new_tokens=2), _burst(3)), "only 2 of the session's max_new_tokens"),
                            ((_open(max_new_tokens=4), _burst(4), _burst(1, round_=2, position=len(PROMPTS[0]) + 4)),
                             "only 0 of the session's max_new_tokens")):
        replies, code, details = _raw(edge.address, *messages)
        assert code == invalid and words in details and "\n" not in details, details
    # the limit exactly: 4 tokens streamed, the 4th marked last (the replies before the refusal above)
    assert [r.verdict.token for r in replies[1:]] == ref[:4]
    assert [(r.verdict.streamed, r.verdict.last) for r in replies[1:]] == [(True, False)] * 3 + [(True, True)]
    # a stop id ends the burst after it
    stop = next(i for i in range(1, 8) if ref[i] not in ref[:i])  # a token's first appearance, not the first
    replies, code, _ = _raw(edge.address, _open(stop_ids=[ref[stop]]), _burst(8))
    assert code == grpc.StatusCode.OK and [r.verdict.token for r in replies[1:]] == ref[: stop + 1]
    assert replies[-1].verdict.last
    with EdgeClient(edge.address) as client:
        assert client.health().status == "SERVING"
    result, _ = remote_generate(edge.address, draft, PROMPTS[0], 8, policy=make_policy("edge-streaming"))
    assert result.token_ids == ref


def test_gelato_improved_bursts_over_the_network_give_target_only_text(pair, edge):
    """gelato-improved planning a fast edge far away (the modelled clock) drafts, then streams; over a real
    edge its output is target-only's."""
    from edge_helpers import GREEDY, remote_verifier

    from gelato.generation import DraftModelProposer, generate
    from gelato.models.cached import CachedCausalLM
    from gelato.system.channel import ChannelConfig
    from gelato.system.clock import ModelledClock
    from gelato.system.compute import ConstantCompute

    target, draft = pair
    clock = ModelledClock(channel=ChannelConfig(uplink_bps=10e6, downlink_bps=10e6, fading="none", delay_s=0.05),
                          verify_compute=ConstantCompute(0.003), draft_compute=ConstantCompute(0.02))
    verifier = remote_verifier(edge.address)
    try:
        result = generate(PROMPTS[2], DraftModelProposer(CachedCausalLM(draft), GREEDY), verifier,
                          make_policy("gelato-improved", predictor=clock), N, clock=clock)
    finally:
        verifier.close()
    assert result.token_ids == reference(target, PROMPTS[2], N)
    assert result.rounds[0].sent > 0 and any(r.streamed for r in result.rounds)
