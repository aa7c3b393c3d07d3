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
- ``draws``: ids plus the integer ``q(x_i) * 2^24`` per token; on a rejection the edge sends M draws y ~ p
  with p(y), the device accepts one (or asks for M more with a ``redraw`` round) and sends it up as
  ``pending_ids`` next round.

Messages are built and sized by :mod:`gelato.wire.payload` (the same code that bills the modelled
channel); this module adds the session fields and the validation, one decoder per mode. The payload is
declared once, at open (``OpenRequest.payload``); a session that declared none has each round's mode
recognised from which fields are filled. Whatever breaks the format raises the one
:class:`~gelato.wire.errors.MalformedMessage`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gelato.decoding.payload_modes import PAYLOAD_CHOICES, PayloadMode
from gelato.decoding.sampling import DRAWS_M, MAX_DRAWS_M, Q_ONE, SamplingParams
from gelato.decoding.types import Draft, SparseDist, Verdict
from gelato.wire.errors import MalformedMessage
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
    """Validated SamplingParams (MalformedMessage on nonsense); top_p 0 means off."""
    top_p = 1.0 if msg.top_p == 0.0 else float(msg.top_p)
    try:
        return SamplingParams(temperature=float(msg.temperature), top_k=int(msg.top_k), top_p=top_p)
    except ValueError as exc:
        raise MalformedMessage(f"bad sampling settings: {exc}") from None


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
    draws: int = DRAWS_M  # draws rule: M (0 on a redraw that asks for the dense p row)
    redraw: bool = False  # draws rule: no draft, M fresh draws of the one row's p


def sparse_from_proto(dist: pb.SparseDistribution, vocab_size: int, what: str) -> SparseDist:
    """A SparseDistribution message as a SparseDist: ``ids`` + ``probs`` of equal length, or ``probs``
    alone, dense over the whole vocabulary. Raises MalformedMessage."""
    n_ids, n_probs = len(dist.ids), len(dist.probs)
    if n_ids == 0 and n_probs == vocab_size:
        probs = torch.tensor(list(dist.probs), dtype=torch.float32)
        return SparseDist.from_dense(probs)
    if n_ids != n_probs or not n_ids:
        raise MalformedMessage(f"{what} has {n_ids} ids and {n_probs} probabilities (give equally many, or "
                               f"{vocab_size} dense probabilities and no ids)")
    _check_ids(dist.ids, vocab_size, f"{what}.ids")
    return proto_to_sparse(dist)


def _check_ids(ids: Sequence[int], vocab_size: int, what: str) -> None:
    for i, t in enumerate(ids):
        if t >= vocab_size:
            raise MalformedMessage(f"{what}[{i}] = {t} is outside the vocabulary (size {vocab_size})")


def _check_count(n_values: int, n: int, what: str) -> None:
    if n_values != n:
        raise MalformedMessage(f"{what}: {n} tokens, {n_values} values (give one per draft token)")


# ----------------------------------------------------------------------------- payload declared at open

def payload_to_proto(cfg: PayloadConfig) -> pb.PayloadSettings:
    """The session's payload as OpenRequest carries it."""
    return pb.PayloadSettings(mode=str(cfg.mode), draws=cfg.draws if cfg.mode == PayloadMode.DRAWS else 0)


@dataclass(frozen=True)
class SessionPayload:
    """The payload an edge session decodes its rounds by (declared at open). ``declared`` False: an OpenRequest
    without one (an older device): the mode is recognised per round from the fields it fills."""

    mode: PayloadMode = PayloadMode.COMPACT
    draws: int = DRAWS_M
    declared: bool = False


def payload_from_proto(msg: pb.OpenRequest) -> SessionPayload:
    """The payload an OpenRequest declares; MalformedMessage for an unknown mode or an M outside 1..MAX_DRAWS_M."""
    if not msg.HasField("payload"):
        return SessionPayload()
    mode = msg.payload.mode
    if mode not in PAYLOAD_CHOICES:
        raise MalformedMessage(f"unknown payload mode {mode!r}; this edge decodes {', '.join(PAYLOAD_CHOICES)}")
    draws = int(msg.payload.draws)
    if mode == PayloadMode.DRAWS and not 1 <= draws <= MAX_DRAWS_M:
        raise MalformedMessage(f"the draws payload needs 1 <= M <= {MAX_DRAWS_M} draws per rejection, got {draws}")
    return SessionPayload(PayloadMode(mode), draws if mode == PayloadMode.DRAWS else DRAWS_M, declared=True)


# ----------------------------------------------------------------------------- uplink, one function per mode

def decode_draft(msg: pb.DraftUp, params: SamplingParams, vocab_size: int,
                 paper_cfg: PayloadConfig | None = None, payload: SessionPayload | None = None) -> DecodedDraft:
    """Validate a DraftUp and turn it into tokens + q by the session's ``payload`` (recognised from the filled
    fields when the session declared none). Raises MalformedMessage.

    ``paper_cfg`` gives the bit widths of a ``paper_topp`` payload (default: PayloadConfig's).
    """
    payload = payload or SessionPayload()
    tokens = list(msg.token_ids)
    _check_ids(tokens, vocab_size, "token_ids")
    _check_ids(msg.pending_ids, vocab_size, "pending_ids")
    if msg.redraw and (payload.mode != PayloadMode.DRAWS or not payload.declared or params.greedy or tokens):
        raise MalformedMessage("redraw belongs to a session that declared the draws payload, under sampling, with "
                               "no draft tokens")
    if params.greedy:
        return DecodedDraft(tokens, None)
    mode = payload.mode if payload.declared else _recognised_mode(msg)
    return _DECODERS[mode](msg, tokens, vocab_size, paper_cfg, payload)


def _recognised_mode(msg: pb.DraftUp) -> PayloadMode:
    """An undeclared session's round: its mode from the fields it fills (compact when none)."""
    for field_name, mode in (("q", PayloadMode.COMPACT), ("q_token", PayloadMode.DSSD),
                             ("q_packed", PayloadMode.PAPER_TOPP), ("q_int", PayloadMode.DRAWS)):
        if len(getattr(msg, field_name)):
            return mode
    return PayloadMode.COMPACT


def _decode_compact(msg, tokens, vocab_size, paper_cfg, payload) -> DecodedDraft:
    n = len(tokens)
    _check_count(len(msg.q), n, "compact sampled draft needs one q per token")
    qs = []
    for i, (dist, tok) in enumerate(zip(msg.q, tokens)):
        sparse = sparse_from_proto(dist, vocab_size, f"q[{i}]")
        ids, probs = sparse.ids, sparse.probs
        _check_probs(probs, f"q[{i}]")
        if abs(float(probs.sum()) - 1.0) > 1e-3:
            raise MalformedMessage(f"q[{i}] sums to {float(probs.sum()):.6f}, not 1")
        if ids.unique().numel() != ids.numel():
            raise MalformedMessage(f"q[{i}] repeats token ids")
        hit = (ids == tok).nonzero()
        if not hit.numel() or float(probs[hit[0, 0]]) <= 0.0:
            raise MalformedMessage(f"draft token {tok} at position {i} has q(x) = 0: it cannot have been sampled")
        qs.append(SparseDist(ids=ids, probs=probs))
    return DecodedDraft(tokens, qs)


def _token_qs(tokens: list[int], probs: torch.Tensor) -> list[SparseDist]:
    return [SparseDist(ids=torch.tensor([t]), probs=probs[i : i + 1].clone()) for i, t in enumerate(tokens)]


def _decode_dssd(msg, tokens, vocab_size, paper_cfg, payload) -> DecodedDraft:
    _check_count(len(msg.q_token), len(tokens), "DSSD draft needs one q(x) per token")
    probs = torch.tensor(list(msg.q_token), dtype=torch.float32)
    if tokens:
        _check_probs(probs, "q_token")
        if float(probs.min()) <= 0.0:
            raise MalformedMessage("q_token has a zero: a token cannot have been sampled")
    return DecodedDraft(tokens, _token_qs(tokens, probs), PayloadMode.DSSD)


def _decode_draws(msg, tokens, vocab_size, paper_cfg, payload) -> DecodedDraft:
    _check_count(len(msg.q_int), len(tokens), "draws draft needs one integer q(x) per token")
    bad = next((i for i, k in enumerate(msg.q_int) if not 1 <= k <= Q_ONE), None)
    if bad is not None:
        raise MalformedMessage(f"q_int[{bad}] = {msg.q_int[bad]}: q(x) * 2^24 of a drafted token lies in 1..2^24")
    probs = torch.tensor([k / Q_ONE for k in msg.q_int], dtype=torch.float32)  # exact: k <= 2^24
    if msg.dense and not msg.redraw:
        raise MalformedMessage("dense belongs to a redraw round")
    return DecodedDraft(tokens, _token_qs(tokens, probs), PayloadMode.DRAWS, 0 if msg.dense else payload.draws,
                        bool(msg.redraw))


def _decode_paper_topp(msg, tokens, vocab_size, paper_cfg, payload) -> DecodedDraft:
    _check_count(len(msg.q_packed), len(tokens), "paper_topp draft needs one packed q per token")
    try:
        qs = q_from_draft_up(msg, paper_cfg or PayloadConfig(mode=PayloadMode.PAPER_TOPP, greedy=False))
    except ValueError as exc:
        raise MalformedMessage(f"bad q_packed payload: {exc}") from None
    for i, dist in enumerate(qs):
        if not dist.support_size:
            raise MalformedMessage(f"q_packed[{i}] is empty: the top-p part of q holds at least one token")
        _check_ids(dist.ids.tolist(), vocab_size, f"q_packed[{i}] ids")
        _check_probs(dist.probs, f"q_packed[{i}]")
    return DecodedDraft(tokens, qs, PayloadMode.PAPER_TOPP)


_DECODERS = {PayloadMode.COMPACT: _decode_compact, PayloadMode.DSSD: _decode_dssd, PayloadMode.DRAWS: _decode_draws,
             PayloadMode.PAPER_TOPP: _decode_paper_topp}


def _check_probs(probs: torch.Tensor, what: str) -> None:
    if not probs.numel():
        raise MalformedMessage(f"{what} is empty")
    if not bool(torch.isfinite(probs).all()) or float(probs.min()) < 0.0 or float(probs.max()) > 1.0 + 1e-6:
        raise MalformedMessage(f"{what} has probabilities outside [0, 1]")


# ----------------------------------------------------------------------------- downlink

def encode_verdict(verdict: Verdict, *, round_id: int, position: int, session: int = 0, streamed: bool = False,
                   last: bool = False) -> pb.VerdictDown:
    """``position`` = committed tokens on the edge after the verdict (sent with a token). On a stream the
    session is implied (0, not sent). ``streamed``: one token of a burst; ``last``: the burst's last message."""
    mode = (PayloadMode.DSSD if verdict.residual_p is not None else PayloadMode.DRAWS if verdict.draws is not None
            else PayloadMode.COMPACT)
    msg = build_verdict_down(verdict, PayloadConfig(mode=mode, session=session), round_id, position)
    msg.streamed, msg.last = streamed, last
    return msg


def decode_verdict(msg: pb.VerdictDown, vocab_size: int) -> Verdict:
    """A verdict from the edge; MalformedMessage (one line) for a token outside the vocabulary, a target
    distribution that is empty, oversized or not a distribution, or draws that could not come from one (a
    misbehaving edge or a tampered path)."""
    if msg.has_token:
        if not 0 <= msg.token < vocab_size:
            raise MalformedMessage(f"the edge sent token {msg.token}, outside the vocabulary (size {vocab_size})")
        return Verdict(accepted=int(msg.accepted), token=int(msg.token))
    if len(msg.draw_ids) or len(msg.draw_p):
        return Verdict(accepted=int(msg.accepted), token=-1, draws=_draws_from_proto(msg, vocab_size))
    if len(msg.target_p.ids) > vocab_size or len(msg.target_p.probs) > vocab_size:
        raise MalformedMessage(f"the edge sent a target distribution of {max(len(msg.target_p.ids), len(msg.target_p.probs))}"
                               f" entries for a vocabulary of {vocab_size}")
    try:
        dist = sparse_from_proto(msg.target_p, vocab_size, "target_p")
    except MalformedMessage as exc:
        raise MalformedMessage(f"the edge sent an invalid target distribution: {exc.message}") from None
    probs = dist.probs
    if not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()) or not float(probs.sum()) > 0:
        raise MalformedMessage("the edge sent a target distribution that is not one (negative, non-finite or all-zero "
                               "probabilities)")
    return Verdict(accepted=int(msg.accepted), token=-1, residual_p=dist.to_dense(vocab_size))


def _draws_from_proto(msg: pb.VerdictDown, vocab_size: int) -> tuple[tuple[int, float], ...]:
    n = len(msg.draw_ids)
    if n != len(msg.draw_p) or not 1 <= n <= MAX_DRAWS_M:
        raise MalformedMessage(f"the edge sent {n} draw ids and {len(msg.draw_p)} p(y) (give 1..{MAX_DRAWS_M}, "
                               "equally many)")
    _check_ids(msg.draw_ids, vocab_size, "draw_ids")
    if not all(0.0 < p <= 1.0 for p in msg.draw_p):  # NaN fails every comparison
        raise MalformedMessage("the edge sent a draw whose p(y) is not in (0, 1]")
    return tuple(zip((int(y) for y in msg.draw_ids), (float(p) for p in msg.draw_p)))


# ----------------------------------------------------------------------------- redraw

def encode_redraw(*, round_id: int, position: int, dense: bool = False) -> pb.DraftUp:
    """The draws payload's fallback round: no draft, every draw of the last verdict failed; the edge answers M fresh
    draws of the p row after ``position`` committed tokens (``dense``: that row itself, as DSSD's target_p)."""
    return pb.DraftUp(position=position, round=round_id, redraw=True, dense=dense)
