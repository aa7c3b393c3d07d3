"""Turning logits into the processed distributions p (target) and q (draft).

Both sides apply the same processing (temperature, then top-k, then top-p, renormalised), so the
verifier compares the distributions the two models really sample from. At temperature 0 decoding is
greedy; the distribution used for entropies and confidence is then the temperature-1 softmax with the
same top-k/top-p truncation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Sparse draft proposals (docs/design-decisions.md, "Sparse draft proposals"): under sampling the device draws
# each draft token from q~, the DRAFT_TOP_K most likely entries of its processed q renormalised, and sends only
# q~'s support; the verifier uses q~, the distribution the token really came from, so the output stays exactly
# the target's. It is a draft-side choice: the request's temperature/top-k/top-p keep defining p. Chosen by
# measurement: docs/results/draft-truncation.md. 0 drafts from the whole q.
DRAFT_TOP_K = 24

# The ``draws`` payload (docs/results/sampling-payload.md): the device drafts from its whole q rounded to integers
# that sum to 2^Q_BITS and sends the integer q(x) of each drafted token; at a rejection the edge sends DRAWS_M
# draws y ~ p (with p(y)) and the device accepts one as the residual sample, asking for DRAWS_M more if all fail.
Q_BITS = 24
Q_ONE = 1 << Q_BITS
DRAWS_M = 16
MAX_DRAWS_M = 1024  # the most draws one verdict may carry (an edge refuses a larger M at open)
MAX_REDRAWS = 4  # failed redraw rounds after which the device asks for the dense p row (bounded exchanges)


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings shared by draft and target. ``temperature == 0`` means greedy."""

    temperature: float = 0.0
    top_k: int = 0  # 0 disables top-k
    top_p: float = 1.0  # 1.0 disables top-p

    def __post_init__(self) -> None:
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if not (0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def processed_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Probabilities after temperature, top-k and top-p (renormalised), over the last dimension.

    At temperature 0 the temperature-1 softmax is used (the greedy token is its argmax).
    """
    logits = logits.float()
    if not params.greedy:
        logits = logits / params.temperature
    if params.top_k and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        drop_sorted = mass_before >= params.top_p  # keep the smallest prefix reaching top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def proposal_probs(q: torch.Tensor, draft_top_k: int = DRAFT_TOP_K, quantized: bool = False) -> torch.Tensor:
    """q~: the ``draft_top_k`` most likely entries of the 1-D distribution ``q``, renormalised (``q`` itself
    when ``draft_top_k`` is 0 or q has no more entries than that); ``quantized``: then rounded by
    :func:`quantized_probs` (the ``draws`` payload drafts from exactly that)."""
    if draft_top_k < 0:
        raise ValueError(f"draft top-k must be >= 0 (0 drafts from the whole q), got {draft_top_k}")
    if draft_top_k and int((q > 0).sum()) > draft_top_k:
        values, ids = torch.topk(q, draft_top_k)
        q = torch.zeros_like(q).index_put_((ids,), values / values.sum())
    return quantized_probs(q) if quantized else q


def quantized_probs(q: torch.Tensor) -> torch.Tensor:
    """q rounded to integers that sum to exactly 2^Q_BITS (largest remainder; ties by id), over the last
    dimension of a 1-D ``q``, returned as those integers / 2^Q_BITS in float32 (exact: every value is k / 2^24 with
    k <= 2^24). An entry that rounds to 0 can never be drawn; one that does not keeps q(x) = k / 2^24 exactly."""
    scaled = q.double().clamp_min(0.0)
    scaled = scaled / scaled.sum() * Q_ONE
    counts = torch.floor(scaled)
    short = Q_ONE - int(counts.sum())
    if short > 0:
        order = torch.argsort(scaled - counts, descending=True, stable=True)
        counts[order[:short]] += 1
    elif short < 0:  # float rounding of the sum: take back from the largest counts
        order = torch.argsort(counts, descending=True, stable=True)
        counts[order[:-short]] -= 1
    return (counts / Q_ONE).float()


def q_int(prob: float) -> int:
    """The integer numerator of a quantized probability (``prob`` = k / 2^Q_BITS exactly)."""
    return int(round(float(prob) * Q_ONE))


def entropy_nats(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last dimension (0 log 0 = 0)."""
    logp = torch.log(probs.clamp_min(1e-30))
    return -(probs * logp).sum(dim=-1)


def choose_token(probs: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """Argmax when greedy, else one sample from ``probs`` (1-D)."""
    if params.greedy:
        return int(torch.argmax(probs))
    return int(torch.multinomial(probs, 1, generator=generator))


def sample_from(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    """One sample from a 1-D probability vector."""
    return int(torch.multinomial(probs, 1, generator=generator))
