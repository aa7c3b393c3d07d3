"""Lossless under greedy decoding: speculative output ids == target-only output ids."""

from __future__ import annotations

import random

import pytest

from gelato.decoding.sampling import SamplingParams
from gelato.decoding.types import DraftStep, StopDecision
from gelato.generation import DraftModelProposer, TargetModelVerifier, generate
from gelato.generation.loop import target_only_generate
from gelato.models import CachedCausalLM
from gelato.policies import StaticPolicy
from tests.conftest import random_prompts

GREEDY = SamplingParams()
PROMPTS = random_prompts(50, seed=11)
MAX_NEW = 20


@pytest.fixture(scope="module")
def references(tiny_target):
    target = CachedCausalLM(tiny_target)
    refs = []
    for prompt in PROMPTS:
        target.reset()
        refs.append(target_only_generate(target, prompt, GREEDY, MAX_NEW).token_ids)
    return refs


def run_sd(draft_model, target_model, prompt, policy, max_new=MAX_NEW):
    draft, target = CachedCausalLM(draft_model), CachedCausalLM(target_model)
    return generate(prompt, DraftModelProposer(draft, GREEDY), TargetModelVerifier(target, GREEDY),
                                policy, max_new)


class RandomStopPolicy(StaticPolicy):
    """Static K with a stop hook that stops at random positions, sometimes dropping the token."""

    def __init__(self, k: int, seed: int) -> None:
        super().__init__(k)
        self.rng = random.Random(seed)

    def keep_drafting(self, step: DraftStep) -> StopDecision:
        return self.rng.choice([StopDecision.CONTINUE] * 3 + [StopDecision.STOP_AFTER, StopDecision.STOP_BEFORE])


def fast_lane(keep: bool):
    """The fast lane (``-m "not slow"``) keeps one case of a grid, the partly accepting draft; CI runs them all."""
    return () if keep else pytest.mark.slow


@pytest.mark.parametrize("pair,k", [pytest.param(pair, k, marks=fast_lane((pair, k) == ("noisy", 4)), id=f"{k}-{pair}")
                                    for pair in ("unrelated", "noisy", "copy") for k in (1, 2, 4, 8)])
def test_greedy_equality(tiny_target, tiny_drafts, references, pair, k):
    accepted = sent = 0
    for prompt, ref in zip(PROMPTS, references):
        result = run_sd(tiny_drafts[pair], tiny_target, prompt, StaticPolicy(k))
        assert result.token_ids == ref, f"prompt {prompt}: SD diverged from target-only"
        accepted += result.metrics.accepted
        sent += result.metrics.sent
    if pair == "copy":
        # Full acceptance: every drafted token is accepted and the bonus token comes from the target.
        assert accepted == sent > 0


@pytest.mark.parametrize("pair", [pytest.param(p, marks=fast_lane(p == "noisy"), id=p)
                                  for p in ("unrelated", "noisy", "copy")])
def test_greedy_equality_with_random_stops(tiny_target, tiny_drafts, references, pair):
    stopped_early = 0
    for i, (prompt, ref) in enumerate(zip(PROMPTS, references)):
        result = run_sd(tiny_drafts[pair], tiny_target, prompt, RandomStopPolicy(6, seed=i))
        assert result.token_ids == ref
        stopped_early += sum(r.sent < r.budget for r in result.rounds)
        assert all(r.sent >= 1 for r in result.rounds if r.budget >= 1), "at least one token is always sent"
    assert stopped_early > 0


def test_acceptance_ordering(tiny_target, tiny_drafts):
    """Sanity on the fixtures: the copy accepts everything, the unrelated draft almost nothing."""
    rates = {}
    for pair, draft in tiny_drafts.items():
        res = [run_sd(draft, tiny_target, p, StaticPolicy(4)) for p in PROMPTS[:10]]
        rates[pair] = sum(r.metrics.accepted for r in res) / sum(r.metrics.sent for r in res)
    assert rates["copy"] == 1.0
    assert rates["unrelated"] < rates["noisy"] < 1.0


def test_target_only_matches_transformers_generate(tiny_target):
    """Our reference decoder agrees with transformers' own greedy generate."""
    import torch

    target = CachedCausalLM(tiny_target)
    for prompt in PROMPTS[:5]:
        target.reset()
        ours = target_only_generate(target, prompt, GREEDY, MAX_NEW).token_ids
        out = tiny_target.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                   max_new_tokens=MAX_NEW, do_sample=False,
                                   min_new_tokens=MAX_NEW, pad_token_id=0)
        assert ours == out[0, len(prompt):].tolist()


def test_eos_stops_generation(tiny_target, tiny_drafts, references):
    prompt, ref = PROMPTS[0], references[0]
    eos = ref[7]
    expected = ref[: ref.index(eos) + 1]
    result = generate(prompt, DraftModelProposer(CachedCausalLM(tiny_drafts["noisy"]), GREEDY),
                                  TargetModelVerifier(CachedCausalLM(tiny_target), GREEDY), StaticPolicy(4),
                                  MAX_NEW, eos_token_id=eos)
    assert result.token_ids == expected and result.stop_reason == "eos"
