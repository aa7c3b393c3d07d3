"""Every verification rule, as pure functions of tensors: the in-process verifier, the edge and the device
all call these, so the distribution tests cover every payload mode.

Speculative sampling (Leviathan et al. 2023; Chen et al. 2023): accept draft token x with probability
min(1, p(x)/q(x)); at the first rejection sample from norm(max(0, p - q)); after a full accept sample a
bonus token from p. Exact for any q the draft really sampled from. The payload modes differ only in what
the verifier knows of q:

- ``compact``: the exact (possibly truncated by top-k/top-p) q the token came from;
- ``dssd``: only q(x) of each drafted token. The edge decides acceptance with it and, at the first
  rejection, returns the dense p row; the device (which holds the whole q) samples the residual
  (:func:`sample_deferred_residual`);
- ``draws``: as ``dssd`` (q(x), here the integer numerator of the rounded q the device drafted from), but at
  the first rejection the edge sends M draws y ~ p with p(y) and the device, which holds the whole q, accepts
  the first draw with probability max(0, 1 - q(y)/p(y)) (:func:`accept_draw`): rejection sampling of
  norm(max(0, p - q)) with proposal p, exact (its acceptance ratio (p - q)+/p is at most 1). If all M fail the
  device asks for M fresh draws (a ``redraw`` round: no draft, the same p row): one more exchange, never an
  approximation; after ``MAX_REDRAWS`` such rounds (q nearly equal to p) it asks for the dense row instead;
- ``paper_topp``: the top-p part q_S of q. A drafted token outside S is rejected (its q is unknown) and
  the correction comes from norm(max(0, p - q_S)) with q_S zero outside S. This is still exact: for y
  outside S the rejection mass max(0, p - 0) = p(y) is exactly what acceptance cannot produce.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gelato.decoding.payload_modes import PAYLOAD_CHOICES, PayloadMode
from gelato.decoding.sampling import DRAWS_M, MAX_REDRAWS, SamplingParams, processed_probs, sample_from
from gelato.decoding.types import SparseDist, Verdict


def check_rows(rows: torch.Tensor, draft_tokens: Sequence[int]) -> None:
    """``rows``: (len(draft_tokens) + 1, vocab). Raises ValueError on a wrong row count or ids outside it."""
    if rows.shape[0] != len(draft_tokens) + 1:
        raise ValueError(f"need {len(draft_tokens) + 1} target rows for {len(draft_tokens)} draft tokens, "
                         f"got {rows.shape[0]}")
    vocab = rows.shape[-1]
    bad = [t for t in draft_tokens if not 0 <= t < vocab]
    if bad:
        raise ValueError(f"draft token ids {bad[:5]} are outside the vocabulary of {vocab}")


def verify_greedy(target_logits: torch.Tensor, draft_tokens: Sequence[int]) -> Verdict:
    """Accept the longest prefix equal to the target's argmax, then append the target's own token.

    ``target_logits``: (len(draft_tokens) + 1, vocab); row i predicts draft position i, the last row the
    bonus token.
    """
    check_rows(target_logits, draft_tokens)
    greedy = torch.argmax(target_logits, dim=-1).tolist()
    accepted = greedy_accepted(draft_tokens, greedy)
    return Verdict(accepted=accepted, token=int(greedy[accepted]))


def greedy_accepted(draft_tokens: Sequence[int], target_tokens: Sequence[int]) -> int:
    """How many draft tokens greedy verification accepts: the longest prefix equal to the target's own greedy
    tokens at those positions (``target_tokens[i]`` predicts draft position i; fewer target tokens bound it)."""
    accepted = 0
    while (accepted < len(draft_tokens) and accepted < len(target_tokens)
           and draft_tokens[accepted] == target_tokens[accepted]):
        accepted += 1
    return accepted


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)) for ``p``, ``q``: (vocab,); falls back to p when the residual has no mass."""
    residual = torch.clamp(p - q, min=0.0)
    total = residual.sum()
    return residual / total if total > 0 else p


def verify_stochastic(p: torch.Tensor, draft_tokens: Sequence[int], q: Sequence[SparseDist],
                      generator: torch.Generator | None = None, defer_residual: bool = False,
                      q_truncated: bool = False) -> Verdict:
    """Speculative sampling. ``p``: (len(draft_tokens) + 1, vocab) processed target distributions.

    ``defer_residual`` (DSSD): the verdict carries the dense p row at the first rejection (``token`` -1)
    instead of a sampled correction. ``q_truncated`` (paper top-p): a drafted token outside its q's
    support is rejected instead of refused as malformed.
    """
    check_rows(p, draft_tokens)
    if len(q) != len(draft_tokens):
        raise ValueError(f"sampled draft needs one q per token: {len(draft_tokens)} tokens, {len(q)} q")
    vocab = p.shape[-1]
    for i, x in enumerate(draft_tokens):
        q_i = q[i].to_dense(vocab)
        q_x = float(q_i[x])
        if q_x <= 0.0 and not q_truncated:
            raise ValueError(f"draft token {x} at position {i} has q(x) = 0: it cannot have been sampled from q")
        if q_x > 0.0:
            u = float(torch.rand((), generator=generator))
            if u < min(1.0, float(p[i, x]) / q_x):
                continue
        if defer_residual:
            return Verdict(accepted=i, token=-1, residual_p=p[i].clone())
        return Verdict(accepted=i, token=sample_from(residual_distribution(p[i], q_i), generator))
    n = len(draft_tokens)
    return Verdict(accepted=n, token=sample_from(p[n], generator))


def sample_deferred_residual(verdict: Verdict, q: Sequence[SparseDist] | None,
                             generator: torch.Generator | None) -> Verdict:
    """Device side of DSSD: a verdict with ``residual_p`` (vocab,) becomes one with a token sampled from
    norm(max(0, p - q)) using the device's whole q at the rejected position; other verdicts pass through."""
    if verdict.residual_p is None:
        return verdict
    if q is None or verdict.accepted >= len(q):
        raise ValueError("a deferred residual needs the draft's q at the rejected position")
    q_dense = q[verdict.accepted].to_dense(verdict.residual_p.shape[-1])
    return Verdict(accepted=verdict.accepted,
                   token=sample_from(residual_distribution(verdict.residual_p, q_dense), generator), deferred=True)


def residual_draws(p_row: torch.Tensor, m: int, generator: torch.Generator | None) -> tuple[tuple[int, float], ...]:
    """Edge side of ``draws``: ``m`` independent draws y ~ ``p_row`` (vocab,) with their p(y)."""
    if m < 1:
        raise ValueError(f"need at least one draw, got {m}")
    ys = torch.multinomial(p_row, m, replacement=True, generator=generator).tolist()
    return tuple((int(y), float(p_row[y])) for y in ys)


def accept_draw(draws: Sequence[tuple[int, float]], q_row: torch.Tensor,
                generator: torch.Generator | None) -> int | None:
    """Device side of ``draws``: the first draw y accepted with probability max(0, 1 - q(y)/p(y)) under the device's
    whole q (``q_row``: (vocab,), the rounded q it drafted from); None when every draw fails (ask for more).
    ValueError for a draw that could not have come from a distribution (id outside q_row, p(y) not in (0, 1])."""
    for y, p_y in draws:
        if not 0 <= y < q_row.shape[-1] or not 0.0 < p_y <= 1.0:
            raise ValueError(f"draw ({y}, {p_y}) is not a token of the vocabulary of {q_row.shape[-1]} "
                             "with p(y) in (0, 1]")
        u = float(torch.rand((), generator=generator))
        if u < max(0.0, 1.0 - float(q_row[y]) / p_y):
            return int(y)
    return None


def sample_from_draws(verdict: Verdict, q: Sequence[SparseDist] | None, vocab_size: int,
                      generator: torch.Generator | None, redraw=None) -> tuple[Verdict, int]:
    """Device side of ``draws`` for a whole round: a verdict carrying draws becomes one with the accepted draw as
    its token (deferred: the edge learns it next round); while every draw fails, ``redraw(dense=False)`` fetches
    fresh draws of the same p row (over the network one more exchange). After ``MAX_REDRAWS`` failed redraws
    (a residual of almost no mass: q nearly equals p) ``redraw(dense=True)`` fetches the dense p row instead and
    the residual is sampled from it, as DSSD's: still exact (the draws are independent of the residual sample),
    and the exchanges stay bounded. Returns the verdict and how many redraws it took; other verdicts pass through."""
    if verdict.draws is None:
        return verdict, 0
    if q is None or verdict.accepted >= len(q):
        raise ValueError("draws need the draft's q at the rejected position")
    q_row = q[verdict.accepted].to_dense(vocab_size)
    draws, redraws = verdict.draws, 0
    while (token := accept_draw(draws, q_row, generator)) is None:
        if redraw is None:
            raise ValueError("every draw failed and no redraw is possible")
        redraws += 1
        if redraws > MAX_REDRAWS:
            p_row = redraw(dense=True)
            if not isinstance(p_row, torch.Tensor) or p_row.shape != q_row.shape:
                raise ValueError("a dense redraw must answer the p row over the vocabulary")
            token = sample_from(residual_distribution(p_row, q_row), generator)
            break
        draws = redraw(dense=False)
    return Verdict(accepted=verdict.accepted, token=token, deferred=True), redraws


def verify_rows(target_logits: torch.Tensor, draft_tokens: Sequence[int], q: Sequence[SparseDist] | None,
                params: SamplingParams, generator: torch.Generator | None = None,
                rule: PayloadMode | str = PayloadMode.COMPACT, draws: int = DRAWS_M, redraw: bool = False) -> Verdict:
    """The verdict of one round under ``params`` and the payload ``rule`` (a drafting :class:`PayloadMode`, one of ``PAYLOAD_CHOICES``).

    ``target_logits``: (len(draft_tokens) + 1, vocab) raw target logits; ``q``: what the verifier knows
    of each drafted token's q (unused when greedy). ``draws``: M of the ``draws`` rule; ``redraw`` (``draws``
    rule, no draft tokens): M fresh draws of the one row's p instead of a token (``draws`` 0: the dense row).
    """
    if rule not in PAYLOAD_CHOICES:
        raise ValueError(f"unknown verification rule {str(rule)!r}; choose one of {PAYLOAD_CHOICES}")
    if params.greedy:
        return verify_greedy(target_logits, draft_tokens)
    if q is None:
        raise ValueError("a sampled draft must carry its q distributions")
    p = processed_probs(target_logits, params)
    if rule == PayloadMode.DRAWS:
        if redraw:
            if draft_tokens:
                raise ValueError("a redraw round carries no draft tokens")
            if not draws:  # the device gave up on draws (a residual of almost no mass): the dense row, as DSSD's
                return Verdict(accepted=0, token=-1, residual_p=p[0].clone())
            return Verdict(accepted=0, token=-1, draws=residual_draws(p[0], draws, generator))
        verdict = verify_stochastic(p, draft_tokens, q, generator, defer_residual=True)
        if verdict.residual_p is None:
            return verdict
        return Verdict(accepted=verdict.accepted, token=-1, draws=residual_draws(verdict.residual_p, draws, generator))
    return verify_stochastic(p, draft_tokens, q, generator, defer_residual=rule == PayloadMode.DSSD,
                             q_truncated=rule == PayloadMode.PAPER_TOPP)
