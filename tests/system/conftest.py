"""Tiny random Llama pairs for running the real round loop under the modelled clock."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from gelato.decoding.sampling import SamplingParams
from gelato.decoding.seeds import device_and_edge_generators
from gelato.generation import DraftModelProposer, TargetModelVerifier
from gelato.models.cached import CachedCausalLM

VOCAB = 64


def tiny_llama(seed: int, layers: int = 2, hidden: int = 32) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="session")
def make_tiny_llama():
    return tiny_llama


@pytest.fixture(scope="session")
def make_spec_pair():
    return make_spec


@pytest.fixture(scope="session")
def tiny_pair():
    """(draft, target) torch modules: different random weights."""
    return tiny_llama(1, layers=1), tiny_llama(2, layers=2)


def make_spec(draft_module, target_module, params: SamplingParams, seed: int = 0):
    """A fresh proposer and verifier (fresh KV caches), seeded as production seeds them
    (:func:`gelato.decoding.seeds.device_and_edge_generators`)."""
    g_d, g_t = device_and_edge_generators(seed)
    draft = CachedCausalLM(draft_module)
    target = CachedCausalLM(target_module)
    return DraftModelProposer(draft, params, g_d), TargetModelVerifier(target, params, g_t)


@pytest.fixture(scope="session")
def near_pair():
    """(draft, target) where the draft is the target with small weight noise: a mix of accepts and rejects."""
    target = tiny_llama(2, layers=2)
    draft = copy.deepcopy(target)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in draft.parameters():
            p.add_(0.003 * torch.randn(p.shape, generator=gen))
    return draft, target
