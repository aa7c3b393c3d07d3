"""In-process verification: one target forward per round, then the pure rules of :mod:`gelato.decoding.rejection`
(re-exported here)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gelato.models.cached import CachedCausalLM
from gelato.decoding.rejection import (residual_distribution, sample_deferred_residual, verify_greedy,
                                       verify_rows, verify_stochastic)
from gelato.decoding.sampling import SamplingParams
from gelato.decoding.types import Draft, Verdict

__all__ = ["TargetModelVerifier", "residual_distribution", "sample_deferred_residual", "verify_draft",
           "verify_greedy", "verify_rows", "verify_stochastic"]


def verify_draft(target_logits: torch.Tensor, draft: Draft, params: SamplingParams,
                 generator: torch.Generator | None = None) -> Verdict:
    """The verdict on ``draft`` (exact q, the in-process case). ``target_logits``: (len(draft.tokens) + 1, vocab)."""
    return verify_rows(target_logits, draft.tokens, draft.q, params, generator)


class TargetModelVerifier:
    """Verifies in-process with one target forward over the newest committed token plus the draft."""

    def __init__(self, model: CachedCausalLM, params: SamplingParams, generator: torch.Generator | None = None):
        self.model = model
        self.params = params
        self.generator = generator

    def verify(self, committed: Sequence[int], draft: Draft) -> Verdict:
        logits = self.model.feed(list(committed) + draft.tokens, logits_from=len(committed) - 1)
        verdict = verify_draft(logits, draft, self.params, self.generator)
        self.model.truncate(len(committed) + verdict.accepted)  # roll back rejected positions
        return verdict
