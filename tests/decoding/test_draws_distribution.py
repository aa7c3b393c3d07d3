"""The draws payload is lossless in process: the first two generated tokens follow the target's own distribution
when every round crosses the real messages (DraftUp with the integer q(x), the edge's decoder and rule, VerdictDown
with M draws of p) and the device accepts a draw with its whole rounded q, redrawing while every draw fails.

Forced fallback: M = 1 with a hook that discards every verdict's draws unseen for a redraw's (exact: the draws are
independent), so every rejection crosses the redraw path (and the test asserts it did). Negative control: a
device that takes the first draw unconditionally samples p instead of the residual, and the same test fails it.
Over the network: tests/edge/test_edge_distribution.py.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from distribution_helpers import PROMPT, VOCAB, TabledModel, chi_square_pvalue, exact_two_token_probs, logits_table

from gelato.decoding.payload_modes import PayloadMode
from gelato.decoding.rejection import sample_from_draws, verify_rows
from gelato.decoding.sampling import Q_ONE, SamplingParams, processed_probs, quantized_probs
from gelato.decoding.seeds import device_and_edge_generators, residual_generator
from gelato.decoding.types import Verdict
from gelato.generation import DraftModelProposer, TargetModelVerifier, generate
from gelato.models.tiny import tiny_llama
from gelato.policies import StaticPolicy
from gelato.wire.codec import SessionPayload, decode_draft, decode_verdict, encode_redraw, encode_verdict
from gelato.wire.payload import PayloadConfig, build_draft_up
from gelato.wire.proto import gelato_pb2 as pb

N_SAMPLES = 20_000
ADVERSARIAL = SamplingParams(temperature=1.0)
TOP_K = SamplingParams(temperature=0.8, top_k=3)


@pytest.fixture(scope="module")
def tables():
    target = tiny_llama(vocab_size=VOCAB, hidden=16, layers=1, seed=3)
    draft = tiny_llama(vocab_size=VOCAB, hidden=16, layers=1, seed=7)  # unrelated: far from the target
    return logits_table(draft), logits_table(target)


def _wire(msg):
    return type(msg).FromString(msg.SerializeToString())


class DrawsVerifier(TargetModelVerifier):
    """The draws payload in process through its real messages and rules (edge: decode_draft + verify_rows; device:
    decode_verdict + sample_from_draws, a redraw being the edge's redraw rule on the same row)."""

    def __init__(self, model, params, generator, device_generator, m: int, take_first: bool = False,
                 discard_first: bool = False) -> None:
        super().__init__(model, params, generator)
        self.device_generator, self.m = device_generator, m
        self.take_first, self.discard_first = take_first, discard_first
        self.payload = SessionPayload(PayloadMode.DRAWS, m, declared=True)
        self.rejections = self.redraws = 0

    def verify(self, committed, draft) -> Verdict:
        logits = self.model.feed(list(committed) + draft.tokens, logits_from=len(committed) - 1)
        up = _wire(build_draft_up(draft, PayloadConfig(mode=PayloadMode.DRAWS, greedy=False, draws=self.m)))
        decoded = decode_draft(up, self.params, VOCAB, payload=self.payload)
        edge = verify_rows(logits, decoded.tokens, decoded.q, self.params, self.generator, rule=decoded.rule,
                           draws=decoded.draws)
        verdict = decode_verdict(_wire(encode_verdict(edge, round_id=1, position=len(committed))), VOCAB)
        if verdict.draws is None:
            return verdict
        self.rejections += 1
        assert len(verdict.draws) == self.m
        if self.take_first:  # the bug: the first draw of p, unconditionally
            return Verdict(accepted=verdict.accepted, token=verdict.draws[0][0], deferred=True)
        row = logits[verdict.accepted: verdict.accepted + 1]

        def redraw(dense=False):
            again = decode_draft(_wire(encode_redraw(round_id=2, position=0, dense=dense)), self.params, VOCAB,
                                 payload=self.payload)
            fresh = verify_rows(row, again.tokens, again.q, self.params, self.generator, rule=again.rule,
                                draws=again.draws, redraw=again.redraw)
            back = decode_verdict(_wire(encode_verdict(fresh, round_id=2, position=0)), VOCAB)
            return back.residual_p if dense else back.draws

        if self.discard_first:  # the forced-fallback hook: the first draws go unseen, a redraw replaces them (exact)
            verdict = dataclasses.replace(verdict, draws=redraw())
            self.redraws += 1
        verdict, redraws = sample_from_draws(verdict, draft.q, VOCAB, self.device_generator, redraw)
        self.redraws += redraws
        return verdict


def draws_pvalue(tables, params: SamplingParams, m: int, take_first: bool = False,
                 discard_first: bool = False) -> tuple[float, DrawsVerifier]:
    draft_table, target_table = tables
    device_gen, edge_gen = device_and_edge_generators(4321)
    proposer = DraftModelProposer(TabledModel(draft_table), params, device_gen, draft_top_k=0, quantized=True)
    verifier = DrawsVerifier(TabledModel(target_table), params, edge_gen, residual_generator(4321), m, take_first,
                             discard_first)
    samples = []
    for _ in range(N_SAMPLES):
        ids = generate(PROMPT, proposer, verifier, StaticPolicy(2), max_new_tokens=3).token_ids
        samples.append((ids[0], ids[1]))
    return chi_square_pvalue(samples, exact_two_token_probs(target_table, params)), verifier


@pytest.mark.slow  # 20,000 sampled generations: a minute or more here
@pytest.mark.parametrize("m, params", [(16, ADVERSARIAL), (1, ADVERSARIAL), (1, TOP_K)], ids=["M16", "M1", "M1-top-k"])
def test_draws_payload_matches_target(tables, m, params):
    """M = 1 runs with the forced-fallback hook: every rejection's draws are replaced by a redraw's."""
    pvalue, verifier = draws_pvalue(tables, params, m, discard_first=m == 1)
    assert verifier.rejections > N_SAMPLES // 4
    if m == 1:  # forced fallback: every rejection crossed the redraw path, some more than once
        assert verifier.redraws > verifier.rejections
    assert pvalue > 1e-3


@pytest.mark.slow  # 20,000 sampled generations
def test_taking_the_first_draw_unconditionally_fails(tables):
    """Negative control: the first draw is a sample of p, not of the residual norm(max(0, p - q)): biased."""
    pvalue, _ = draws_pvalue(tables, ADVERSARIAL, 16, take_first=True)
    assert pvalue < 1e-6


def test_quantized_q_sums_to_two_to_the_24_and_stays_close():
    q = processed_probs(torch.randn(50_000, generator=torch.Generator().manual_seed(0)) * 3, ADVERSARIAL)
    rounded = quantized_probs(q)
    ints = (rounded.double() * Q_ONE)
    assert torch.equal(ints, ints.round()) and int(ints.sum()) == Q_ONE
    exact = q.double() / q.double().sum()  # float32 q sums to 1 only within its rounding
    assert float((rounded.double() - exact).abs().max()) <= 1.0 / Q_ONE
    assert torch.equal(quantized_probs(torch.tensor([0.5, 0.25, 0.25, 0.0])), torch.tensor([0.5, 0.25, 0.25, 0.0]))


def test_draws_uplink_refuses_a_token_not_drafted_from_the_rounded_q():
    """The q(x) sent must be the one the token came from: an unrounded q(x) is refused, not silently rounded."""
    from gelato.decoding.types import Draft

    draft = Draft(tokens=[3], q=None, entropies=[1.0], token_probs=[1 / 3], max_probs=[0.5], budget=1, n_computed=1,
                  start=len(PROMPT))
    with pytest.raises(ValueError, match="rounded to 2"):
        build_draft_up(draft, PayloadConfig(mode=PayloadMode.DRAWS, greedy=False))
    exact = Draft(tokens=[3], q=None, entropies=[1.0], token_probs=[5592405 / Q_ONE], max_probs=[0.5], budget=1,
                  n_computed=1, start=len(PROMPT))
    msg = build_draft_up(exact, PayloadConfig(mode=PayloadMode.DRAWS, greedy=False))
    assert list(msg.q_int) == [5592405] and isinstance(msg, pb.DraftUp)
