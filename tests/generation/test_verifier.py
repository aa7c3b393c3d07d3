"""Verifier unit tests on hand-made p and q vectors."""

from __future__ import annotations

import pytest
import torch

from gelato.decoding.rejection import residual_distribution, verify_greedy, verify_stochastic
from gelato.decoding.sampling import SamplingParams, entropy_nats, processed_probs
from gelato.decoding.types import SparseDist


def sparse(dense):
    return SparseDist.from_dense(torch.tensor(dense, dtype=torch.float32))


def test_greedy_accepts_matching_prefix_and_appends_target_token():
    logits = torch.tensor([[0.0, 5, 0, 0], [0.0, 0, 5, 0], [5.0, 0, 0, 0], [0.0, 0, 0, 5]])
    assert verify_greedy(logits, [1, 2, 3]).accepted == 2
    assert verify_greedy(logits, [1, 2, 3]).token == 0  # correction at the first mismatch
    full = verify_greedy(logits, [1, 2, 0])
    assert (full.accepted, full.token) == (3, 3)  # bonus token after a full accept
    first = verify_greedy(logits, [3, 2, 0])
    assert (first.accepted, first.token) == (0, 1)


def test_greedy_empty_draft_is_one_target_step():
    verdict = verify_greedy(torch.tensor([[0.0, 1.0, 3.0]]), [])
    assert (verdict.accepted, verdict.token) == (0, 2)


def test_rows_must_match_draft_length():
    with pytest.raises(ValueError, match="need 3 target rows"):
        verify_greedy(torch.zeros(2, 4), [1, 2])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        verify_greedy(torch.zeros(2, 4), [7])


def test_stochastic_always_accepts_when_p_dominates_q():
    # p(x) >= q(x) for the drafted token -> accept with probability 1.
    p = torch.tensor([[0.1, 0.9, 0.0], [0.2, 0.3, 0.5]])
    q = [sparse([0.5, 0.5, 0.0])]
    for seed in range(50):
        v = verify_stochastic(p, [1], q, torch.Generator().manual_seed(seed))
        assert v.accepted == 1


def test_stochastic_never_accepts_token_with_zero_target_mass():
    p = torch.tensor([[0.0, 1.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    q = [sparse([0.9, 0.1, 0.0])]
    for seed in range(50):
        v = verify_stochastic(p, [0], q, torch.Generator().manual_seed(seed))
        assert v.accepted == 0 and v.token == 1  # residual max(0, p - q) puts all mass on token 1


def test_q_with_zero_mass_where_p_has_mass():
    # q has no mass on token 2 where p does: the residual must recover it.
    p = torch.tensor([0.2, 0.3, 0.5])
    q = torch.tensor([0.6, 0.4, 0.0])
    residual = residual_distribution(p, q)
    assert torch.allclose(residual, torch.tensor([0.0, 0.0, 1.0]))
    # Acceptance probability of token 0 is p/q = 1/3; its rejections resample token 2 only.
    gen = torch.Generator().manual_seed(0)
    outcomes = [verify_stochastic(torch.stack([p, p]), [0], [SparseDist.from_dense(q)], gen) for _ in range(3000)]
    accepted = sum(v.accepted for v in outcomes) / len(outcomes)
    assert abs(accepted - 1 / 3) < 0.04
    assert {v.token for v in outcomes if v.accepted == 0} == {2}


def test_drafted_token_outside_q_support_is_rejected_as_malformed():
    p = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="q\\(x\\) = 0"):
        verify_stochastic(p, [1], [sparse([1.0, 0.0])])


def test_deferred_residual_returns_target_row_for_dssd():
    p = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    v = verify_stochastic(p, [0], [sparse([1.0, 0.0])], defer_residual=True)
    assert v.accepted == 0 and v.residual_p is not None and torch.equal(v.residual_p, p[0])


def test_processed_probs_truncation_and_entropy():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0])
    top2 = processed_probs(logits, SamplingParams(temperature=1.0, top_k=2))
    assert (top2 > 0).sum() == 2 and torch.isclose(top2.sum(), torch.tensor(1.0))
    full = torch.softmax(logits, -1)
    top_p = processed_probs(logits, SamplingParams(temperature=1.0, top_p=0.7))
    # smallest prefix of the sorted distribution reaching 0.7: tokens 0 and 1 (0.644 + 0.237)
    assert (top_p > 0).tolist() == [True, True, False, False]
    assert torch.allclose(top_p[:2], full[:2] / full[:2].sum())
    uniform = torch.full((8,), 1 / 8)
    assert torch.isclose(entropy_nats(uniform), torch.log(torch.tensor(8.0)))
    assert float(entropy_nats(torch.tensor([1.0, 0.0]))) == 0.0


@pytest.mark.parametrize("kwargs", [dict(temperature=-1), dict(top_k=-2), dict(top_p=0.0), dict(top_p=1.5)])
def test_bad_sampling_params(kwargs):
    with pytest.raises(ValueError):
        SamplingParams(**kwargs)
