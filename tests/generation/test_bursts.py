"""Edge bursts in process (issue 31): the edge's own tokens, streamed, are exactly the target's.

A burst is the target decoding alone with the edge's generator (zero-draft rounds back to back), so under
greedy decoding any mix of bursts and drafted rounds gives target-only's text; its record drafts nothing.
(Sampling: tests/generation/test_sampling_distribution.py; over the network: tests/edge/test_edge_bursts.py.)
"""

from __future__ import annotations

import pytest
from burst_helpers import PATTERNS, BurstMixPolicy

from gelato.decoding.sampling import SamplingParams
from gelato.generation import DraftModelProposer, TargetModelVerifier, generate
from gelato.generation.loop import target_only_generate
from gelato.models import CachedCausalLM
from gelato.policies import make_policy
from gelato.policies.static import EdgeStreamingPolicy
from tests.conftest import random_prompts

GREEDY = SamplingParams()
PROMPTS = random_prompts(6, seed=31)
MAX_NEW = 16


def _run(tiny_target, draft_model, prompt, policy, max_new=MAX_NEW, eos=None, on_token=None):
    return generate(prompt, DraftModelProposer(CachedCausalLM(draft_model), GREEDY),
                    TargetModelVerifier(CachedCausalLM(tiny_target), GREEDY), policy, max_new, eos,
                    on_token=on_token)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_bursts_interleaved_with_drafts_give_target_only_text(tiny_target, tiny_drafts, pattern):
    bursts = 0
    for prompt in PROMPTS:
        ref = target_only_generate(CachedCausalLM(tiny_target), prompt, GREEDY, MAX_NEW).token_ids
        result = _run(tiny_target, tiny_drafts["noisy"], prompt, BurstMixPolicy(2, pattern, n=3))
        assert result.token_ids == ref, f"prompt {prompt}: a burst diverged from target-only"
        bursts += sum(r.streamed > 0 for r in result.rounds)
    assert bursts >= len(PROMPTS)  # bursts really ran


def test_edge_streaming_is_one_burst_whose_record_drafts_nothing(tiny_target, tiny_drafts):
    prompt = PROMPTS[0]
    heard: list[int] = []
    result = _run(tiny_target, tiny_drafts["noisy"], prompt, make_policy("edge-streaming"), on_token=heard.append)
    assert result.token_ids == target_only_generate(CachedCausalLM(tiny_target), prompt, GREEDY, MAX_NEW).token_ids
    [record] = result.rounds
    assert (record.budget, record.drafted, record.sent, record.accepted) == (0, 0, 0, 0)
    assert record.streamed == MAX_NEW and record.new_tokens == MAX_NEW and record.tokens == result.token_ids
    assert record.as_row()["streamed"] == MAX_NEW
    assert heard == result.token_ids  # each token was reported as it came
    assert result.metrics.streamed == MAX_NEW and result.metrics.sent == 0 and result.metrics.rounds == 1


def test_a_burst_stops_at_eos(tiny_target, tiny_drafts):
    prompt = PROMPTS[1]
    ref = target_only_generate(CachedCausalLM(tiny_target), prompt, GREEDY, MAX_NEW).token_ids
    eos = ref[5]
    heard: list[int] = []
    result = _run(tiny_target, tiny_drafts["noisy"], prompt, EdgeStreamingPolicy(), eos=eos, on_token=heard.append)
    expected = ref[: ref.index(eos) + 1]
    assert result.token_ids == expected and result.stop_reason == "eos"
    assert heard == expected and result.rounds[0].streamed == len(expected)  # the verifier stopped there too


def test_a_verifier_without_stream_gets_drafted_rounds(tiny_target, tiny_drafts):
    """max_stream is 0 for a verifier that cannot stream: edge-streaming then runs edge-only rounds."""

    class Plain:
        def __init__(self) -> None:
            self.inner = TargetModelVerifier(CachedCausalLM(tiny_target), GREEDY)

        def verify(self, committed, draft):
            return self.inner.verify(committed, draft)

    prompt = PROMPTS[2]
    result = generate(prompt, DraftModelProposer(CachedCausalLM(tiny_drafts["noisy"]), GREEDY), Plain(),
                      EdgeStreamingPolicy(), 6)
    assert len(result.rounds) == 6 and not any(r.streamed for r in result.rounds)
    assert result.token_ids == target_only_generate(CachedCausalLM(tiny_target), prompt, GREEDY, 6).token_ids
