"""Conversions between the engine's records (Draft, Verdict) and the wire messages (DraftUp, VerdictDown).

The only place that knows both sides. Uplink modes:

- ``compact`` (default): greedy -> token ids only; sampling -> ids plus one exact truncated ``q`` per
  token (lossless: docs/design-decisions.md, "Payload and losslessness").
- ``dssd``: ids plus ``q(x_i)`` per token; on a rejection the edge sends the target distribution down
  and the device samples the residual itself, sending that token up as ``pending_ids`` next round.
- ``paper_topp``: the paper's bit-packed top-p payload (ids plus the top-p part of each ``q``). Under
  sampling a drafted token outside the sent support is rejected and the correction is drawn from
  ``norm(max(0, p - q_topp))``, which is still exact (:mod:`gelato.decoding.rejection`) up to the
  rounding of the packed probabilities.

Messages are built and sized by :mod:`gelato.wire.payload` (the same code that bills the modelled
channel); this module adds the session fields and the edge-side validation. Edge side, the mode is
recognised from which fields are filled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import torch

from gelato.decoding.payload_modes import PAYLOAD_CHOICES, PayloadMode
from gelato.decoding.sampling import SamplingParams
from gelato.decoding.types import Draft, SparseDist, Verdict
from gelato.wire.errors import RequestError
from gelato.wire.payload import PayloadConfig, build_draft_up, build_verdict_down, proto_to_sparse, q_from_draft_up
from gelato.wire.proto import gelato_pb2 as pb

MAX_STREAM_TOKENS = 4096  # the most tokens one burst (DraftUp.stream_tokens) may ask an edge for, by default


def payload_config(mode: PayloadMode | str, params: SamplingParams, *, send_entropies: bool = False, **overrides) -> PayloadConfig:
    """The :class:`PayloadConfig` of a live session (``overrides``: top_p, b_index, b_prob, prob_format)."""
    if mode not in PAYLOAD_CHOICES:
        raise ValueError(f"unknown payload mode {str(mode)!r}; choose one of {PAYLOAD_CHOICES}")
    return PayloadConfig(mode=mode, greedy=params.greedy, send_entropies=send_entropies, **overrides)


# ----------------------------------------------------------------------------- sampling settings

def sampling_to_proto(params: SamplingParams, seed: int = 0) -> pb.SamplingSettings:
    return pb.SamplingSettings(temperature=params.temperature, top_k=params.top_k,
                               top_p=params.top_p if params.top_p < 1.0 else 0.0, seed=seed)


def sampling_from_proto(msg: pb.SamplingSettings) -> SamplingParams:
    """Validated SamplingParams (INVALID_ARGUMENT on nonsense); top_p 0 means off."""
    top_p = 1.0 if msg.top_p == 0.0 else float(msg.top_p)
    try:
        return SamplingParams(temperature=float(msg.temperature), top_k=int(msg.top_k), top_p=top_p)
    except ValueError as exc:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"bad sampling settings: {exc}") from None


# ----------------------------------------------------------------------------- uplink

def encode_draft(draft: Draft, *, round_id: int, position: int, pending_ids: Sequence[int],
                 cfg: PayloadConfig, session: int = 0, stream_tokens: int = 0) -> pb.DraftUp:
    """The DraftUp of one round (built by :func:`gelato.wire.payload.build_draft_up`).

    ``position`` counts committed tokens including ``pending_ids``; on a stream the session is implied (0).
    ``stream_tokens`` > 0 asks for a burst: the edge generates that many tokens itself (the draft is empty).
    """
    msg = build_draft_up(draft, cfg, round_id, pending_ids)
    msg.session = session
    msg.position = position
    msg.stream_tokens = stream_tokens
    return msg


@dataclass
class DecodedDraft:
    """What the edge needs from a DraftUp to verify it."""

    tokens: list[int]
    q: list[SparseDist] | None  # None under greedy decoding
    rule: PayloadMode = PayloadMode.COMPACT  # the verification rule of gelato.decoding.rejection


def sparse_from_proto(dist: pb.SparseDistribution, vocab_size: int, what: str) -> SparseDist:
    """A SparseDistribution message as a SparseDist: ``ids`` + ``probs`` of equal length, or ``probs``
    alone, dense over the whole vocabulary. Raises RequestError(INVALID_ARGUMENT)."""
    n_ids, n_probs = len(dist.ids), len(dist.probs)
    if n_ids == 0 and n_probs == vocab_size:
        probs = torch.tensor(list(dist.probs), dtype=torch.float32)
        return SparseDist.from_dense(probs)
    if n_ids != n_probs or not n_ids:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"{what} has {n_ids} ids and {n_probs} probabilities (give equally many, or "
                           f"{vocab_size} dense probabilities and no ids)")
    _check_ids(dist.ids, vocab_size, f"{what}.ids")
    return proto_to_sparse(dist)


def _check_ids(ids: Sequence[int], vocab_size: int, what: str) -> None:
    for i, t in enumerate(ids):
        if t >= vocab_size:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"{what}[{i}] = {t} is outside the vocabulary (size {vocab_size})")


def decode_draft(msg: pb.DraftUp, params: SamplingParams, vocab_size: int,
                 paper_cfg: PayloadConfig | None = None) -> DecodedDraft:
    """Validate a DraftUp and turn it into tokens + q. Raises RequestError(INVALID_ARGUMENT).

    ``paper_cfg`` gives the bit widths of a ``paper_topp`` payload (default: PayloadConfig's).
    """
    tokens = list(msg.token_ids)
    _check_ids(tokens, vocab_size, "token_ids")
    _check_ids(msg.pending_ids, vocab_size, "pending_ids")
    if params.greedy:
        return DecodedDraft(tokens, None)
    n = len(tokens)
    if len(msg.q):
        if len(msg.q) != n:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"compact sampled draft needs one q per token: {n} tokens, {len(msg.q)} q")
        qs = []
        for i, (dist, tok) in enumerate(zip(msg.q, tokens)):
            sparse = sparse_from_proto(dist, vocab_size, f"q[{i}]")
            ids, probs = sparse.ids, sparse.probs
            _check_probs(probs, f"q[{i}]")
            if abs(float(probs.sum()) - 1.0) > 1e-3:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"q[{i}] sums to {float(probs.sum()):.6f}, not 1")
            if ids.unique().numel() != ids.numel():
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"q[{i}] repeats token ids")
            hit = (ids == tok).nonzero()
            if not hit.numel() or float(probs[hit[0, 0]]) <= 0.0:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"draft token {tok} at position {i} has q(x) = 0: it cannot have been sampled")
            qs.append(SparseDist(ids=ids, probs=probs))
        return DecodedDraft(tokens, qs)
    if len(msg.q_token):
        if len(msg.q_token) != n:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"DSSD draft needs one q(x) per token: {n} tokens, {len(msg.q_token)} values")
        probs = torch.tensor(list(msg.q_token), dtype=torch.float32)
        _check_probs(probs, "q_token")
        if n and float(probs.min()) <= 0.0:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "q_token has a zero: a token cannot have been sampled")
        qs = [SparseDist(ids=torch.tensor([t]), probs=probs[i : i + 1].clone()) for i, t in enumerate(tokens)]
        return DecodedDraft(tokens, qs, PayloadMode.DSSD)
    if len(msg.q_packed):
        if len(msg.q_packed) != n:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"paper_topp draft needs one packed q per token: {n} tokens, {len(msg.q_packed)}")
        try:
            qs = q_from_draft_up(msg, paper_cfg or PayloadConfig(mode=PayloadMode.PAPER_TOPP, greedy=False))
        except ValueError as exc:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"bad q_packed payload: {exc}") from None
        for i, dist in enumerate(qs):
            if not dist.support_size:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"q_packed[{i}] is empty: the top-p part of q holds at least one token")
            _check_ids(dist.ids.tolist(), vocab_size, f"q_packed[{i}] ids")
            _check_probs(dist.probs, f"q_packed[{i}]")
        return DecodedDraft(tokens, qs, PayloadMode.PAPER_TOPP)
    if n == 0:
        return DecodedDraft(tokens, [])
    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                       "sampled decoding needs q: fill q (compact), q_token (dssd) or q_packed (paper_topp)")


def _check_probs(probs: torch.Tensor, what: str) -> None:
    if not probs.numel():
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{what} is empty")
    if not bool(torch.isfinite(probs).all()) or float(probs.min()) < 0.0 or float(probs.max()) > 1.0 + 1e-6:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{what} has probabilities outside [0, 1]")


# ----------------------------------------------------------------------------- downlink

def encode_verdict(verdict: Verdict, *, round_id: int, position: int, session: int = 0, streamed: bool = False,
                   last: bool = False) -> pb.VerdictDown:
    """``position`` = committed tokens on the edge after the verdict (sent with a token). On a stream the
    session is implied (0, not sent). ``streamed``: one token of a burst; ``last``: the burst's last message."""
    mode = PayloadMode.DSSD if verdict.residual_p is not None else PayloadMode.COMPACT
    msg = build_verdict_down(verdict, PayloadConfig(mode=mode, session=session), round_id, position)
    msg.streamed, msg.last = streamed, last
    return msg


def decode_verdict(msg: pb.VerdictDown, vocab_size: int) -> Verdict:
    """A verdict from the edge; ValueError (one line) for a token outside the vocabulary or a target
    distribution that is empty, oversized or not a distribution (a misbehaving edge or a tampered path)."""
    if msg.has_token:
        if not 0 <= msg.token < vocab_size:
            raise ValueError(f"the edge sent token {msg.token}, outside the vocabulary (size {vocab_size})")
        return Verdict(accepted=int(msg.accepted), token=int(msg.token))
    if len(msg.target_p.ids) > vocab_size or len(msg.target_p.probs) > vocab_size:
        raise ValueError(f"the edge sent a target distribution of {max(len(msg.target_p.ids), len(msg.target_p.probs))}"
                         f" entries for a vocabulary of {vocab_size}")
    try:
        dist = sparse_from_proto(msg.target_p, vocab_size, "target_p")
    except RequestError as exc:
        raise ValueError(f"the edge sent an invalid target distribution: {exc.message}") from None
    probs = dist.probs
    if not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()) or not float(probs.sum()) > 0:
        raise ValueError("the edge sent a target distribution that is not one (negative, non-finite or all-zero "
                         "probabilities)")
    return Verdict(accepted=int(msg.accepted), token=-1, residual_p=dist.to_dense(vocab_size))
