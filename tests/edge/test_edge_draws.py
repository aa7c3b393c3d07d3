"""The draws payload at the edge: the payload is declared once at open and kept by the session; bad input on its
fields (at open and in rounds) gets one clear INVALID_ARGUMENT and leaves the edge serving; a sampled generation
over it bills only ids and integer q(x) up (a few bytes a drafted token)."""

from __future__ import annotations

import grpc
import pytest
from edge_helpers import FINGERPRINT, PROMPTS, VOCAB, remote_verifier, start_edge

from gelato.decoding.sampling import MAX_DRAWS_M, Q_ONE, SamplingParams
from gelato.device.edge_client import EdgeClient
from gelato.generation import generate
from gelato.generation.pair import draft_proposer
from gelato.policies import StaticPolicy
from gelato.wire.proto import gelato_pb2 as pb

pytestmark = pytest.mark.slow  # starts an edge server

SAMPLED = SamplingParams(temperature=1.0)
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _open(mode="draws", draws=16, temperature=1.0) -> pb.StreamUp:
    return pb.StreamUp(open=pb.OpenRequest(prompt_ids=[1, 2, 3], tokenizer_fingerprint=FINGERPRINT,
                                           sampling=pb.SamplingSettings(temperature=temperature, seed=1),
                                           payload=pb.PayloadSettings(mode=mode, draws=draws)))


def _draft(tokens, position=3, **kw) -> pb.StreamUp:
    return pb.StreamUp(draft=pb.DraftUp(position=position, round=1, token_ids=tokens, **kw))


def _answer(client: EdgeClient, *messages) -> tuple[list[pb.StreamDown], grpc.StatusCode, str]:
    stream, replies = client.open_stream(), []
    try:
        for msg in messages:
            replies.append(stream.exchange(msg, 10))
        return replies, grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        return replies, exc.code(), exc.details()
    finally:
        stream.cancel()


BAD = {
    "unknown-mode": (_open(mode="jpeg"),),
    "M=0": (_open(draws=0),),
    "M-huge": (_open(draws=MAX_DRAWS_M + 1),),
    "M-2^32-1": (_open(draws=2**32 - 1),),
    "q_int-short": (_open(), _draft([5, 6], q_int=[100])),
    "q_int-long": (_open(), _draft([5], q_int=[100, 200])),
    "q_int-missing": (_open(), _draft([5])),
    "q_int-zero": (_open(), _draft([5], q_int=[0])),
    "q_int-over-one": (_open(), _draft([5], q_int=[Q_ONE + 1])),  # unnormalised: q(x) > 1
    "token-out-of-vocab": (_open(), _draft([VOCAB], q_int=[100])),
    "pending-out-of-vocab": (_open(), _draft([5], q_int=[100], pending_ids=[10**6], position=4)),
    "other-mode-fields": (_open(), _draft([5], q_token=[0.5])),  # the declared mode decodes: q_int is missing
    "redraw-with-tokens": (_open(), _draft([5], q_int=[100], redraw=True)),
    "redraw-in-compact": (_open(mode="compact"), _draft([], redraw=True)),
    "redraw-greedy": (_open(temperature=0.0), _draft([], redraw=True)),
    "NaN-compact-q": (_open(mode="compact"), _draft([5], q=[pb.SparseDistribution(ids=[5], probs=[float("nan")])])),
    "negative-dssd-q": (_open(mode="dssd"), _draft([5], q_token=[-0.5])),
}


@pytest.fixture(scope="module")
def edge(pair):
    server = start_edge(pair[0], max_batch=2)
    yield server
    server.stop()


def test_bad_payload_input_gets_one_clear_status_and_the_edge_stays_up(edge, pair):
    client = EdgeClient(edge.address)
    try:
        for name, messages in BAD.items():
            replies, code, details = _answer(client, *messages)
            assert code == INVALID, (name, code, details)
            assert details and "\n" not in details, name
            assert len(replies) == len(messages) - 1  # refused exactly at the bad message
        # the edge kept serving: a declared draws session verifies, and a redraw answers M draws of one row
        replies, code, _ = _answer(client, _open(draws=3), _draft([5], q_int=[1]))
        assert code == grpc.StatusCode.OK
        verdict = replies[1].verdict
        assert verdict.accepted == 1 or (len(verdict.draw_ids) == 3 and not verdict.has_token)
    finally:
        client.close()
    assert edge.metrics()["errors"]["INVALID_ARGUMENT"] >= len(BAD)


def test_redraw_answers_fresh_draws_of_the_rejected_row(edge):
    """q(x) = 1 (2^24) for a token the target finds unlikely: rejected; a redraw round then sends M fresh draws."""
    client = EdgeClient(edge.address)
    try:
        replies, code, details = _answer(client, _open(draws=4), _draft([5], q_int=[Q_ONE]),
                                         pb.StreamUp(draft=pb.DraftUp(position=3, round=2, redraw=True)))
    finally:
        client.close()
    assert code == grpc.StatusCode.OK, details
    first, again = replies[1].verdict, replies[2].verdict
    if first.accepted == 0:  # p(5) < 1: accepted with probability p(5) only
        assert len(first.draw_ids) == len(again.draw_ids) == 4 and not first.has_token and again.round == 2
        assert all(0 < p <= 1 for p in list(first.draw_p) + list(again.draw_p))


def test_sampled_generation_sends_a_few_bytes_a_drafted_token(edge, pair):
    """The device drafts from its rounded q (the pair's proposer for the draws payload), sends ids plus q(x) * 2^24."""
    target, draft = pair
    proposer = draft_proposer(draft, SAMPLED, seed=3, payload="draws")
    verifier = remote_verifier(edge.address, SAMPLED, payload="draws", seed=3)
    try:
        result = generate(PROMPTS[0], proposer, verifier, StaticPolicy(4), 24)
    finally:
        verifier.close()
    timings = verifier.stats.timings
    drafted = sum(r.sent for r in result.rounds)
    assert len(result.token_ids) == 24 and drafted and any(r.accepted < r.sent for r in result.rounds)
    # per round: a few bytes of framing fields, then ~1 + 4 bytes a drafted token (id, q(x) * 2^24)
    assert sum(t.up_bytes for t in timings) <= 12 * len(timings) + 8 * drafted
