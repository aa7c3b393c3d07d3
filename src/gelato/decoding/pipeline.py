"""Convenience entry points that wire a draft/target pair into the round loop (in-process verification)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gelato.models.cached import CachedCausalLM
from gelato.decoding.policy import DraftPolicy
from gelato.decoding.engine import GenerationResult, RoundClock, speculative_generate, target_only_generate
from gelato.decoding.proposer import DraftModelProposer
from gelato.decoding.sampling import SamplingParams
from gelato.decoding.verifier import TargetModelVerifier


def device_and_edge_generators(seed: int) -> tuple[torch.Generator, torch.Generator]:
    """Independent RNGs for the device (draft sampling) and the edge (verification), both from one seed."""
    return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1_000_003)


def generate_speculative(draft: torch.nn.Module, target: torch.nn.Module, prompt_ids: Sequence[int],
                         params: SamplingParams, policy: DraftPolicy, max_new_tokens: int,
                         eos_token_id: int | None = None, seed: int = 0, clock: RoundClock | None = None,
                         vocab_size: int | None = None, on_round=None, on_tokens=None) -> GenerationResult:
    device_gen, edge_gen = device_and_edge_generators(seed)
    proposer = DraftModelProposer(CachedCausalLM(draft, vocab_size), params, device_gen)
    verifier = TargetModelVerifier(CachedCausalLM(target, vocab_size), params, edge_gen)
    return speculative_generate(prompt_ids, proposer, verifier, policy, max_new_tokens, eos_token_id, clock,
                                on_round=on_round, on_tokens=on_tokens)


def generate_target_only(target: torch.nn.Module, prompt_ids: Sequence[int], params: SamplingParams,
                         max_new_tokens: int, eos_token_id: int | None = None, seed: int = 0,
                         vocab_size: int | None = None) -> GenerationResult:
    return target_only_generate(CachedCausalLM(target, vocab_size), prompt_ids, params, max_new_tokens,
                                eos_token_id, torch.Generator().manual_seed(seed))
