"""The round loop, written once for every mode: in process, replayed, modelled, networked, drafting ahead.

    for each round:
        budget  = policy.budget(ctx), clipped to ctx.max_budget        # outer loop: the draft length
        draft   = carried pre-draft + fresh tokens, policy.keep_drafting asked after each   # inner loop
        pending = verifier.verify(committed, draft), in the background when it is worth it
        ahead   = proposer.predraft(...) up to policy.predraft(ctx, draft) tokens while it runs
        commit  = RoundCommit.of(draft.tokens, verdict), cut at EOS or the length limit
        carry   = ahead[1:] if every sent token was accepted and the edge's token == ahead[0] else []
        record  = RoundRecord(..., tokens=commit, measured=verdict.measured, charge=clock.charge(...))
        policy.observe(record); on_round(record)

A round may instead be a burst: when ``policy.stream(ctx)`` > 0 (clipped to ``ctx.max_stream``: the tokens left,
within the verifier's burst limit; 0 for a verifier without ``stream``) the device drafts nothing and the
verifier generates that many tokens by itself, each reported to ``on_token`` as it arrives (the edge's
zero-draft rounds back to back, with its own generator: lossless as edge-autoregressive is). Its record has
budget, sent and accepted 0 and ``streamed`` = the tokens streamed; the draft's cache catches up at its next
draft, whose first forward feeds the committed tokens it lacks.

``ctx.max_budget`` is the one draft-length ceiling (:func:`draft_ceiling`): the least of the tokens left, the
proposer's ``reach`` and the verifier's ``max_draft``; no caller wraps a policy to bound its budget.
Proposers, verifiers and clocks are interchangeable objects; this loop does not know which it has. With
``policy.predraft`` 0 (every policy but the pipelined ones) nothing is drafted ahead and the rounds are the
plain draft-verify rounds. A pre-draft is only a proposal: the next round's draft is sent to the same
verifier as a fresh one, so the output is exactly the target's (greedy: identical; sampling: pre-drafted
tokens are sampled from q conditioned on the committed sequence, independently of the verifier's
randomness, as a fresh draft would be).

``background_verify``: verify on a second thread while drafting ahead, and stop drafting ahead once the
verdict is back (a live deployment: the wait is real). Otherwise verification runs after the pre-draft,
which keeps replayed and modelled runs deterministic (the modelled clock overlaps the two in time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch

from gelato.decoding.metrics import SpecMetrics, summarize_rounds
from gelato.decoding.policy import DraftPolicy, RoundContext
from gelato.decoding.proposer import DraftedToken, KeepDrafting, Proposer, draft_loop
from gelato.decoding.sampling import SamplingParams, choose_token, processed_probs
from gelato.decoding.types import Draft, PhaseTimes, RoundCharge, RoundCommit, RoundRecord, Verdict
from gelato.models.cached import CachedCausalLM


class Verifier(Protocol):
    """Verifies a round's draft. A verifier may also have ``max_draft``: the most draft tokens it verifies a
    round (known once its session is open; None or absent: unbounded); the loop never asks for more.
    A verdict may carry what the verifier measured of the round (``Verdict.measured``), which the loop puts
    on the round's record. A verifier that can run bursts also has ``stream(committed, n, on_token,
    stop_ids) -> Burst`` and may have ``max_stream`` (its most tokens per burst)."""

    def verify(self, committed: Sequence[int], draft: Draft) -> Verdict: ...


class RoundClock(Protocol):
    """Charges time and energy per round. ``begin_prompt`` starts a prompt (once per ``generate``, before
    its first round); ``begin_round`` returns the link state the policy may read; ``charge`` the round's cost
    (None: nothing charged, e.g. a recorder that charges later)."""

    def begin_prompt(self) -> None: ...

    def begin_round(self, ctx: RoundContext) -> Any: ...

    def charge(self, record: RoundRecord, draft: Draft, verdict: Verdict,
               predrafted: int = 0) -> RoundCharge | None: ...


@dataclass
class GenerationResult:
    token_ids: list[int]  # generated ids only
    rounds: list[RoundRecord] = field(default_factory=list)
    metrics: SpecMetrics = field(default_factory=SpecMetrics)
    stop_reason: str = "length"  # "length" | "eos"


def check_generation_args(prompt_ids: Sequence[int], max_new_tokens: int) -> None:
    """ValueError naming the problem for an empty prompt or a negative length."""
    if len(prompt_ids) == 0:
        raise ValueError("the prompt is empty: at least one token is needed to condition generation")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")


def commit_round(committed: list[int], draft: Draft, verdict: Verdict, prompt_len: int, max_new_tokens: int,
                 eos_token_id: int | None) -> tuple[list[int], bool]:
    """Append the round's :class:`RoundCommit` ids to ``committed``, cut at EOS or the length limit;
    (the ids appended, whether EOS was among them)."""
    return commit_ids(committed, RoundCommit.of(draft.tokens, verdict).ids, prompt_len, max_new_tokens, eos_token_id)


def commit_ids(committed: list[int], ids: Sequence[int], prompt_len: int, max_new_tokens: int,
               eos_token_id: int | None) -> tuple[list[int], bool]:
    """Append ``ids`` to ``committed``, cut at EOS or the length limit; (the ids appended, whether EOS was
    among them)."""
    new = list(ids)[: max_new_tokens - (len(committed) - prompt_len)]
    hit_eos = eos_token_id is not None and eos_token_id in new
    if hit_eos:
        new = new[: new.index(eos_token_id) + 1]
    committed.extend(new)
    return new, hit_eos


def propose_with_carry(proposer: Proposer, committed: Sequence[int], budget: int, keep_drafting: KeepDrafting,
                       carry: Sequence[DraftedToken]) -> Draft:
    """The round's draft: the carried pre-draft first (already computed), then fresh tokens.

    The stop hook sees every token, carried or fresh; carried tokens past the budget or a stop are dropped
    (their energy was billed when they were pre-drafted). ``Draft.n_carried`` counts the carried ones used.
    """
    if not carry:
        return proposer.propose(committed, budget, keep_drafting)
    ids = list(committed)

    def next_token(position: int, sent: list[int]) -> DraftedToken:
        return carry[position] if position < len(carry) else proposer.draft_next(ids, sent)

    draft = draft_loop(next_token, budget, keep_drafting, start=len(ids))
    return replace(draft, n_carried=min(len(carry), draft.n_computed))


def stream_ceiling(verifier: Verifier, tokens_left: int) -> int:
    """The most tokens a burst may ask for: the answer's tokens left, within the verifier's ``max_stream``;
    0 for a verifier that cannot stream."""
    if not callable(getattr(verifier, "stream", None)):
        return 0
    limit = getattr(verifier, "max_stream", None)
    return max(0, tokens_left if limit is None else min(tokens_left, limit))


def burst_round(ctx: RoundContext, verifier: Verifier, proposer: Proposer, committed: list[int], n: int,
                prompt_len: int, max_new_tokens: int, eos_token_id: int | None,
                on_token: Callable[[int], None] | None, t0: float) -> tuple[RoundRecord, bool]:
    """A burst of ``n`` tokens the verifier generates by itself, committed (cut at EOS) into ``committed``;
    (its record, whether EOS was among the tokens). ``on_token`` hears of each kept token as it arrives."""
    seen: list[int] = []

    def arrived(token: int) -> None:
        if on_token is not None and (eos_token_id is None or eos_token_id not in seen):
            on_token(token)
        seen.append(token)

    t1 = time.perf_counter()
    start = len(committed)
    burst = verifier.stream(list(committed), n, on_token=arrived,
                            stop_ids=() if eos_token_id is None else (eos_token_id,))
    new, hit_eos = commit_ids(committed, burst.tokens, prompt_len, max_new_tokens, eos_token_id)
    proposer.rollback(len(committed))  # the draft's cache catches up at its next draft
    t3 = time.perf_counter()
    wall = PhaseTimes(verify=t3 - t1, other=t1 - t0)
    return RoundRecord(index=ctx.index, start=start, budget=0, drafted=0, sent=0, accepted=0, token=burst.tokens[-1],
                       entropies=[], tokens=new, wall=wall, measured=burst.measured,
                       streamed=len(burst.tokens)), hit_eos


def draft_ceiling(tokens_left: int, reach: int | None, max_draft: int | None) -> int:
    """The one draft-length ceiling: the least of the tokens left to draft, the proposer's reach and the
    verifier's largest draft (None: no bound)."""
    return min(x for x in (tokens_left, reach, max_draft) if x is not None)


def predraft_depth(policy: DraftPolicy, proposer: Proposer, ctx: RoundContext, draft: Draft,
                   tokens_left: int) -> int:
    """Tokens to draft ahead: the policy's wish, within what a round may look ahead (draft plus pre-draft):
    the tokens left to draft and the proposer's reach. (The verifier's largest draft bounds the next
    round's draft, which clips the carried tokens.)"""
    if not draft.tokens:
        return 0
    limit = max(0, draft_ceiling(tokens_left, proposer.reach, None) - len(draft.tokens))
    return max(0, min(int(policy.predraft(ctx, draft)), limit))


def usable_carry(ahead: Sequence[DraftedToken], draft: Draft, verdict: Verdict) -> list[DraftedToken]:
    """The pre-draft is the next round's draft iff every sent token was accepted and the edge's own token
    is the first pre-drafted one; then the tokens after it are carried over."""
    if ahead and verdict.accepted == len(draft.tokens) and verdict.token == ahead[0].token:
        return list(ahead[1:])
    return []


class _Later:
    """A verification that runs when its result is asked for (after the pre-draft)."""

    def __init__(self, verifier: Verifier, committed: Sequence[int], draft: Draft) -> None:
        self._call = lambda: verifier.verify(list(committed), draft)

    def done(self) -> bool:
        return False

    def result(self) -> Verdict:
        return self._call()


class _Verification:
    """Starts a round's verification: now on a background thread (only while drafting ahead, when
    ``background``), else when its result is asked for. One round is in flight at a time."""

    def __init__(self, verifier: Verifier, background: bool) -> None:
        self.verifier = verifier
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="gelato-verify") if background else None

    def start(self, committed: Sequence[int], draft: Draft, drafting_ahead: bool) -> Future | _Later:
        if self._pool is not None and drafting_ahead:
            return self._pool.submit(self.verifier.verify, list(committed), draft)
        return _Later(self.verifier, committed, draft)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def generate(prompt_ids: Sequence[int], proposer: Proposer, verifier: Verifier, policy: DraftPolicy,
             max_new_tokens: int, eos_token_id: int | None = None, clock: RoundClock | None = None, *,
             background_verify: bool = False, round_offset: int = 0, max_rounds: int | None = None,
             on_round: Callable[[RoundRecord], None] | None = None,
             on_token: Callable[[int], None] | None = None) -> GenerationResult:
    """Generate up to ``max_new_tokens`` after ``prompt_ids`` by draft-verify rounds (at most ``max_rounds``).

    ``on_round`` hears of each round as soon as it is committed (``record.tokens``: streaming); ``on_token``
    hears of each token of a burst as soon as it arrives (before its round's ``on_round``, which repeats them
    in ``record.tokens``)."""
    check_generation_args(prompt_ids, max_new_tokens)
    committed = list(prompt_ids)
    prompt_len = len(committed)
    rounds: list[RoundRecord] = []
    carry: list[DraftedToken] = []
    stop_reason = "length"
    verification = _Verification(verifier, background_verify)
    t_start = time.perf_counter()
    if clock is not None:
        clock.begin_prompt()
    try:
        while len(committed) - prompt_len < max_new_tokens and (max_rounds is None or len(rounds) < max_rounds):
            t0 = time.perf_counter()
            generated = len(committed) - prompt_len
            tokens_left = max_new_tokens - generated - 1  # the round's own token is the last one
            ceiling = draft_ceiling(tokens_left, proposer.reach, getattr(verifier, "max_draft", None))
            ctx = RoundContext(index=round_offset + len(rounds), generated=generated, context_len=len(committed),
                               max_budget=ceiling, carried=len(carry),
                               max_stream=0 if carry else stream_ceiling(verifier, tokens_left + 1))
            if clock is not None:
                ctx = replace(ctx, link=clock.begin_round(ctx))
            n_stream = max(0, min(policy.stream(ctx), ctx.max_stream)) if ctx.max_stream else 0
            if n_stream:  # a burst: the verifier generates the round's tokens by itself
                record, hit_eos = burst_round(ctx, verifier, proposer, committed, n_stream, prompt_len,
                                              max_new_tokens, eos_token_id, on_token, t0)
                draft, verdict, ahead = Draft.empty(record.start), Verdict(accepted=0, token=record.token), []
            else:
                budget = max(0, min(policy.budget(ctx), ctx.max_budget))
                t1 = time.perf_counter()
                draft = propose_with_carry(proposer, committed, budget, policy.keep_drafting, carry)
                depth = predraft_depth(policy, proposer, ctx, draft, tokens_left)
                pending = verification.start(committed, draft, drafting_ahead=depth > 0)
                ahead = proposer.predraft(committed, draft.tokens, depth, pending.done) if depth else []
                t2 = time.perf_counter()
                verdict = pending.result()
                t3 = time.perf_counter()
                start = len(committed)
                new, hit_eos = commit_round(committed, draft, verdict, prompt_len, max_new_tokens, eos_token_id)
                carry = [] if hit_eos else usable_carry(ahead, draft, verdict)
                proposer.rollback(len(committed) + len(carry))
                wall = PhaseTimes(draft=t2 - t1, verify=t3 - t2, other=(t1 - t0) + (time.perf_counter() - t3))
                record = RoundRecord(index=ctx.index, start=start, budget=budget, drafted=draft.n_computed,
                                     sent=len(draft.tokens), accepted=verdict.accepted, token=verdict.token,
                                     entropies=draft.entropies, tokens=new, wall=wall, predrafted=len(ahead),
                                     carried=draft.n_carried, predraft_used=bool(carry), measured=verdict.measured)
            if clock is not None:  # the clock sees the whole record, its measured phases included
                record = replace(record, charge=clock.charge(record, draft, verdict, predrafted=len(ahead)))
            policy.observe(record)
            rounds.append(record)
            if on_round is not None:
                on_round(record)
            if hit_eos:
                stop_reason = "eos"
                break
    finally:
        verification.close()
    generated_ids = committed[prompt_len:]
    wall = time.perf_counter() - t_start
    return GenerationResult(generated_ids, rounds, summarize_rounds(rounds, len(generated_ids), wall), stop_reason)


@torch.inference_mode()
def target_only_generate(target: CachedCausalLM, prompt_ids: Sequence[int], params: SamplingParams,
                         max_new_tokens: int, eos_token_id: int | None = None,
                         generator: torch.Generator | None = None) -> GenerationResult:
    """Plain autoregressive decoding with the target alone: the reference speculative decoding reproduces."""
    check_generation_args(prompt_ids, max_new_tokens)
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
