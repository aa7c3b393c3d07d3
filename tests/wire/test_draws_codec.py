"""The draws payload's messages (fast lane): declared at open, decoded by the declared mode, one MalformedMessage
for whatever breaks the format (edge: INVALID_ARGUMENT; device: a ValueError it reports as its TransportError)."""

from __future__ import annotations

import grpc
import pytest
import torch

from gelato.decoding.payload_modes import PayloadMode
from gelato.decoding.rejection import accept_draw, verify_rows
from gelato.decoding.sampling import MAX_DRAWS_M, Q_ONE, SamplingParams
from gelato.decoding.types import Draft, Verdict
from gelato.wire.codec import (
    SessionPayload,
    decode_draft,
    decode_verdict,
    encode_verdict,
    payload_config,
    payload_from_proto,
    payload_to_proto,
)
from gelato.wire.errors import MalformedMessage, RequestError
from gelato.wire.payload import build_draft_up, build_verdict_down
from gelato.wire.proto import gelato_pb2 as pb

SAMPLED = SamplingParams(temperature=1.0)
DRAWS = SessionPayload(PayloadMode.DRAWS, 4, declared=True)


def test_the_payload_is_declared_at_open_and_read_back():
    cfg = payload_config("draws", SAMPLED, draws=4)
    assert payload_from_proto(pb.OpenRequest(payload=payload_to_proto(cfg))) == DRAWS
    assert payload_from_proto(pb.OpenRequest()) == SessionPayload()  # an older device: recognised per round
    for bad in (pb.PayloadSettings(mode="jpeg"), pb.PayloadSettings(mode="draws", draws=0),
                pb.PayloadSettings(mode="draws", draws=MAX_DRAWS_M + 1)):
        with pytest.raises(MalformedMessage) as info:
            payload_from_proto(pb.OpenRequest(payload=bad))
        assert isinstance(info.value, RequestError) and info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert isinstance(info.value, ValueError)


def test_draws_round_trip_uplink_and_downlink():
    k = 3 * (1 << 20)
    draft = Draft(tokens=[7, 9], q=None, entropies=[0.0, 0.0], token_probs=[k / Q_ONE, 1.0], max_probs=[0.0, 0.0],
                  budget=2, n_computed=2, start=5)
    up = build_draft_up(draft, payload_config("draws", SAMPLED))
    assert list(up.q_int) == [k, Q_ONE] and not len(up.q) and not len(up.q_token)
    decoded = decode_draft(up, SAMPLED, 16, payload=DRAWS)
    assert decoded.rule is PayloadMode.DRAWS and decoded.draws == 4
    assert [float(q.probs[0]) for q in decoded.q] == [k / Q_ONE, 1.0]
    # the declared mode decodes: the same fields in a compact session are not a compact draft
    with pytest.raises(MalformedMessage, match="one q per token"):
        decode_draft(up, SAMPLED, 16, payload=SessionPayload(PayloadMode.COMPACT, declared=True))
    logits = torch.zeros(3, 16)
    logits[0, 7] = -20.0  # p(7) tiny: rejected
    verdict = verify_rows(logits, decoded.tokens, decoded.q, SAMPLED, torch.Generator().manual_seed(0),
                          rule=decoded.rule, draws=decoded.draws)
    assert verdict.accepted == 0 and verdict.deferred and len(verdict.draws) == 4
    down = encode_verdict(verdict, round_id=1, position=5)
    assert not down.has_token and len(down.draw_ids) == 4
    assert decode_verdict(pb.VerdictDown.FromString(down.SerializeToString()), 16).draws == verdict.draws


def test_in_process_billing_of_a_rejected_draws_round_is_m_draws():
    cfg = payload_config("draws", SAMPLED, draws=16, vocab_size=49152)
    billed = build_verdict_down(Verdict(accepted=1, token=5), cfg, 3, n_sent=4)
    assert len(billed.draw_ids) == 16 and not billed.has_token
    assert build_verdict_down(Verdict(accepted=4, token=5), cfg, 3, n_sent=4).has_token  # all accepted: the bonus


@pytest.mark.parametrize("ids, probs", [([1, 2], [float("nan"), 0.5]), ([1], [-0.5]), ([1], [1.5]), ([1, 2], [0.5]),
                                        ([16], [0.5]), ([1] * (MAX_DRAWS_M + 1), [0.5] * (MAX_DRAWS_M + 1))])
def test_bad_draws_from_the_edge_are_one_malformed_message(ids, probs):
    with pytest.raises(MalformedMessage):
        decode_verdict(pb.VerdictDown(accepted=0, draw_ids=ids, draw_p=probs), 16)


def test_a_draw_is_accepted_with_probability_one_minus_q_over_p():
    q = torch.tensor([0.5, 0.5, 0.0, 0.0])
    gen = torch.Generator().manual_seed(1)
    assert accept_draw([(0, 0.5)], q, gen) is None  # q(y) >= p(y): never
    assert accept_draw([(2, 0.1)], q, gen) == 2  # q(y) = 0: always
    hits = sum(accept_draw([(1, 0.8)], q, gen) == 1 for _ in range(4000))  # 1 - 0.5/0.8 = 0.375
    assert abs(hits / 4000 - 0.375) < 0.03


def test_after_max_redraws_the_device_asks_for_the_dense_row_and_samples_the_residual():
    """A residual of almost no mass would take ever more redraws: after MAX_REDRAWS the dense row is asked once
    (exact: the failed draws are independent of the residual sample) and the exchanges stay bounded."""
    from gelato.decoding.rejection import sample_from_draws
    from gelato.decoding.sampling import MAX_REDRAWS
    from gelato.decoding.types import SparseDist

    q = SparseDist(ids=torch.tensor([0, 1]), probs=torch.tensor([0.5, 0.5]))
    p_row = torch.tensor([0.5, 0.4, 0.1, 0.0])  # residual norm(max(0, p - q)): all on token 2
    asked = []

    def redraw(dense):
        asked.append(dense)
        return p_row if dense else ((0, 0.5),)  # q(0) >= p(0): a draw that always fails

    verdict = Verdict(accepted=0, token=-1, draws=((1, 0.4),))
    out, redraws = sample_from_draws(verdict, [q], 4, torch.Generator().manual_seed(0), redraw)
    assert out.token == 2 and out.deferred and redraws == MAX_REDRAWS + 1
    assert asked == [False] * MAX_REDRAWS + [True]
    # the edge answers a dense redraw with its p row, as DSSD's target_p
    up = pb.DraftUp(position=3, round=2, redraw=True, dense=True)
    decoded = decode_draft(up, SAMPLED, 16, payload=DRAWS)
    assert decoded.redraw and decoded.draws == 0
    answer = verify_rows(torch.zeros(1, 16), [], [], SAMPLED, rule=decoded.rule, draws=decoded.draws, redraw=True)
    assert answer.residual_p is not None and decode_verdict(encode_verdict(answer, round_id=2, position=3), 16).deferred
    with pytest.raises(MalformedMessage, match="dense belongs to a redraw"):
        decode_draft(pb.DraftUp(position=3, round=2, dense=True), SAMPLED, 16, payload=DRAWS)
