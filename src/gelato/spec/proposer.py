"""Draft proposal: up to ``budget`` tokens from the draft model, asking a stop hook after each one."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from gelato.models.cached import CachedCausalLM
from gelato.spec.sampling import SamplingParams, choose_token, entropy_nats, processed_probs
from gelato.spec.types import Draft, DraftStep, SparseDist, StopDecision

KeepDrafting = Callable[[DraftStep], StopDecision]


def always_continue(step: DraftStep) -> StopDecision:
    return StopDecision.CONTINUE


def draft_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None):
    """Pure step: (token, q, entropy of q) from one row of draft logits."""
    q = processed_probs(logits, params)
    token = choose_token(q, params, generator)
    return token, q, float(entropy_nats(q))


class DraftModelProposer:
    """Drafts with a live model whose KV cache persists across rounds (cropped by common prefix)."""

    def __init__(self, model: CachedCausalLM, params: SamplingParams, generator: torch.Generator | None = None):
        self.model = model
        self.params = params
        self.generator = generator

    def propose(self, committed: Sequence[int], budget: int, keep_drafting: KeepDrafting = always_continue) -> Draft:
        if budget < 0:
            raise ValueError(f"draft budget must be >= 0, got {budget}")
        ids = list(committed)
        tokens: list[int] = []
        q_sent: list[SparseDist] = []
        entropies: list[float] = []
        token_probs: list[float] = []
        max_probs: list[float] = []
        for position in range(budget):
            logits = self.model.feed(ids + tokens)[-1]
            token, q, entropy = draft_token(logits, self.params, self.generator)
            entropies.append(entropy)
            token_probs.append(float(q[token]))
            max_probs.append(float(q.max()))
            decision = keep_drafting(DraftStep(position, token, entropy, token_probs[-1], max_probs[-1]))
            if decision is StopDecision.STOP_BEFORE and position > 0:
                break  # computed (and billed) but not sent; at least one token is always sent
            tokens.append(token)
            q_sent.append(SparseDist.from_dense(q))
            if decision is not StopDecision.CONTINUE:
                break
        return Draft(tokens=tokens, q=q_sent, entropies=entropies,
                     token_probs=token_probs, max_probs=max_probs, budget=budget,
                     n_computed=len(entropies), start=len(ids))

    def rollback(self, committed_len: int) -> None:
        """Keep only cache positions that belong to the committed sequence (all but its newest token)."""
        self.model.truncate(max(0, committed_len - 1))
