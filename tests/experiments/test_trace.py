"""Trace record and exact replay: replayed rounds equal live greedy rounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gelato.decoding.rejection import verify_greedy
from gelato.decoding.sampling import SamplingParams
from gelato.decoding.types import Draft, DraftStep, StopDecision
from gelato.experiments.synthetic import SyntheticProposer, SyntheticSource, SyntheticVerifier
from gelato.experiments.trace import Trace, TraceProposer, TraceVerifier, record_trace
from gelato.generation import generate, generate_speculative
from gelato.policies import StaticPolicy
from tests.conftest import random_prompts

PROMPTS = random_prompts(5, seed=21, min_len=3)
MAX_NEW, K_MAX = 30, 8


class EntropyStop(StaticPolicy):
    """Static K with an entropy stop (drop the uncertain token), like SVIP."""

    def __init__(self, k: int, threshold: float):
        super().__init__(k)
        self.threshold = threshold

    def keep_drafting(self, step: DraftStep) -> StopDecision:
        return StopDecision.STOP_BEFORE if step.entropy > self.threshold else StopDecision.CONTINUE


@pytest.fixture(scope="module")
def trace(tiny_target, tiny_drafts, tmp_path_factory):
    recorded = record_trace(tiny_drafts["noisy"], tiny_target, [(f"p{i}", p) for i, p in enumerate(PROMPTS)],
                            k_max=K_MAX, max_new_tokens=MAX_NEW, header={"pair": "tiny-noisy"})
    path = recorded.save(tmp_path_factory.mktemp("trace") / "t.npz")
    return Trace.load(path)


def round_tuples(result):
    return [(r.start, r.budget, r.drafted, r.sent, r.accepted, r.token) for r in result.rounds]


@pytest.mark.parametrize("policy", [StaticPolicy(4), StaticPolicy(8), EntropyStop(8, 0.9), EntropyStop(6, 0.3)],
                         ids=["static4", "static8", "entropy0.9", "entropy0.3"])
def test_replay_equals_live(tiny_target, tiny_drafts, trace, policy):
    early_stops = 0
    for prompt, pt in zip(PROMPTS, trace.prompts):
        live = generate_speculative(tiny_drafts["noisy"], tiny_target, prompt, SamplingParams(), policy, MAX_NEW)
        replay = generate(prompt, TraceProposer(pt), TraceVerifier(pt), policy, MAX_NEW)
        assert replay.token_ids == live.token_ids == pt.target_tokens.tolist()
        assert round_tuples(replay) == round_tuples(live)
        assert np.allclose([h for r in replay.rounds for h in r.entropies],
                           [h for r in live.rounds for h in r.entropies], atol=1e-4)
        early_stops += sum(r.drafted < r.budget or r.sent < r.drafted for r in live.rounds)
    if isinstance(policy, EntropyStop):
        assert early_stops > 0, "the entropy rule never fired: the test would not cover early stops"


def test_trace_round_trip_and_header(trace):
    assert trace.header["pair"] == "tiny-noisy" and trace.k_max == K_MAX
    assert len(trace.prompts) == len(PROMPTS)
    p = trace.prompts[0]
    assert p.draft_tokens.shape == (MAX_NEW, K_MAX) and p.topp_support.shape == (2, MAX_NEW, K_MAX)
    assert (p.topp_support[1] >= p.topp_support[0]).all()  # a higher threshold never needs fewer tokens


def test_budget_beyond_trace_is_rejected(trace):
    with pytest.raises(ValueError, match="exceeds the trace's k_max"):
        TraceProposer(trace.prompts[0]).propose(trace.prompts[0].prompt_ids, K_MAX + 1)


def test_synthetic_source_mean_acceptance():
    source = SyntheticSource(seed=3)
    result = generate([0], SyntheticProposer(source), SyntheticVerifier(source), StaticPolicy(1), 20000)
    rate = result.metrics.draft_acceptance_rate
    assert abs(rate - 0.9) < 0.01


def test_trace_verifier_gives_the_verdict_of_greedy_verification(trace):
    """The replayed verdict is the rule's own (decoding.rejection.verify_greedy) on the recorded target tokens."""
    pt = trace.prompts[0]
    target = pt.target_tokens.tolist()
    def draft(tokens: list[int]) -> Draft:
        return Draft(tokens, None, [], [], [], budget=len(tokens), n_computed=len(tokens), start=0)

    verdicts = []
    for s, drafted in ((0, target[:3]), (2, [target[2], (target[3] + 1) % 64, target[4]]), (4, [])):
        logits = torch.nn.functional.one_hot(torch.tensor(target[s:s + len(drafted) + 1]), 64).float()
        verdicts.append(TraceVerifier(pt).verify(pt.prompt_ids + target[:s], draft(drafted)))
        assert verdicts[-1] == verify_greedy(logits, drafted)
    assert [v.accepted for v in verdicts] == [3, 1, 0]
    with pytest.raises(ValueError, match="trace too short"):
        TraceVerifier(pt).verify(pt.prompt_ids + target[:-2], draft(target[-2:]))
