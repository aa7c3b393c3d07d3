"""One assembly of the draft/target pair: the proposer and the in-process verifier, seeded by the seed rule.

Every in-process caller (the CLI, the experiment runner, the API without an edge, the zoo's evaluation, the
benchmarks) builds its parts here; :func:`gelato.device.pair.remote_pair` builds the remote pair with
:func:`draft_proposer` and the same rule (:mod:`gelato.decoding.seeds`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gelato.decoding.payload_modes import DEFAULT_PAYLOAD, PayloadMode
from gelato.decoding.policy import DraftPolicy
from gelato.decoding.sampling import SamplingParams
from gelato.decoding.seeds import device_seed, edge_seed, generator
from gelato.generation.adapters import DraftModelProposer, TargetModelVerifier
from gelato.generation.loop import GenerationResult, RoundClock, generate, target_only_generate
from gelato.models.cached import CachedCausalLM


def draft_proposer(draft: torch.nn.Module | CachedCausalLM, params: SamplingParams, seed: int | None = 0,
                   vocab_size: int | None = None, payload: PayloadMode | str = DEFAULT_PAYLOAD) -> DraftModelProposer:
    """The device's proposer: the draft model with its own KV cache, sampling from the device's stream
    (``seed=None``: unseeded) what ``payload`` sends: under ``draws`` (``PayloadMode.quantized_q``) its whole q
    rounded to 2^24, else the sparse q~."""
    lm = draft if isinstance(draft, CachedCausalLM) else CachedCausalLM(draft, vocab_size)
    extra = {"draft_top_k": 0, "quantized": True} if PayloadMode(payload).quantized_q else {}
    return DraftModelProposer(lm, params, None if seed is None else generator(device_seed(seed)), **extra)


def target_verifier(target: torch.nn.Module | CachedCausalLM, params: SamplingParams, seed: int | None = 0,
                    vocab_size: int | None = None) -> TargetModelVerifier:
    """The in-process edge: the target model with its own KV cache, verifying with the edge's stream."""
    lm = target if isinstance(target, CachedCausalLM) else CachedCausalLM(target, vocab_size)
    return TargetModelVerifier(lm, params, None if seed is None else generator(edge_seed(seed)))


def local_pair(draft, target, params: SamplingParams, seed: int | None = 0, vocab_size: int | None = None,
               payload: PayloadMode | str = DEFAULT_PAYLOAD) -> tuple[DraftModelProposer, TargetModelVerifier]:
    """(proposer, verifier) for in-process speculative decoding with ``seed``; the proposer drafts what ``payload``
    would send (in process every payload verifies with the q the token came from: the same distribution)."""
    return (draft_proposer(draft, params, seed, vocab_size, payload),
            target_verifier(target, params, seed, vocab_size))


def generate_speculative(draft, target, prompt_ids: Sequence[int], params: SamplingParams, policy: DraftPolicy,
                         max_new_tokens: int, eos_token_id: int | None = None, seed: int = 0,
                         clock: RoundClock | None = None, vocab_size: int | None = None,
                         on_round=None, on_token=None) -> GenerationResult:
    """Speculative decoding in process: the pair from :func:`local_pair` through the round loop (``on_token``:
    each token of an edge burst as it is generated)."""
    proposer, verifier = local_pair(draft, target, params, seed, vocab_size)
    return generate(prompt_ids, proposer, verifier, policy, max_new_tokens, eos_token_id, clock, on_round=on_round,
                    on_token=on_token)


def generate_target_only(target, prompt_ids: Sequence[int], params: SamplingParams, max_new_tokens: int,
                         eos_token_id: int | None = None, seed: int = 0,
                         vocab_size: int | None = None) -> GenerationResult:
    """The reference: the target alone, sampling from ``seed``'s own stream."""
    lm = target if isinstance(target, CachedCausalLM) else CachedCausalLM(target, vocab_size)
    return target_only_generate(lm, prompt_ids, params, max_new_tokens, eos_token_id, generator(seed))
