"""The round loop, written once for every mode.

    for each round:
        budget  = policy.budget(ctx)                                   # outer loop
        draft   = proposer.propose(committed, budget, policy.keep_drafting)   # inner loop, per token
        verdict = verifier.verify(committed, draft)                    # local target, remote edge, trace
        commit(verdict); record.charge = clock.charge(...)             # modelled or wall clock
        policy.observe(record)

Proposers, verifiers and clocks are interchangeable objects; this loop does not know which it has.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from gelato.models.cached import CachedCausalLM
from gelato.decoding.policy import DraftPolicy, RoundContext
from gelato.decoding.metrics import SpecMetrics, summarize_rounds
from gelato.decoding.proposer import KeepDrafting
from gelato.decoding.sampling import SamplingParams, choose_token, processed_probs
from gelato.decoding.types import Draft, PhaseTimes, RoundRecord, Verdict


class Proposer(Protocol):
    def propose(self, committed: Sequence[int], budget: int, keep_drafting: KeepDrafting) -> Draft: ...

    def rollback(self, committed_len: int) -> None: ...


class Verifier(Protocol):
    def verify(self, committed: Sequence[int], draft: Draft) -> Verdict: ...


class RoundClock(Protocol):
    """Charges time and energy per round. ``begin_round`` returns the link state the policy may read."""

    def begin_round(self, ctx: RoundContext) -> Any: ...

    def charge(self, record: RoundRecord, draft: Draft, verdict: Verdict) -> dict: ...


@dataclass
class GenerationResult:
    token_ids: list[int]  # generated ids only
    rounds: list[RoundRecord] = field(default_factory=list)
    metrics: SpecMetrics = field(default_factory=SpecMetrics)
    stop_reason: str = "length"  # "length" | "eos"


def commit_round(committed: list[int], draft: Draft, verdict: Verdict, prompt_len: int,
                 max_new_tokens: int, eos_token_id: int | None) -> tuple[list[int], bool]:
    """Append accepted draft tokens plus the verdict's token; cut at EOS or the length limit."""
    new = draft.tokens[: verdict.accepted] + [verdict.token]
    room = max_new_tokens - (len(committed) - prompt_len)
    new = new[:room]
    hit_eos = eos_token_id is not None and eos_token_id in new
    if hit_eos:
        new = new[: new.index(eos_token_id) + 1]
    committed.extend(new)
    return new, hit_eos


def check_generation_args(prompt_ids: Sequence[int], max_new_tokens: int) -> None:
    """ValueError naming the problem for an empty prompt or a negative length."""
    if len(prompt_ids) == 0:
        raise ValueError("the prompt is empty: at least one token is needed to condition generation")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")


def close_round(record: RoundRecord, policy: DraftPolicy, rounds: list[RoundRecord],
                on_round: Callable[[RoundRecord], None] | None) -> None:
    """A verified, charged round: the policy observes it, the run keeps it, the caller hears of it."""
    policy.observe(record)
    rounds.append(record)
    if on_round is not None:
        on_round(record)


def generation_result(committed: Sequence[int], prompt_len: int, rounds: list[RoundRecord], t_start: float,
                      stop_reason: str) -> GenerationResult:
    """The generated ids after the prompt, the rounds and their wall-clock summary."""
    wall = time.perf_counter() - t_start
    generated_ids = list(committed[prompt_len:])
    return GenerationResult(generated_ids, rounds, summarize_rounds(rounds, len(generated_ids), wall), stop_reason)


def speculative_generate(prompt_ids: Sequence[int], proposer: Proposer, verifier: Verifier, policy: DraftPolicy,
                         max_new_tokens: int, eos_token_id: int | None = None, clock: RoundClock | None = None,
                         round_offset: int = 0, on_round: Callable[[RoundRecord], None] | None = None,
                         max_rounds: int | None = None,
                         on_tokens: Callable[[list[int]], None] | None = None) -> GenerationResult:
    """Generate up to ``max_new_tokens`` after ``prompt_ids`` by draft-verify rounds (at most ``max_rounds``).

    ``on_tokens`` receives each round's committed ids as soon as they are committed (streaming)."""
    check_generation_args(prompt_ids, max_new_tokens)
    committed = list(prompt_ids)
    prompt_len = len(committed)
    rounds: list[RoundRecord] = []
    stop_reason = "length"
    t_start = time.perf_counter()
    while len(committed) - prompt_len < max_new_tokens and (max_rounds is None or len(rounds) < max_rounds):
        t0 = time.perf_counter()
        generated = len(committed) - prompt_len
        ctx = RoundContext(index=round_offset + len(rounds), generated=generated, context_len=len(committed),
                           max_budget=max_new_tokens - generated - 1)
        if clock is not None:
            ctx = RoundContext(**{**ctx.__dict__, "link": clock.begin_round(ctx)})
        budget = max(0, min(policy.budget(ctx), ctx.max_budget))
        t1 = time.perf_counter()
        draft = proposer.propose(committed, budget, policy.keep_drafting)
        t2 = time.perf_counter()
        verdict = verifier.verify(committed, draft)
        t3 = time.perf_counter()
        start = len(committed)
        new, hit_eos = commit_round(committed, draft, verdict, prompt_len, max_new_tokens, eos_token_id)
        if on_tokens is not None:
            on_tokens(new)
        proposer.rollback(len(committed))
        record = RoundRecord(index=ctx.index, start=start, budget=budget, drafted=draft.n_computed,
                             sent=len(draft.tokens), accepted=verdict.accepted, token=verdict.token,
                             entropies=draft.entropies)
        if clock is not None:
            record.charge = clock.charge(record, draft, verdict)
        record.wall = PhaseTimes(draft=t2 - t1, verify=t3 - t2, other=(t1 - t0) + (time.perf_counter() - t3))
        close_round(record, policy, rounds, on_round)
        if hit_eos:
            stop_reason = "eos"
            break
    return generation_result(committed, prompt_len, rounds, t_start, stop_reason)


@torch.inference_mode()
def target_only_generate(target: CachedCausalLM, prompt_ids: Sequence[int], params: SamplingParams,
                         max_new_tokens: int, eos_token_id: int | None = None,
                         generator: torch.Generator | None = None) -> GenerationResult:
    """Plain autoregressive decoding with the target alone: the reference SD must reproduce."""
    if len(prompt_ids) == 0:
        raise ValueError("the prompt is empty: at least one token is needed to condition generation")
    committed = list(prompt_ids)
    t_start = time.perf_counter()
    stop_reason = "length"
    for _ in range(max_new_tokens):
        logits = target.feed(committed)[-1]
        token = choose_token(processed_probs(logits, params), params, generator)
        committed.append(token)
        if eos_token_id is not None and token == eos_token_id:
            stop_reason = "eos"
            break
    wall = time.perf_counter() - t_start
    generated = committed[len(prompt_ids):]
    metrics = SpecMetrics(generated_tokens=len(generated), rounds=len(generated), wall_seconds=wall,
                          verify_seconds=wall, mean_acceptance_length=1.0 if generated else 0.0,
                          tokens_per_second=len(generated) / wall if wall > 0 else 0.0)
    return GenerationResult(generated, [], metrics, stop_reason)
