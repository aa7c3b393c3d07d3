"""The models as loop parts: a draft model that proposes, a target model that verifies (in process).

Each keeps its KV cache across rounds (a :class:`CachedCausalLM`, cropped to the committed prefix); the
verification rules themselves are the pure functions of :mod:`gelato.decoding.rejection`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from gelato.decoding.proposer import DraftedToken, Proposer, draft_token
from gelato.decoding.rejection import verify_rows
from gelato.decoding.sampling import DRAFT_TOP_K, SamplingParams
from gelato.decoding.types import Burst, Draft, SparseDist, Verdict
from gelato.models.cached import CachedCausalLM


class DraftModelProposer(Proposer):
    """Drafts with a live model whose KV cache persists across rounds (cropped by common prefix)."""

    def __init__(self, model: CachedCausalLM, params: SamplingParams, generator: torch.Generator | None = None,
                 draft_top_k: int = DRAFT_TOP_K, quantized: bool = False):
        self.model = model
        self.params = params
        self.generator = generator
        self.draft_top_k = draft_top_k  # sampling draws from q~ (see draft_token); 0: the whole q
        self.quantized = quantized  # q~ rounded to 2^24: the draws payload (PayloadMode.quantized_q)

    def draft_next(self, committed: Sequence[int], sent: Sequence[int]) -> DraftedToken:
        """One drafted token after ``committed + sent`` (the cache keeps their common prefix)."""
        logits = self.model.feed(list(committed) + list(sent))[-1]
        token, q, entropy = draft_token(logits, self.params, self.generator, self.draft_top_k, self.quantized)
        return DraftedToken(token, entropy, float(q[token]), float(q.max()), SparseDist.from_dense(q))

    def rollback(self, committed_len: int) -> None:
        """Keep only cache positions that belong to the committed sequence (all but its newest token)."""
        self.model.truncate(max(0, committed_len - 1))


class TargetModelVerifier:
    """Verifies in-process with one target forward over the newest committed token plus the draft."""

    def __init__(self, model: CachedCausalLM, params: SamplingParams, generator: torch.Generator | None = None):
        self.model = model
        self.params = params
        self.generator = generator

    def verify(self, committed: Sequence[int], draft: Draft) -> Verdict:
        # logits: (len(draft.tokens) + 1, vocab), from the newest committed token on
        logits = self.model.feed(list(committed) + draft.tokens, logits_from=len(committed) - 1)
        verdict = verify_rows(logits, draft.tokens, draft.q, self.params, self.generator)
        self.model.truncate(len(committed) + verdict.accepted)  # roll back rejected positions
        return verdict

    def stream(self, committed: Sequence[int], n: int, on_token: Callable[[int], None] | None = None,
               stop_ids: Sequence[int] = ()) -> Burst:
        """A burst in process: ``n`` zero-draft rounds (the target decoding alone, with this verifier's
        generator: what the edge does), stopping after a stop id; ``on_token`` hears of each token at once."""
        ids = list(committed)

        def steps():
            for _ in range(n):
                ids.append(self.verify(ids, Draft.empty(len(ids))).token)
                yield ids[-1]

        return Burst.collect(steps(), on_token, stop_ids)

