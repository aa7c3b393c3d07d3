"""KV caches persist across rounds: tokens processed stay O(generated + drafted), never O(n^2)."""

from __future__ import annotations

import torch

from gelato.decoding.sampling import SamplingParams
from gelato.decoding.seeds import device_and_edge_generators
from gelato.generation import DraftModelProposer, TargetModelVerifier, generate
from gelato.models import CachedCausalLM
from gelato.policies import StaticPolicy


def test_tokens_processed_linear_in_generated(tiny_target, tiny_drafts):
    prompt = [3, 1, 4, 1, 5]
    for pair in ("unrelated", "noisy", "copy"):
        for params in (SamplingParams(), SamplingParams(temperature=1.0, top_k=8)):
            draft, target = CachedCausalLM(tiny_drafts[pair]), CachedCausalLM(tiny_target)
            device_gen, edge_gen = device_and_edge_generators(0)
            res = generate(prompt, DraftModelProposer(draft, params, device_gen),
                                       TargetModelVerifier(target, params, edge_gen), StaticPolicy(4), 120)
            m = res.metrics
            # Target: prompt once, then per round the newest committed token plus the draft.
            assert target.tokens_processed == len(prompt) + m.sent + m.rounds - 1
            # Draft: prompt once, then at most the drafted tokens plus two catch-up tokens per round.
            assert draft.tokens_processed <= len(prompt) + m.drafted + 2 * m.rounds
            assert target.forward_calls == m.rounds


def test_cache_crops_to_common_prefix(tiny_target):
    model = CachedCausalLM(tiny_target)
    full = model.feed([1, 2, 3, 4, 5], logits_from=0)
    assert model.cache_len == 5 and model.tokens_processed == 5
    again = model.feed([1, 2, 3, 9], logits_from=3)  # reuses 3 positions, recomputes 1
    assert model.tokens_processed == 6 and model.cached_ids == [1, 2, 3, 9]
    fresh = CachedCausalLM(tiny_target).feed([1, 2, 3, 9])
    assert torch.allclose(again[-1], fresh[-1], atol=1e-5)
    assert torch.allclose(full[2], model.feed([1, 2, 3], logits_from=2)[0], atol=1e-5)
    model.truncate(1)
    assert model.cache_len == 1
