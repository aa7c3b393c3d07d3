"""Draft proposal: up to ``budget`` tokens from the draft model, asking a stop hook after each one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from gelato.decoding.sampling import (
    DRAFT_TOP_K,
    SamplingParams,
    choose_token,
    entropy_nats,
    processed_probs,
    proposal_probs,
)
from gelato.decoding.types import Draft, DraftStep, SparseDist, StopDecision

KeepDrafting = Callable[[DraftStep], StopDecision]


def always_continue(step: DraftStep) -> StopDecision:
    return StopDecision.CONTINUE


def draft_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None,
                draft_top_k: int = DRAFT_TOP_K, quantized: bool = False):
    """Pure step: (token, the distribution it was drawn from, entropy of q) from one row of draft logits.

    Under sampling the token is drawn from q~ = :func:`proposal_probs` (q's ``draft_top_k`` most likely
    entries, renormalised), which is returned: it is what the payload sends and the verifier uses. Greedy
    decoding returns the whole q (its argmax is in every q~). The entropy is always q's, the draft's
    uncertainty the policies read. ``quantized``: q~ rounded to 2^24 (the ``draws`` payload)."""
    q = processed_probs(logits, params)
    proposal = q if params.greedy else proposal_probs(q, draft_top_k, quantized)
    token = choose_token(proposal, params, generator)
    return token, proposal, float(entropy_nats(q))


@dataclass(frozen=True)
class DraftedToken:
    """One drafted token with what the stop hook and the payload need about it."""

    token: int
    entropy: float
    token_prob: float
    max_prob: float
    q: SparseDist | None = None  # what it was drawn from: q~ under sampling (None for replayed/synthetic drafts)
    topp_support: int | None = None  # replayed drafts: top-p support size of q at the payload's threshold


def draft_loop(next_token: Callable[[int, list[int]], DraftedToken], budget: int, keep_drafting: KeepDrafting,
               start: int) -> Draft:
    """The inner loop shared by every proposer: draft up to ``budget`` tokens, asking the hook after each.

    ``next_token(position, sent_so_far)`` produces the next drafted token. A token the hook answers
    ``STOP_BEFORE`` for was computed (and is billed) but is not sent; at least one token is always sent.
    """
    if budget < 0:
        raise ValueError(f"draft budget must be >= 0, got {budget}")
    tokens: list[int] = []
    q_sent: list[SparseDist] = []
    supports: list[int | None] = []
    entropies: list[float] = []
    token_probs: list[float] = []
    max_probs: list[float] = []
    for position in range(budget):
        d = next_token(position, tokens)
        entropies.append(d.entropy)
        token_probs.append(d.token_prob)
        max_probs.append(d.max_prob)
        decision = keep_drafting(DraftStep(position, d.token, d.entropy, d.token_prob, d.max_prob))
        if decision is StopDecision.STOP_BEFORE and position > 0:
            break
        tokens.append(d.token)
        if d.q is not None:
            q_sent.append(d.q)
        supports.append(d.topp_support)
        if decision is not StopDecision.CONTINUE:
            break
    return Draft(tokens=tokens, q=q_sent if len(q_sent) == len(tokens) else None, entropies=entropies,
                 token_probs=token_probs, max_probs=max_probs, budget=budget, n_computed=len(entropies),
                 start=start, topp_support=supports if all(x is not None for x in supports) and supports else None)


class Proposer(ABC):
    """Drafts tokens for the round loop. ``draft_next`` is the one step a proposer must give; the rest have
    defaults a proposer may override (a replayed trace bounds ``reach``; the synthetic source pre-drafts its
    own way)."""

    reach: int | None = None  # most tokens one round can look ahead (draft + pre-draft); None: no bound

    @abstractmethod
    def draft_next(self, committed: Sequence[int], sent: Sequence[int]) -> DraftedToken:
        """One drafted token after ``committed + sent``."""

    def propose(self, committed: Sequence[int], budget: int, keep_drafting: KeepDrafting = always_continue) -> Draft:
        """Up to ``budget`` tokens after ``committed``, asking ``keep_drafting`` after each."""
        ids = list(committed)
        return draft_loop(lambda position, sent: self.draft_next(ids, sent), budget, keep_drafting, start=len(ids))

    def predraft(self, committed: Sequence[int], sent: Sequence[int], depth: int,
                 stop: Callable[[], bool] | None = None) -> list[DraftedToken]:
        """Up to ``depth`` tokens after ``committed + sent``, as if every sent token will be accepted;
        stops early once ``stop()`` is true (the verdict is back)."""
        ahead: list[DraftedToken] = []
        for _ in range(depth):
            if ahead and stop is not None and stop():
                break
            ahead.append(self.draft_next(committed, list(sent) + [t.token for t in ahead]))
        return ahead

    def rollback(self, committed_len: int) -> None:
        """Forget drafted state past the first ``committed_len`` tokens (default: nothing kept)."""
