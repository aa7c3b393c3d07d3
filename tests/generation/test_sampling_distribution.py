"""Lossless under sampling: the first two generated tokens follow the target's own distribution.

Exact target probabilities P(a, b) = p(a | prompt) p(b | prompt, a) are computed by enumeration over a
tiny vocabulary; speculative samples come from the real engine functions. A chi-square test compares
them. The same file shows the test has power: a verifier with the ratio inverted (min(1, q/p), a bug
found in public DSSD code) fails it decisively. Edge bursts (the edge streaming tokens it generates itself)
interleaved with drafted rounds pass it too; a burst that forgets its own tokens fails it.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from burst_helpers import PATTERNS, BurstMixPolicy
from distribution_helpers import PROMPT, VOCAB, TabledModel, chi_square_pvalue, exact_two_token_probs, logits_table

from gelato.decoding.proposer import DraftedToken, draft_token
from gelato.decoding.rejection import residual_distribution, sample_deferred_residual, verify_stochastic
from gelato.decoding.sampling import SamplingParams, entropy_nats, processed_probs, sample_from
from gelato.decoding.seeds import device_and_edge_generators
from gelato.decoding.types import Burst, Draft, SparseDist, Verdict
from gelato.generation import DraftModelProposer, TargetModelVerifier, generate
from gelato.models import CachedCausalLM
from gelato.models.tiny import tiny_llama
from gelato.policies import StaticPolicy
from gelato.wire.payload import pack_support, topp_support, unpack_support

N_SAMPLES = 20_000


@pytest.fixture(scope="module")
def models():
    target = tiny_llama(vocab_size=VOCAB, hidden=16, layers=1, seed=3)
    # Adversarial draft: an unrelated model with a sharpened head, far from the target.
    draft = tiny_llama(vocab_size=VOCAB, hidden=16, layers=1, seed=7)
    return draft, target


def inverted_ratio_verify(p, draft_tokens, q, generator=None):
    """The bug: accept with min(1, q/p) instead of min(1, p/q)."""
    vocab = p.shape[-1]
    for i, x in enumerate(draft_tokens):
        q_i = q[i].to_dense(vocab)
        if float(torch.rand((), generator=generator)) < min(1.0, float(q_i[x]) / max(float(p[i, x]), 1e-30)):
            continue
        return Verdict(accepted=i, token=sample_from(residual_distribution(p[i], q_i), generator))
    return Verdict(accepted=len(draft_tokens), token=sample_from(p[len(draft_tokens)], generator))


def dssd_verify(p, draft_tokens, q, generator=None):
    """DSSD split: the edge knows only q(x) of each drafted token and defers the residual; the device, which
    holds the whole q, samples it."""
    q_token = [SparseDist(ids=torch.tensor([x]), probs=q_i.to_dense(p.shape[-1])[x : x + 1].clone())
               for x, q_i in zip(draft_tokens, q)]
    edge = verify_stochastic(p, draft_tokens, q_token, generator, defer_residual=True)
    return sample_deferred_residual(edge, q, generator)


PAPER_TOP_P = 0.7  # small, so drafted tokens often fall outside the sent support


def paper_topp_part(q: SparseDist) -> SparseDist:
    """What the paper's payload carries of q: its top-p part, through the real bit packer (18 + 32 bits)."""
    ids, probs = topp_support(q, PAPER_TOP_P)
    ids, probs = unpack_support(pack_support(ids, probs, 18, 32), 18, 32)
    return SparseDist(ids=torch.from_numpy(ids), probs=torch.from_numpy(probs))


def paper_topp_verify(p, draft_tokens, q, generator=None):
    return verify_stochastic(p, draft_tokens, [paper_topp_part(q_i) for q_i in q], generator, q_truncated=True)


PAYLOAD_RULES = {"compact": verify_stochastic, "dssd": dssd_verify, "paper_topp": paper_topp_verify}


class RuleVerifier(TargetModelVerifier):
    """The real verifier with another verification rule: one payload mode's, or a buggy one."""

    def __init__(self, model, params, generator, rule) -> None:
        super().__init__(model, params, generator)
        self.rule = rule

    def verify(self, committed, draft) -> Verdict:
        logits = self.model.feed(list(committed) + draft.tokens, logits_from=len(committed) - 1)
        p = torch.stack([processed_probs(row, self.params) for row in logits])
        return self.rule(p, draft.tokens, draft.q, self.generator)


class WholeQClaimingProposer(DraftModelProposer):
    """The bug the sparse-proposal test must catch: the token comes from q~ but the verifier is handed the whole q."""

    def draft_next(self, committed, sent) -> DraftedToken:
        drafted = super().draft_next(committed, sent)
        q = processed_probs(self.model.feed(list(committed) + list(sent))[-1], self.params)
        return dataclasses.replace(drafted, q=SparseDist.from_dense(q))


SETTINGS = {
    "adversarial": SamplingParams(temperature=1.0),
    "top-k": SamplingParams(temperature=0.8, top_k=3),
    "top-p": SamplingParams(temperature=1.0, top_p=0.8),
}


def speculative_pvalue(models, params: SamplingParams, verify, draft_top_k: int = 0,
                       claim_whole_q: bool = False) -> float:
    """Chi-square p-value of the first two tokens of N_SAMPLES real speculative generations (K = 2, three tokens,
    so the first round drafts two) against exact enumeration."""
    draft_table, target_table = logits_table(models[0]), logits_table(models[1])
    device_gen, edge_gen = device_and_edge_generators(1234)
    proposer = (WholeQClaimingProposer if claim_whole_q else DraftModelProposer)(
        TabledModel(draft_table), params, device_gen, draft_top_k=draft_top_k)
    verifier = (TargetModelVerifier(TabledModel(target_table), params, edge_gen) if verify is verify_stochastic
                else RuleVerifier(TabledModel(target_table), params, edge_gen, verify))
    policy = StaticPolicy(2)
    samples = []
    for _ in range(N_SAMPLES):
        ids = generate(PROMPT, proposer, verifier, policy, max_new_tokens=3).token_ids
        samples.append((ids[0], ids[1]))
    return chi_square_pvalue(samples, exact_two_token_probs(target_table, params))


@pytest.mark.slow  # 20,000 sampled generations: minutes here
@pytest.mark.parametrize("name", list(SETTINGS))
def test_speculative_sampling_matches_target(models, name):
    assert speculative_pvalue(models, SETTINGS[name], verify_stochastic) > 1e-3


@pytest.mark.slow  # 20,000 sampled generations: minutes here
@pytest.mark.parametrize("mode, name", [("dssd", "adversarial"), ("paper_topp", "adversarial"), ("dssd", "top-k")])
def test_every_payload_mode_matches_target(models, mode, name):
    """The rules the edge and the device run for each payload mode sample the target's distribution."""
    assert speculative_pvalue(models, SETTINGS[name], PAYLOAD_RULES[mode]) > 1e-3


SPARSE_TOP_K = 2  # of VOCAB = 6: the target often wants a token q~ never proposes


@pytest.mark.slow  # 20,000 sampled generations: minutes here
@pytest.mark.parametrize("mode, name", [("compact", "adversarial"), ("compact", "top-p"), ("compact", "top-k"),
                                        ("dssd", "adversarial"), ("paper_topp", "adversarial")])
def test_sparse_proposals_match_target(models, mode, name):
    """Drafting from the truncated q~ and verifying with q~ samples the target's distribution, whatever the
    request's own sampling settings (which define p) and the payload mode."""
    assert speculative_pvalue(models, SETTINGS[name], PAYLOAD_RULES[mode], draft_top_k=SPARSE_TOP_K) > 1e-3


@pytest.mark.slow  # 20,000 sampled generations: minutes here
def test_sparse_proposals_verified_with_whole_q_fail(models):
    """Negative control: tokens drawn from q~ but verified against the whole q are biased, and the test sees it."""
    assert speculative_pvalue(models, SETTINGS["adversarial"], verify_stochastic, draft_top_k=SPARSE_TOP_K,
                              claim_whole_q=True) < 1e-6


def test_draft_token_sends_only_the_truncated_support(models):
    params = SETTINGS["adversarial"]
    logits = logits_table(models[0], 1)[()]
    gen = torch.Generator().manual_seed(0)
    tokens = set()
    for _ in range(200):
        token, q_tilde, entropy = draft_token(logits, params, gen, SPARSE_TOP_K)
        tokens.add(token)
        assert SparseDist.from_dense(q_tilde).support_size == SPARSE_TOP_K
        assert abs(float(q_tilde.sum()) - 1.0) < 1e-6
    q = processed_probs(logits, params)
    assert tokens == set(torch.topk(q, SPARSE_TOP_K).indices.tolist())
    assert entropy == pytest.approx(float(entropy_nats(q)))  # the policies still read the draft's own entropy
    greedy_token, greedy_q, _ = draft_token(logits, SamplingParams(), gen, SPARSE_TOP_K)
    assert SparseDist.from_dense(greedy_q).support_size == VOCAB and greedy_token == int(torch.argmax(q))


def test_paper_topp_rule_rejects_outside_support(models):
    """The paper rule is exercised where it matters: drafted tokens outside the sent support occur."""
    q = SparseDist.from_dense(processed_probs(logits_table(models[0], 1)[()], SETTINGS["adversarial"]))
    assert paper_topp_part(q).support_size < q.support_size


def test_draft_is_far_from_target(models):
    """The adversarial setting is adversarial: total variation between p and q is large."""
    params = SETTINGS["adversarial"]
    p = processed_probs(logits_table(models[1], 1)[()], params)
    q = processed_probs(logits_table(models[0], 1)[()], params)
    assert 0.5 * float((p - q).abs().sum()) > 0.3


@pytest.mark.slow  # 20,000 sampled generations: minutes here
@pytest.mark.parametrize("name", ["adversarial", "top-k"])
def test_inverted_ratio_verifier_fails(models, name):
    assert speculative_pvalue(models, SETTINGS[name], inverted_ratio_verify) < 1e-6


@pytest.mark.slow  # 4,000 sampled generations with real forwards: a minute here
def test_engine_end_to_end_sampling_first_token(models):
    """The full round loop (KV caches, q transport, verification) also samples the target's distribution, with
    the draft proposing from q~ (top 2 of the request's top 4)."""
    draft_model, target_model = models
    params = SamplingParams(temperature=1.0, top_k=4)
    draft, target = CachedCausalLM(draft_model), CachedCausalLM(target_model)
    device_gen, edge_gen = device_and_edge_generators(5)
    proposer = DraftModelProposer(draft, params, device_gen, draft_top_k=SPARSE_TOP_K)
    verifier = TargetModelVerifier(target, params, edge_gen)
    samples = []
    for _ in range(4000):
        draft.reset()
        target.reset()
        ids = generate(PROMPT, proposer, verifier, StaticPolicy(3), max_new_tokens=2).token_ids
        samples.append((ids[0], ids[1]))
    expected = exact_two_token_probs(logits_table(target_model), params)
    assert chi_square_pvalue(samples, expected) > 1e-3


BURST_SAMPLES = 3000  # the negative controls below fail with far fewer


class ForgetfulStreamVerifier(TargetModelVerifier):
    """The bug a burst test must catch: the edge does not feed its own streamed token before the next step, so
    every token of a burst is drawn from the same conditional."""

    def stream(self, committed, n, on_token=None, stop_ids=()):
        tokens = [self.verify(list(committed), Draft.empty(len(committed))).token for _ in range(n)]
        return Burst(tokens)


def burst_samples(models, params: SamplingParams, verifier_type=TargetModelVerifier) -> list[tuple[int, int]]:
    """The first two tokens of BURST_SAMPLES generations whose rounds mix edge bursts (of 1 and 2 tokens) with
    drafted rounds (K = 2), cycling through every pattern of burst_helpers."""
    draft_table, target_table = logits_table(models[0]), logits_table(models[1])
    device_gen, edge_gen = device_and_edge_generators(4321)
    proposer = DraftModelProposer(TabledModel(draft_table), params, device_gen)
    verifier = verifier_type(TabledModel(target_table), params, edge_gen)
    samples = []
    for j in range(BURST_SAMPLES):
        policy = BurstMixPolicy(2, PATTERNS[j % len(PATTERNS)], n=1 + j // len(PATTERNS) % 2)
        ids = generate(PROMPT, proposer, verifier, policy, max_new_tokens=3).token_ids
        samples.append((ids[0], ids[1]))
    return samples


@pytest.mark.slow  # a few thousand sampled generations
def test_bursts_interleaved_with_drafts_match_target(models):
    params = SETTINGS["adversarial"]
    samples = burst_samples(models, params)
    assert chi_square_pvalue(samples, exact_two_token_probs(logits_table(models[1]), params)) > 1e-3
    # power: the same samples are far from the draft's own distribution
    assert chi_square_pvalue(samples, exact_two_token_probs(logits_table(models[0]), params)) < 1e-6


@pytest.mark.slow  # a few thousand sampled generations
def test_a_burst_that_forgets_its_own_tokens_fails(models):
    """Negative control: bursts whose steps do not condition on the tokens just streamed are biased, and the
    test sees it."""
    params = SETTINGS["adversarial"]
    samples = burst_samples(models, params, ForgetfulStreamVerifier)
    assert chi_square_pvalue(samples, exact_two_token_probs(logits_table(models[1]), params)) < 1e-6
