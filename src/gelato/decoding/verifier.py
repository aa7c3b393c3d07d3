"""Verification of a draft against the target: greedy matching and speculative (rejection) sampling.

Speculative sampling (Leviathan et al. 2023; Chen et al. 2023): accept draft token x with probability
min(1, p(x)/q(x)); at the first rejection sample from norm(max(0, p - q)); after a full accept sample
a bonus token from p. This is exact for any q the draft really sampled from, so the sparse (truncated)
q that crosses the link is all the verifier needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gelato.models.cached import CachedCausalLM
from gelato.decoding.sampling import SamplingParams, processed_probs, sample_from
from gelato.decoding.types import Draft, SparseDist, Verdict


def verify_greedy(target_logits: torch.Tensor, draft_tokens: Sequence[int]) -> Verdict:
    """Accept the longest prefix equal to the target's argmax, then append the target's own token.

    ``target_logits`` has ``len(draft_tokens) + 1`` rows: row i predicts draft position i; the last row
    predicts the bonus token.
    """
    _check_rows(target_logits, draft_tokens)
    greedy = torch.argmax(target_logits, dim=-1).tolist()
    accepted = 0
    while accepted < len(draft_tokens) and draft_tokens[accepted] == greedy[accepted]:
        accepted += 1
    return Verdict(accepted=accepted, token=int(greedy[accepted]))


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)); falls back to p when the residual has no mass (only possible if p == q)."""
    residual = torch.clamp(p - q, min=0.0)
    total = residual.sum()
    return residual / total if total > 0 else p


def verify_stochastic(p: torch.Tensor, draft_tokens: Sequence[int], q: Sequence[SparseDist],
                      generator: torch.Generator | None = None, defer_residual: bool = False) -> Verdict:
    """Speculative sampling. ``p`` holds ``len(draft_tokens) + 1`` processed target distributions.

    With ``defer_residual`` (the DSSD split) the verdict carries the dense ``p`` row at the first
    rejection instead of a token, and the device samples the residual itself.
    """
    _check_rows(p, draft_tokens)
    if len(q) != len(draft_tokens):
        raise ValueError(f"sampled draft needs one q per token: {len(draft_tokens)} tokens, {len(q)} q")
    vocab = p.shape[-1]
    for i, x in enumerate(draft_tokens):
        q_i = q[i].to_dense(vocab)
        q_x = float(q_i[x])
        if q_x <= 0.0:
            raise ValueError(f"draft token {x} at position {i} has q(x) = 0: it cannot have been sampled from q")
        u = float(torch.rand((), generator=generator))
        if u < min(1.0, float(p[i, x]) / q_x):
            continue
        if defer_residual:
            return Verdict(accepted=i, token=-1, residual_p=p[i].clone())
        return Verdict(accepted=i, token=sample_from(residual_distribution(p[i], q_i), generator))
    n = len(draft_tokens)
    return Verdict(accepted=n, token=sample_from(p[n], generator))


def _check_rows(rows: torch.Tensor, draft_tokens: Sequence[int]) -> None:
    if rows.shape[0] != len(draft_tokens) + 1:
        raise ValueError(f"need {len(draft_tokens) + 1} target rows for {len(draft_tokens)} draft tokens, "
                         f"got {rows.shape[0]}")
    vocab = rows.shape[-1]
    bad = [t for t in draft_tokens if not 0 <= t < vocab]
    if bad:
        raise ValueError(f"draft token ids {bad[:5]} are outside the vocabulary of {vocab}")


def verify_draft(target_logits: torch.Tensor, draft: Draft, params: SamplingParams,
                 generator: torch.Generator | None = None) -> Verdict:
    """Dispatch on the decoding mode: greedy matching or speculative sampling."""
    if params.greedy:
        return verify_greedy(target_logits, draft.tokens)
    if draft.q is None:
        raise ValueError("a sampled draft must carry its q distributions")
    return verify_stochastic(processed_probs(target_logits, params), draft.tokens, draft.q, generator)


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
