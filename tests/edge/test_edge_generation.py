"""Networked generation equals the target's own output (greedy), and seeded sampling equals local sampling."""

from __future__ import annotations

import grpc
import pytest
import torch
from edge_helpers import FINGERPRINT, GREEDY, PROMPTS, reference, remote_generate, remote_verifier, start_edge

from gelato.decoding.sampling import SamplingParams
from gelato.device.client import RemoteVerifier
from gelato.generation import DraftModelProposer, generate, generate_speculative
from gelato.models.cached import CachedCausalLM
from gelato.policies import StaticPolicy
from gelato.policies.gelato_paper import GelatoPaperPolicy
from gelato.policies.predictor import LinearRoundPredictor
from gelato.wire.errors import EdgeRejectedError

pytestmark = pytest.mark.slow  # starts an edge server

N = 24


@pytest.fixture(scope="module")
def edge(pair):
    target, _ = pair
    server = start_edge(target, max_batch=4)
    yield server
    server.stop()


@pytest.mark.parametrize("policy", [lambda: StaticPolicy(1), lambda: StaticPolicy(4),
                                    lambda: GelatoPaperPolicy(LinearRoundPredictor())],
                         ids=["static-k1", "static-k4", "gelato-paper"])
def test_greedy_networked_equals_target(pair, edge, policy):
    target, draft = pair
    for prompt in PROMPTS[:3]:
        result, verifier = remote_generate(edge.address, draft, prompt, N, policy=policy())
        assert result.token_ids == reference(target, prompt, N)
        assert verifier.stats.retries == 0 and verifier.stats.reopens == 0
        assert verifier.stats.up_bytes > 0 and len(verifier.stats.timings) == result.metrics.rounds
        # each round's measurement is on its record: the same messages the verifier's totals count
        assert sum(r.measured.up_bytes for r in result.rounds) == verifier.stats.up_bytes
        assert sum(r.measured.down_bytes for r in result.rounds) == verifier.stats.down_bytes
        assert all(r.measured.rpc_ms > 0 and r.measured.server_ms > 0 for r in result.rounds)
    m = edge.metrics()
    assert m["errors"] == {} and m["sessions"]["active"] == 0
    assert 0 < m["accepted"] < m["drafted"]  # the noisy draft is partly accepted


def test_explicit_open_reports_edge_limits(pair, edge):
    target, draft = pair
    verifier = remote_verifier(edge.address)
    reply = verifier.open(PROMPTS[0])
    assert reply.vocab_size == 96 and reply.max_draft_tokens == 32 and verifier.session_open
    assert verifier.max_draft == 32  # the round loop's ceiling, known at open
    result, _ = remote_generate(None, draft, PROMPTS[0], 10, verifier=verifier)
    assert result.token_ids == reference(target, PROMPTS[0], 10)
    assert verifier.stats.opens == 1


def test_sampling_compact_equals_local_with_same_seeds(pair):
    """The same --seed gives the same sampled text in-process (``gelato generate``'s path) and over the
    edge (``gelato device``: draft RNG seeded with the seed, the edge's derived from it), unbatched."""
    target, draft = pair
    params = SamplingParams(temperature=0.9, top_k=20)
    prompt, seed = PROMPTS[0], 1234
    local = generate_speculative(draft, target, prompt, params, StaticPolicy(3), N, seed=seed)
    server = start_edge(target, max_batch=1)
    try:
        remote, verifier = remote_generate(server.address, draft, prompt, N, policy=StaticPolicy(3), params=params,
                                           draft_generator=torch.Generator().manual_seed(seed), seed=seed)
    finally:
        server.stop()
    assert remote.token_ids == local.token_ids
    assert verifier.stats.up_bytes > 200  # the q distributions travel up


@pytest.mark.parametrize("mode", ["dssd", "paper_topp"])
def test_sampling_payload_modes_run(pair, edge, mode):
    _, draft = pair
    params = SamplingParams(temperature=1.0)
    result, verifier = remote_generate(edge.address, draft, PROMPTS[1], N, policy=StaticPolicy(4), params=params,
                                       draft_generator=torch.Generator().manual_seed(3), payload=mode,
                                       generator=torch.Generator().manual_seed(4), seed=5)
    assert len(result.token_ids) == N and all(0 <= t < 96 for t in result.token_ids)
    assert verifier.stats.reopens == 0
    rejected = [r.measured for r in result.rounds if r.accepted < r.sent]
    assert rejected  # seeded: some rounds reject a token
    if mode == "dssd":  # a rejection comes back as the target distribution; the device samples the residual
        assert min(t.down_bytes for t in rejected) > 3 * max(r.measured.down_bytes for r in result.rounds
                                                             if r.accepted == r.sent)


def test_fingerprint_mismatch_names_both(pair, edge):
    _, draft = pair
    verifier = RemoteVerifier(edge.address, GREEDY, fingerprint="sha256:deadbeef")
    with pytest.raises(EdgeRejectedError) as info:
        generate(PROMPTS[0], DraftModelProposer(CachedCausalLM(draft), GREEDY), verifier,
                             StaticPolicy(2), 4)
    verifier.close()
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "sha256:deadbeef" in info.value.details and FINGERPRINT in info.value.details
    assert info.value.committed_ids == PROMPTS[0] and info.value.generated_ids == []


@pytest.mark.parametrize("mode", ["paper_topp", "dssd"])
def test_greedy_with_other_payloads_equals_target(pair, edge, mode):
    target, draft = pair
    result, verifier = remote_generate(edge.address, draft, PROMPTS[0], N, payload=mode)
    assert result.token_ids == reference(target, PROMPTS[0], N)
    if mode == "paper_topp":  # the paper's payload carries the packed top-p q even when decoding greedily
        assert verifier.stats.up_bytes > 5 * verifier.stats.rounds * 4
