"""Shared helpers of the transport tests: tiny model pairs, references, servers and remote generation."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from gelato.models.cached import CachedCausalLM
from gelato.models.tiny import noisy_copy, tiny_llama
from gelato.policies import StaticPolicy
from gelato.decoding.engine import GenerationResult, speculative_generate, target_only_generate
from gelato.decoding.proposer import DraftModelProposer
from gelato.decoding.sampling import SamplingParams
from gelato.transport.channel import EdgeClient
from gelato.transport.client import RemoteVerifier
from gelato.transport.fingerprint import synthetic_fingerprint
from gelato.transport.process import EdgeServerThread
from gelato.transport.server import EdgeConfig, EdgeServer

VOCAB = 96
FINGERPRINT = synthetic_fingerprint(VOCAB)
GREEDY = SamplingParams()
PROMPTS = [[3, 17, 42, 5, 8], [60, 1], [11, 12, 13, 14, 15, 16, 17, 18, 19], [77]]


def make_pair(seed: int = 10):
    """(target, draft): a random tiny Llama (LlamaConfig vocab 96, hidden 32, 2 layers, 4 heads, 2 KV heads)
    and a noisy copy of it, so drafts are partly accepted."""
    target = tiny_llama(vocab_size=VOCAB, hidden=32, layers=2, heads=4, seed=seed)
    return target, noisy_copy(target, noise=0.15, seed=seed + 1)


def reference(target, prompt: Sequence[int], n: int, params: SamplingParams = GREEDY) -> list[int]:
    return target_only_generate(CachedCausalLM(target), prompt, params, n).token_ids


def start_edge(target, port: int = 0, **config) -> EdgeServerThread:
    config.setdefault("grace_s", 0.1)
    thread = EdgeServerThread(EdgeServer(target, fingerprint=FINGERPRINT, config=EdgeConfig(**config)), port=port)
    thread.start()
    return thread


def remote_verifier(address: str | EdgeClient, params: SamplingParams = GREEDY, **kwargs) -> RemoteVerifier:
    kwargs.setdefault("rpc_timeout", 5.0)
    kwargs.setdefault("unreachable_after", 10.0)
    return RemoteVerifier(address, params, fingerprint=FINGERPRINT, **kwargs)


def remote_generate(address, draft, prompt: Sequence[int], n: int, policy=None, params: SamplingParams = GREEDY,
                    draft_generator: torch.Generator | None = None, on_round=None, verifier: RemoteVerifier | None = None,
                    **kwargs) -> tuple[GenerationResult, RemoteVerifier]:
    verifier = verifier or remote_verifier(address, params, **kwargs)
    proposer = DraftModelProposer(CachedCausalLM(draft), params, draft_generator)
    try:
        result = speculative_generate(prompt, proposer, verifier, policy or StaticPolicy(4), n, on_round=on_round)
    finally:
        verifier.close()
    return result, verifier


def clone(model):
    return copy.deepcopy(model)
