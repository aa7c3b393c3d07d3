"""The pipelined round loop: draft the next round while this one is verified (draft-ahead).

    for each round:
        budget  = policy.budget(ctx)
        draft   = carried pre-draft (a prefix of it) + fresh tokens, the stop hook asked after each one
        verdict = verification started (in a thread, or lazily)
        ahead   = up to policy.predraft(ctx, draft) tokens drafted after draft.tokens, while it runs
        commit(verdict); record.charge = clock.charge(record, draft, verdict, predrafted=len(ahead))
        carry   = ahead[1:] if every sent token was accepted and the edge's token == ahead[0] else []
        policy.observe(record)

A pre-draft is only a proposal: the next round's draft is sent to the same verifier as a fresh one, so
the output is exactly the target's (greedy: identical; sampling: the pre-drafted tokens are sampled from
``q`` conditioned on the committed sequence, independently of the verifier's randomness, as a fresh
draft would be). With ``predraft`` 0 for every round the loop runs exactly the rounds of
:func:`gelato.decoding.engine.speculative_generate`.

Verification runs in the background when the verifier has ``submit(committed, draft) -> Future``
(:class:`ConcurrentVerifier` wraps any verifier, in-process or remote): the device drafts ahead on its
own thread while the request is outstanding, and stops drafting ahead once the verdict is back. Otherwise
verification runs after the pre-draft (a modelled clock overlaps the two in time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from gelato.decoding.engine import (GenerationResult, Proposer, RoundClock, Verifier, check_generation_args,
                                    close_round, commit_round, generation_result)
from gelato.decoding.proposer import DraftedToken, KeepDrafting, draft_loop
from gelato.decoding.types import Draft, PhaseTimes, RoundRecord, Verdict
from gelato.decoding.policy import DraftPolicy, RoundContext


class ConcurrentVerifier:
    """Runs ``verifier.verify`` on a background thread: ``submit(committed, draft) -> Future[Verdict]``.

    Works for any object with ``verify(committed, draft)``: the in-process target verifier or a remote
    one over gRPC. One round is in flight at a time (a single worker thread keeps rounds in order).
    """

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gelato-verify")

    def submit(self, committed: Sequence[int], draft: Draft) -> Future:
        return self._pool.submit(self.verifier.verify, list(committed), draft)

    def verify(self, committed: Sequence[int], draft: Draft) -> Verdict:
        return self.submit(committed, draft).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "ConcurrentVerifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getattr__(self, item: str):
        return getattr(self.__dict__["verifier"], item)


class _Lazy:
    """A verification that runs when its result is asked for (after the pre-draft)."""

    def __init__(self, verifier: Verifier, committed: Sequence[int], draft: Draft) -> None:
        self._call = lambda: verifier.verify(list(committed), draft)

    def done(self) -> bool:
        return False

    def result(self) -> Verdict:
        return self._call()


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
    draft.n_carried = min(len(carry), draft.n_computed)
    return draft


def predraft(proposer: Proposer, committed: Sequence[int], sent: Sequence[int], depth: int,
             stop: Callable[[], bool] | None = None) -> list[DraftedToken]:
    """Up to ``depth`` tokens after ``committed + sent``, as if every sent token will be accepted; stops early
    once ``stop()`` is true (the verdict is back). Proposers may provide their own ``predraft``."""
    own = getattr(proposer, "predraft", None)
    if own is not None:
        return own(committed, sent, depth, stop)
    ahead: list[DraftedToken] = []
    for _ in range(depth):
        if ahead and stop is not None and stop():
            break
        ahead.append(proposer.draft_next(committed, list(sent) + [t.token for t in ahead]))
    return ahead


def usable_carry(ahead: Sequence[DraftedToken], draft: Draft, verdict: Verdict) -> list[DraftedToken]:
    """The pre-draft is the next round's draft iff every sent token was accepted and the edge's own token
    is the first pre-drafted one; then the tokens after it are carried over."""
    if ahead and verdict.accepted == len(draft.tokens) and verdict.token == ahead[0].token:
        return list(ahead[1:])
    return []


def predraft_limit(proposer: Proposer, ctx: RoundContext, draft: Draft) -> int:
    """Most tokens worth drafting ahead: within the tokens left to generate and the proposer's reach."""
    limit = max(0, ctx.max_budget - len(draft.tokens))
    k_max = getattr(proposer, "k_max", None)
    if k_max is not None:
        limit = min(limit, max(0, int(k_max) - len(draft.tokens)))
    return limit


def pipelined_generate(prompt_ids: Sequence[int], proposer: Proposer, verifier: Verifier, policy: DraftPolicy,
                       max_new_tokens: int, eos_token_id: int | None = None, clock: RoundClock | None = None,
                       round_offset: int = 0, on_round: Callable[[RoundRecord], None] | None = None,
                       max_rounds: int | None = None) -> GenerationResult:
    """:func:`~gelato.decoding.engine.speculative_generate` with one round in flight while the device
    drafts ahead (``policy.predraft``); same arguments, same result."""
    check_generation_args(prompt_ids, max_new_tokens)
    committed = list(prompt_ids)
    prompt_len = len(committed)
    rounds: list[RoundRecord] = []
    carry: list[DraftedToken] = []
    stop_reason = "length"
    ask_depth = getattr(policy, "predraft", None)
    submit = getattr(verifier, "submit", None)
    t_start = time.perf_counter()
    while len(committed) - prompt_len < max_new_tokens and (max_rounds is None or len(rounds) < max_rounds):
        t0 = time.perf_counter()
        generated = len(committed) - prompt_len
        ctx = RoundContext(index=round_offset + len(rounds), generated=generated, context_len=len(committed),
                           max_budget=max_new_tokens - generated - 1, carried=len(carry))
        if clock is not None:
            ctx = RoundContext(**{**ctx.__dict__, "link": clock.begin_round(ctx)})
        budget = max(0, min(policy.budget(ctx), ctx.max_budget))
        t1 = time.perf_counter()
        draft = propose_with_carry(proposer, committed, budget, policy.keep_drafting, carry)
        t2 = time.perf_counter()
        depth = 0
        if ask_depth is not None and draft.tokens:
            depth = max(0, min(int(ask_depth(ctx, draft)), predraft_limit(proposer, ctx, draft)))
        pending = submit(committed, draft) if submit is not None else _Lazy(verifier, committed, draft)
        ahead = predraft(proposer, committed, draft.tokens, depth, pending.done) if depth else []
        t3 = time.perf_counter()
        verdict = pending.result()
        t4 = time.perf_counter()
        start = len(committed)
        _, hit_eos = commit_round(committed, draft, verdict, prompt_len, max_new_tokens, eos_token_id)
        carry = [] if hit_eos else usable_carry(ahead, draft, verdict)
        proposer.rollback(len(committed) + len(carry))
        record = RoundRecord(index=ctx.index, start=start, budget=budget, drafted=draft.n_computed,
                             sent=len(draft.tokens), accepted=verdict.accepted, token=verdict.token,
                             entropies=draft.entropies, predrafted=len(ahead), carried=draft.n_carried)
        if clock is not None:
            record.charge = (clock.charge(record, draft, verdict, predrafted=len(ahead)) if ahead or draft.n_carried
                             else clock.charge(record, draft, verdict))
            if ahead:
                record.charge["predraft_used"] = bool(carry)
        record.wall = PhaseTimes(draft=(t2 - t1) + (t3 - t2), verify=t4 - t3,
                                 other=(t1 - t0) + (time.perf_counter() - t4))
        close_round(record, policy, rounds, on_round)
        if hit_eos:
            stop_reason = "eos"
            break
    return generation_result(committed, prompt_len, rounds, t_start, stop_reason)
