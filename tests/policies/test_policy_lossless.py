"""Every registered policy keeps speculative decoding lossless: greedy output == the target's own output.

A tiny random-weight Llama pair (the draft a perturbed copy of the target, both with a sharpened output
layer, so acceptance is partial and entropies spread around the stop rules' thresholds), no clock: ``ctx.link`` is None and ``record.charge`` is None, which every policy
must cope with.
"""

from __future__ import annotations

import random

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from gelato.decoding.sampling import SamplingParams
from gelato.generation import DraftModelProposer, TargetModelVerifier, generate
from gelato.generation.loop import target_only_generate
from gelato.models import CachedCausalLM
from gelato.policies import POLICIES, LinearRoundPredictor, make_policy

GREEDY = SamplingParams()
MAX_NEW = 40
VOCAB = 64
PREDICTOR = LinearRoundPredictor(t_fixed=0.1, t_token=0.015, e_token=0.18, rate_bps=10e6)


def tiny_llama(seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def pair():
    target = tiny_llama(0)
    draft = tiny_llama(0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in draft.parameters():
            p.add_(0.1 * p.std() * torch.randn(p.shape, generator=gen))
        for model in (target, draft):  # random weights give near-uniform outputs (H ~ ln 64): sharpen them
            model.lm_head.weight.mul_(60.0)
    return draft, target


@pytest.fixture(scope="module")
def prompts_and_refs(pair):
    _, target = pair
    rng = random.Random(5)
    prompts = [[rng.randrange(VOCAB) for _ in range(rng.randint(1, 10))] for _ in range(3)]
    refs = []
    for prompt in prompts:
        model = CachedCausalLM(target)
        refs.append(target_only_generate(model, prompt, GREEDY, MAX_NEW).token_ids)
    return prompts, refs


def build(name: str):
    cfg = {"predictor": PREDICTOR}
    if name in ("gelato-paper", "gelato-outer-only", "gelato-improved"):
        cfg["init_bits_per_token"] = 20_000.0
    return make_policy(name, **cfg)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_greedy_output_equals_target_only(pair, prompts_and_refs, name):
    draft, target = pair
    prompts, refs = prompts_and_refs
    policy = build(name)  # one policy across prompts: its state carries over as in a real run
    sent = drafted = rounds = 0
    for prompt, ref in zip(prompts, refs):
        result = generate(prompt, DraftModelProposer(CachedCausalLM(draft), GREEDY),
                                      TargetModelVerifier(CachedCausalLM(target), GREEDY), policy, MAX_NEW)
        assert result.token_ids == ref, f"{name}: output differs from target-only decoding for {prompt}"
        assert isinstance(policy.state(), dict)
        sent += result.metrics.sent
        drafted += result.metrics.drafted
        rounds += result.metrics.rounds
    if name == "edge-autoregressive":
        assert drafted == 0 and rounds == len(prompts) * MAX_NEW
    else:
        assert sent >= rounds - len(prompts)  # >= 1 token per round except a prompt's last round


def test_the_pair_has_partial_acceptance_and_spread_entropies(pair, prompts_and_refs):
    """Guard for the test above: with acceptance near 0 or 1, or every entropy on one side of the rules'
    thresholds (0.3 to 0.6 nats), the stop rules would not be exercised."""
    draft, target = pair
    prompts, _ = prompts_and_refs
    accepted = sent = 0
    entropies = []
    for prompt in prompts:
        r = generate(prompt, DraftModelProposer(CachedCausalLM(draft), GREEDY),
                                 TargetModelVerifier(CachedCausalLM(target), GREEDY), make_policy("static-5"),
                                 MAX_NEW)
        accepted += r.metrics.accepted
        sent += r.metrics.sent
        entropies += [h for rec in r.rounds for h in rec.entropies]
    assert 0.3 < accepted / sent < 0.9
    assert sum(h < 0.3 for h in entropies) > 10 and sum(h > 0.6 for h in entropies) > 10
