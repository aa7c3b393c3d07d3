"""Uplink and downlink payloads: the real protobuf messages for a round, and their size in bits.

The bits charged to the modelled channel are ``8 * len(msg.SerializeToString()) + header_bits`` of the
messages the transport would really send (``gelato.v1.DraftUp`` / ``gelato.v1.VerdictDown``), so the
payload model and the wire format cannot drift apart. Payload modes (docs/design-decisions.md, "Payload and losslessness"):

``compact``
    Greedy: token ids only. Sampling: ids plus, per token, the exact truncated ``q`` the token was
    sampled from as a ``SparseDistribution`` (lossless speculative sampling).
``paper_topp``
    The paper's payload: ids plus, per token, the top-p support of ``q`` at threshold ``top_p``
    (0.99995 / 0.99998 in the paper), bit-packed with ``b_index + b_prob`` bits per entry into
    ``q_packed`` (index then probability, MSB first, zero-padded to a whole byte per token).
``dssd``
    ids plus ``q(x_i)`` per token (``q_token``); on a rejection the downlink carries the target
    distribution at the first rejected position (``target_p``) and no token.
``draws``
    ids plus the integer ``q(x_i) * 2^24`` per token (``q_int``; the device drafts from q rounded to 2^24); on a
    rejection the downlink carries ``draws`` (M) draws y ~ p with p(y) (``draw_ids``, ``draw_p``) and no token.

``synthetic_topp_bits`` sizes a ``paper_topp`` message from support sizes alone (for the synthetic
regime where no real ``q`` exists) with the same framing and the same bit formula as the packer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gelato.decoding.payload_modes import PayloadMode  # noqa: F401  (re-exported: the one list of payload modes)
from gelato.decoding.sampling import DRAWS_M, MAX_DRAWS_M, q_int
from gelato.decoding.types import Draft, SparseDist, Verdict
from gelato.wire.proto import gelato_pb2 as pb

ProbFormat = Literal["auto", "float", "fixed"]

# Framing a message costs on a gRPC stream, measured at a TCP proxy between `gelato device` and `gelato serve`
# (benchmarks/bench_edge.py, "wire_frames"): in a stream's steady state each message is one HTTP/2 DATA frame
# (9-byte header) holding the 5-byte gRPC length prefix, and the stream- and connection-level WINDOW_UPDATE
# frames (13 bytes each) for the message received from the other side ride along with it.
GRPC_FRAMING_BYTES = 9 + 5 + 2 * 13


def stream_framing_bytes(messages: int, requests: int) -> int:
    """The framing of ``messages`` messages one way over a stream on which the device sent ``requests`` messages.

    Each message costs its DATA frame header and gRPC prefix (9 + 5); the WINDOW_UPDATE pair (2 x 13) goes once
    per device request each way: the edge acknowledges each request, and the device acknowledges what it
    received when it next sends (measured: a burst's n messages down cost 14 n + 26, its request up 40). With
    one message each way a round this is :data:`GRPC_FRAMING_BYTES` a message."""
    return (9 + 5) * messages + 2 * 13 * requests
FRAMING_BYTES = {"none": 0, "grpc": GRPC_FRAMING_BYTES}

DEFAULT_SESSION = 0x9E3779B97F4A7C15  # a fixed non-zero session id, so its 9 bytes are always counted


class PayloadConfig(BaseModel):
    """How a round is put on the wire. ``greedy`` says whether decoding is greedy (compact mode then
    sends ids only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: PayloadMode = PayloadMode.COMPACT
    greedy: bool = True
    top_p: float = Field(0.99995, gt=0, le=1)
    b_index: int = Field(18, ge=1, le=32)
    b_prob: int = Field(32, ge=1, le=32)
    prob_format: ProbFormat = "auto"  # auto: IEEE float for 16/32 bits, uniform fixed point otherwise
    header_bits_up: int = Field(0, ge=0)  # framing charged on top of each message (FRAMING_BYTES * 8 for gRPC)
    header_bits_down: int = Field(0, ge=0)
    send_entropies: bool = False
    session: int = Field(DEFAULT_SESSION, ge=0, lt=2**64)
    # DSSD when the verifier did not defer the residual (no dense p in the verdict): bill a target_p of
    # this many entries on each rejection (None: bill only what the verdict really holds).
    dssd_target_support: int | None = Field(None, ge=1)
    vocab_size: int | None = Field(None, ge=1)  # ids used by synthetic messages are below this
    draws: int = Field(DRAWS_M, ge=1, le=MAX_DRAWS_M)  # draws mode: M, the draws a rejection sends down

    @model_validator(mode="after")
    def _check(self) -> "PayloadConfig":
        if self.prob_format == "float" and self.b_prob not in (16, 32):
            raise ValueError(f"prob_format 'float' needs b_prob 16 or 32, got {self.b_prob}")
        if self.vocab_size is not None and self.vocab_size > 2**self.b_index:
            raise ValueError(f"b_index = {self.b_index} bits cannot index a vocabulary of {self.vocab_size} "
                             f"(needs {math.ceil(math.log2(self.vocab_size))})")
        return self

    @property
    def max_id(self) -> int:
        return (self.vocab_size - 1) if self.vocab_size else (2**self.b_index - 1)


# ----------------------------------------------------------------------------------------------------
# top-p support and the bit packer


def topp_support(q: SparseDist, top_p: float) -> tuple[np.ndarray, np.ndarray]:
    """The smallest set of highest-probability entries of ``q`` whose mass reaches ``top_p``.

    Returns ``(ids, probs)`` sorted by decreasing probability (ties by id). All of ``q`` if its mass is
    below ``top_p``. Only the top entries are sorted (a partial selection grows until it holds ``top_p``
    of the mass), so a 150k-entry q costs a few milliseconds; ties exactly at the selection boundary are
    broken deterministically but not necessarily by id.
    """
    probs_t = q.probs.detach().cpu().float()
    ids = q.ids.detach().cpu().numpy().astype(np.int64)
    probs = probs_t.numpy().astype(np.float64)
    n = len(ids)
    cand = np.arange(n)
    if top_p < 1.0:
        k = min(n, 1024)
        while k < n:
            part = torch.topk(probs_t, k, sorted=False).indices.numpy()
            if probs[part].sum() >= top_p:
                cand = part
                break
            k *= 4
    order = cand[np.lexsort((ids[cand], -probs[cand]))]
    ids, probs = ids[order], probs[order]
    if top_p >= 1.0:
        keep = len(ids)
    else:
        reached = np.nonzero(np.cumsum(probs) >= top_p)[0]
        keep = int(reached[0]) + 1 if len(reached) else len(ids)
    return ids[:keep], probs[:keep].astype(np.float32)


def _resolve_format(b_prob: int, prob_format: ProbFormat) -> str:
    if prob_format == "auto":
        return "float" if b_prob in (16, 32) else "fixed"
    if prob_format == "float" and b_prob not in (16, 32):
        raise ValueError(f"prob_format 'float' needs b_prob 16 or 32, got {b_prob}")
    return prob_format


def encode_probs(probs: np.ndarray, b_prob: int, prob_format: ProbFormat = "auto") -> np.ndarray:
    """Probabilities -> unsigned ``b_prob``-bit codes (IEEE bits, or round(p * (2^b - 1)))."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.size and (np.any(probs < 0) or np.any(probs > 1) or not np.all(np.isfinite(probs))):
        raise ValueError("probabilities to pack must lie in [0, 1]")
    fmt = _resolve_format(b_prob, prob_format)
    if fmt == "float":
        dtype, utype = (np.float32, np.uint32) if b_prob == 32 else (np.float16, np.uint16)
        return probs.astype(dtype).view(utype).astype(np.uint64)
    top = (1 << b_prob) - 1
    return np.rint(probs * top).astype(np.uint64)


def decode_probs(codes: np.ndarray, b_prob: int, prob_format: ProbFormat = "auto") -> np.ndarray:
    fmt = _resolve_format(b_prob, prob_format)
    codes = np.asarray(codes, dtype=np.uint64)
    if fmt == "float":
        dtype, utype = (np.float32, np.uint32) if b_prob == 32 else (np.float16, np.uint16)
        return codes.astype(utype).view(dtype).astype(np.float32)
    return (codes.astype(np.float64) / ((1 << b_prob) - 1)).astype(np.float32)


def packed_nbytes(support_size: int, b_index: int, b_prob: int) -> int:
    """Bytes of one packed support: ``ceil(|S| (b_index + b_prob) / 8)``."""
    if support_size < 0:
        raise ValueError(f"support size must be >= 0, got {support_size}")
    return math.ceil(support_size * (b_index + b_prob) / 8)


def _to_bits(values: np.ndarray, width: int) -> np.ndarray:
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    return ((values[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)


def pack_support(ids: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray, b_index: int, b_prob: int,
                 prob_format: ProbFormat = "auto") -> bytes:
    """Bit-pack ``(id, prob)`` entries, ``b_index`` then ``b_prob`` bits each, MSB first, zero-padded."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    if ids.shape != probs.shape:
        raise ValueError(f"ids and probs differ in length: {ids.shape[0]} vs {probs.shape[0]}")
    if not (1 <= b_index <= 32 and 1 <= b_prob <= 32):
        raise ValueError(f"b_index and b_prob must be in 1..32, got {b_index}, {b_prob}")
    if ids.size and (ids.min() < 0 or ids.max() >= (1 << b_index)):
        raise ValueError(f"token id {int(ids.max()) if ids.size else 0} does not fit in b_index = {b_index} bits")
    if ids.size == 0:
        return b""
    bits = np.concatenate([_to_bits(ids.astype(np.uint64), b_index),
                           _to_bits(encode_probs(probs, b_prob, prob_format), b_prob)], axis=1)
    data = np.packbits(bits.reshape(-1)).tobytes()
    assert len(data) == packed_nbytes(ids.size, b_index, b_prob)
    return data


def unpack_support(data: bytes, b_index: int, b_prob: int, prob_format: ProbFormat = "auto",
                   count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_support`. ``count`` is inferred when ``b_index + b_prob >= 8``."""
    width = b_index + b_prob
    if count is None:
        if width < 8:
            raise ValueError(f"cannot infer the entry count with {width} bits per entry; pass count")
        count = (8 * len(data)) // width
    if packed_nbytes(count, b_index, b_prob) != len(data):
        raise ValueError(f"{len(data)} bytes do not hold exactly {count} entries of {width} bits")
    if count == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * width].reshape(count, width)
    weights = lambda w: (np.uint64(1) << np.arange(w - 1, -1, -1, dtype=np.uint64))  # noqa: E731
    ids = (bits[:, :b_index].astype(np.uint64) * weights(b_index)).sum(axis=1)
    codes = (bits[:, b_index:].astype(np.uint64) * weights(b_prob)).sum(axis=1)
    return ids.astype(np.int64), decode_probs(codes, b_prob, prob_format)


# ----------------------------------------------------------------------------------------------------
# messages


def sparse_to_proto(q: SparseDist) -> pb.SparseDistribution:
    return pb.SparseDistribution(ids=q.ids.tolist(), probs=q.probs.float().tolist())


def dense_p_to_proto(p: torch.Tensor) -> pb.SparseDistribution:
    """A target distribution ``p`` (vocab,) as sent down: its nonzero entries with ids, or, when that would
    be larger (more than ~2/3 of the vocabulary has mass), every probability and no ids."""
    support = int((p > 0).sum())
    if 3 * support >= 2 * p.numel():
        return pb.SparseDistribution(probs=p.float().tolist())
    return sparse_to_proto(SparseDist.from_dense(p))


def proto_to_sparse(msg: pb.SparseDistribution) -> SparseDist:
    return SparseDist(ids=torch.tensor(list(msg.ids), dtype=torch.int64),
                      probs=torch.tensor(list(msg.probs), dtype=torch.float32))


def build_draft_up(draft: Draft, cfg: PayloadConfig, round_index: int = 0,
                   pending_ids: Sequence[int] = ()) -> pb.DraftUp:
    """The uplink message for ``draft`` under ``cfg.mode``."""
    n = len(draft.tokens)
    msg = pb.DraftUp(session=cfg.session, position=draft.start, round=round_index, pending_ids=list(pending_ids),
                     token_ids=list(draft.tokens))
    needs_q = cfg.mode == PayloadMode.PAPER_TOPP or (cfg.mode == PayloadMode.COMPACT and not cfg.greedy)
    if cfg.mode == PayloadMode.PAPER_TOPP and draft.q is None and draft.topp_support is not None:
        # A replayed or synthetic draft: no q, but its support sizes fix the packed sizes exactly.
        msg.q_packed.extend(bytes(packed_nbytes(s, cfg.b_index, cfg.b_prob)) for s in draft.topp_support[:n])
        if cfg.send_entropies:
            msg.entropies.extend(draft.entropies[:n])
        return msg
    if needs_q and (draft.q is None or len(draft.q) < n):
        raise ValueError(f"payload mode {cfg.mode!r} needs q for each of the {n} sent tokens, "
                         f"got {0 if draft.q is None else len(draft.q)}")
    if cfg.mode == PayloadMode.COMPACT and not cfg.greedy:
        msg.q.extend(sparse_to_proto(q) for q in draft.q[:n])
    elif cfg.mode == PayloadMode.PAPER_TOPP:
        for q in draft.q[:n]:
            ids, probs = topp_support(q, cfg.top_p)
            msg.q_packed.append(pack_support(ids, probs, cfg.b_index, cfg.b_prob, cfg.prob_format))
    elif cfg.mode == PayloadMode.DSSD:
        if len(draft.token_probs) < n:
            raise ValueError(f"dssd payload needs q(x) for each of the {n} sent tokens")
        msg.q_token.extend(draft.token_probs[:n])
    elif cfg.mode == PayloadMode.DRAWS and not cfg.greedy:
        if len(draft.token_probs) < n:
            raise ValueError(f"draws payload needs q(x) for each of the {n} sent tokens")
        ints = [q_int(x) for x in draft.token_probs[:n]]
        if any(k != float(x) * (1 << 24) for k, x in zip(ints, draft.token_probs)):
            raise ValueError("the draws payload needs tokens drafted from q rounded to 2^24 (a quantized proposer: "
                             "PayloadMode.quantized_q), and no other q")
        msg.q_int.extend(ints)
    if cfg.send_entropies:
        msg.entropies.extend(draft.entropies[:n])
    return msg


@functools.lru_cache(maxsize=8)
def _synthetic_target_p(support: int, max_id: int) -> pb.SparseDistribution:
    """A stand-in target distribution of ``support`` entries, for billing DSSD's download by its real
    encoded size (built once per size: a dense 151,936-entry message is slow to construct)."""
    if 3 * support >= 2 * (max_id + 1):  # dense, no ids: as dense_p_to_proto sends it
        return pb.SparseDistribution(probs=[1.0 / support] * support)
    return pb.SparseDistribution(ids=range(max_id + 1 - support, max_id + 1), probs=[1.0 / support] * support)


def build_verdict_down(verdict: Verdict, cfg: PayloadConfig, round_index: int = 0, position: int = 0,
                       n_sent: int | None = None) -> pb.VerdictDown:
    """The downlink message. ``position`` = committed tokens after the verdict; ``n_sent`` (the draft
    length) lets DSSD bill a synthetic ``target_p`` on a rejection when the verdict holds no dense p."""
    msg = pb.VerdictDown(session=cfg.session, round=round_index, accepted=verdict.accepted)
    rejected = n_sent is not None and verdict.accepted < n_sent
    if cfg.mode == PayloadMode.DSSD and verdict.residual_p is not None:
        msg.target_p.CopyFrom(dense_p_to_proto(verdict.residual_p))
        return msg
    if cfg.mode == PayloadMode.DSSD and rejected and cfg.dssd_target_support is not None:
        msg.target_p.CopyFrom(_synthetic_target_p(min(cfg.dssd_target_support, cfg.max_id + 1), cfg.max_id))
        return msg
    if verdict.draws is not None:
        msg.draw_ids.extend(y for y, _ in verdict.draws)
        msg.draw_p.extend(p for _, p in verdict.draws)
        return msg
    if cfg.mode == PayloadMode.DRAWS and rejected and not cfg.greedy:  # verified in process: bill M draws
        msg.draw_ids.extend([cfg.max_id] * cfg.draws)
        msg.draw_p.extend([0.5] * cfg.draws)
        return msg
    msg.token = max(0, int(verdict.token))
    msg.has_token = True
    msg.position = position
    return msg


def message_bits(msg, header_bits: int = 0) -> int:
    """``8 * len(serialised message) + header_bits``."""
    return 8 * len(msg.SerializeToString()) + int(header_bits)


def draft_bits(draft: Draft, cfg: PayloadConfig, round_index: int = 0, pending_ids: Sequence[int] = ()) -> int:
    return message_bits(build_draft_up(draft, cfg, round_index, pending_ids), cfg.header_bits_up)


def verdict_bits(verdict: Verdict, cfg: PayloadConfig, round_index: int = 0, position: int = 0,
                 n_sent: int | None = None) -> int:
    return message_bits(build_verdict_down(verdict, cfg, round_index, position, n_sent), cfg.header_bits_down)


def q_from_draft_up(msg: pb.DraftUp, cfg: PayloadConfig) -> list[SparseDist]:
    """What the edge recovers of q: the exact sparse q (compact) or the unpacked top-p part (paper_topp)."""
    if len(msg.q):
        return [proto_to_sparse(q) for q in msg.q]
    out = []
    for data in msg.q_packed:
        ids, probs = unpack_support(data, cfg.b_index, cfg.b_prob, cfg.prob_format)
        out.append(SparseDist(ids=torch.from_numpy(ids), probs=torch.from_numpy(probs)))
    return out


def synthetic_topp_bits(support_sizes: Sequence[int], cfg: PayloadConfig, token_ids: Sequence[int] | None = None,
                        position: int = 0, round_index: int = 0) -> int:
    """Bits of a ``paper_topp`` DraftUp with the given per-token support sizes (no real q needed).

    The packed bytes are ``ceil(|S| (b_index + b_prob) / 8)`` each, exactly as :func:`pack_support`
    produces them; token ids default to ``cfg.max_id`` (the largest varint the vocabulary allows).
    """
    sizes = [int(s) for s in support_sizes]
    if any(s < 1 for s in sizes):
        raise ValueError(f"support sizes must be >= 1, got {sizes}")
    ids = list(token_ids) if token_ids is not None else [cfg.max_id] * len(sizes)
    if len(ids) != len(sizes):
        raise ValueError(f"{len(ids)} token ids for {len(sizes)} support sizes")
    msg = pb.DraftUp(session=cfg.session, position=position, round=round_index, token_ids=ids,
                     q_packed=[bytes(packed_nbytes(s, cfg.b_index, cfg.b_prob)) for s in sizes])
    return message_bits(msg, cfg.header_bits_up)
