"""Lossless under sampling with drafting ahead: the first three tokens follow the target's distribution.

K = 1 and two tokens drafted ahead, so a usable pre-draft (x_1 accepted, the edge's token equal to x_2)
hands x_3 to the next round as its draft: the third generated token is then decided by verifying a
carried pre-draft token (4 tokens are generated so that this round may send one). Exact P(a, b, c) by enumeration over a 6-token vocabulary; chi-square against samples of
the real pipelined loop (KV caches, q transport, verification).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from gelato.decoding.sampling import SamplingParams, processed_probs
from gelato.decoding.seeds import device_and_edge_generators
from gelato.generation import DraftModelProposer, TargetModelVerifier, generate
from gelato.models import CachedCausalLM
from gelato.models.tiny import tiny_llama
from gelato.policies import StaticPolicy

VOCAB = 6
PROMPT = [1, 4, 2]
N_SAMPLES = 3000


class OneAheadTwo(StaticPolicy):
    pipelined = True

    def __init__(self) -> None:
        super().__init__(1)

    def predraft(self, ctx, draft) -> int:
        return 2


def exact_three_token_probs(target, params: SamplingParams) -> np.ndarray:
    probs = np.zeros((VOCAB, VOCAB, VOCAB))
    with torch.inference_mode():
        def p(ctx):
            return processed_probs(target(torch.tensor([PROMPT + list(ctx)])).logits[0, -1].float(), params).numpy()

        p1 = p(())
        for a in range(VOCAB):
            p2 = p((a,))
            for b in range(VOCAB):
                probs[a, b] = p1[a] * p2[b] * p((a, b))
    return probs.flatten()


@pytest.mark.slow  # 3,000 sampled generations over a three-token enumeration: minutes here
def test_pipelined_sampling_matches_target_three_tokens():
    target_model = tiny_llama(vocab_size=VOCAB, hidden=16, layers=1, seed=3)
    draft_model = tiny_llama(vocab_size=VOCAB, hidden=16, layers=1, seed=3)  # same weights: frequent reuse
    with torch.no_grad():  # ... but not the same distribution: perturb the draft's head
        head = draft_model.get_output_embeddings().weight
        head.add_(0.8 * torch.randn(head.shape, generator=torch.Generator().manual_seed(9)))
    params = SamplingParams(temperature=1.0)
    draft, target = CachedCausalLM(draft_model), CachedCausalLM(target_model)
    device_gen, edge_gen = device_and_edge_generators(5)
    proposer = DraftModelProposer(draft, params, device_gen)
    verifier = TargetModelVerifier(target, params, edge_gen)
    counts = np.zeros(VOCAB ** 3)
    carried_rounds = 0
    for _ in range(N_SAMPLES):
        draft.reset()
        target.reset()
        # 4 tokens, so that the round after a 2-token first round may still send one (the carried x_3)
        result = generate(PROMPT, proposer, verifier, OneAheadTwo(), max_new_tokens=4)
        a, b, c = result.token_ids[:3]
        counts[(a * VOCAB + b) * VOCAB + c] += 1
        carried_rounds += any(r.carried for r in result.rounds)
    assert carried_rounds > N_SAMPLES // 20, "the carried pre-draft must decide the third token often"
    expected = exact_three_token_probs(target_model, params)
    keep = expected * N_SAMPLES >= 5
    observed = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum()) * N_SAMPLES
    exp = exp * observed.sum() / exp.sum()
    assert chisquare(observed, exp).pvalue > 1e-3
