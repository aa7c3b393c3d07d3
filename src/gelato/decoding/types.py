"""Records exchanged by the proposer, the verifier, the policies and the clocks."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields

import torch


@dataclass(frozen=True)
class SparseDist:
    """A distribution given on its support: ``probs[j]`` is the probability of token ``ids[j]``.

    This is exactly what crosses the uplink for a sampled draft token, and exactly what the verifier
    uses, so the payload is lossless by construction.
    """

    ids: torch.Tensor  # int64, shape (n,)
    probs: torch.Tensor  # float32, shape (n,)

    @staticmethod
    def from_dense(probs: torch.Tensor) -> "SparseDist":
        ids = torch.nonzero(probs > 0, as_tuple=False).flatten()
        return SparseDist(ids=ids, probs=probs[ids].float())

    def to_dense(self, vocab_size: int) -> torch.Tensor:
        if self.ids.numel() and int(self.ids.max()) >= vocab_size:
            raise ValueError(f"sparse q has token id {int(self.ids.max())} outside vocabulary of {vocab_size}")
        dense = torch.zeros(vocab_size, dtype=torch.float32)
        dense[self.ids] = self.probs.float()
        return dense

    @property
    def support_size(self) -> int:
        return int(self.ids.numel())


class StopDecision(enum.Enum):
    """What a policy's per-token hook says after each drafted token."""

    CONTINUE = "continue"  # send this token and draft another (if the budget allows)
    STOP_AFTER = "stop_after"  # send this token, then stop
    STOP_BEFORE = "stop_before"  # stop and do not send this token (it was computed and is billed)


@dataclass(frozen=True)
class DraftStep:
    """What the per-token hook sees about the token just drafted (0-based ``position`` in the round)."""

    position: int
    token: int
    entropy: float  # nats, of the processed draft distribution q
    token_prob: float  # q(token)
    max_prob: float  # max_x q(x)


@dataclass
class Draft:
    """One round's draft. ``tokens`` are sent; ``n_computed`` counts every drafted token, sent or not."""

    tokens: list[int]
    # One per sent token: the processed q the token came from (under greedy decoding, the temperature-1
    # q used for entropies; the greedy uplink sends ids only, the paper-compat payload its top-p part).
    q: list[SparseDist] | None
    entropies: list[float]  # per computed token
    token_probs: list[float]  # q(token) per computed token
    max_probs: list[float]  # top-1 probability of q per computed token
    budget: int
    n_computed: int
    start: int  # number of committed tokens (prompt + generated) when the round began
    # Replayed/synthetic drafts carry no q; instead, per sent token, the size of q's top-p support at the
    # payload's threshold (all the paper-compat payload's size depends on: fixed bit widths per entry).
    topp_support: list[int] | None = None
    # Pipelined drafting: how many of the first computed tokens were pre-drafted during the previous
    # round's wait (already billed there); the clock bills only the ``n_computed - n_carried`` fresh ones.
    n_carried: int = 0

    @staticmethod
    def empty(start: int) -> "Draft":
        """A draft of no token after ``start`` committed tokens: the verifier answers with the target's own next
        token (edge-only rounds, and each step of a burst)."""
        return Draft(tokens=[], q=[], entropies=[], token_probs=[], max_probs=[], budget=0, n_computed=0, start=start)


@dataclass(frozen=True)
class RoundMeasurement:
    """What a networked round measured (milliseconds, bytes): its messages and the time they took.

    Bytes are the serialized sizes of the round's real messages (``StreamUp`` and ``StreamDown``: protobuf
    payload, no HTTP/2 framing); the edge's handler, queue and forward times are what it reported.
    """

    up_bytes: int
    down_bytes: int
    up_messages: int = 1  # a burst: its request (one more a resume); a round: its draft
    down_messages: int = 1  # a burst: every token streamed; a round: its verdict
    rpc_ms: float = 0.0  # last (successful) attempt, request out to reply in
    total_ms: float = 0.0  # including failed attempts, backoff and reopening
    server_ms: float = 0.0  # edge time from receiving the round to its verdict (queue + forward + verification)
    queue_ms: float = 0.0
    forward_ms: float = 0.0
    batch: int = 0
    attempts: int = 0
    reopened: int = 0

    @property
    def network_ms(self) -> float:
        """rpc time not spent in the edge handler: serialization, gRPC/HTTP2, transport."""
        return max(0.0, self.rpc_ms - self.server_ms)


@dataclass(frozen=True)
class Verdict:
    """The edge's answer: how many draft tokens were accepted and the target's own next token.

    ``measured``: what the verifier measured of the round (a networked verifier; None in process). It
    travels with the verdict, so a verification on another thread cannot mix rounds up."""

    accepted: int
    token: int
    # Dense target distribution at the first rejected position (DSSD: the device samples the residual).
    residual_p: torch.Tensor | None = None
    # The residual was deferred to the device (DSSD): the edge learns ``token`` next round. Set whenever
    # ``residual_p`` is, and kept once the device has sampled ``token`` from it.
    deferred: bool = False
    measured: RoundMeasurement | None = field(default=None, compare=False)
    # The draws payload: at the first rejection (or a redraw), M draws (y, p(y)) of y ~ p instead of a token; the
    # device accepts one as its residual sample (decoding/rejection.py:accept_draw). Deferred like residual_p.
    draws: tuple[tuple[int, float], ...] | None = None

    def __post_init__(self) -> None:
        if (self.residual_p is not None or self.draws is not None) and not self.deferred:
            object.__setattr__(self, "deferred", True)


@dataclass(frozen=True)
class Burst:
    """What a verifier's ``stream`` returns: the tokens the edge generated by itself, in order (a stop id, if
    any, is the last), and what the verifier measured of the burst (None in process)."""

    tokens: list[int]
    measured: RoundMeasurement | None = field(default=None, compare=False)

    @classmethod
    def collect(cls, tokens: Iterable[int], on_token: Callable[[int], None] | None = None,
                stop_ids: Sequence[int] = ()) -> Burst:
        """A burst from generated ``tokens`` (consumed lazily), each handed to ``on_token`` as it comes, ending
        after a stop id: the one rule of every in-process ``stream``."""
        out: list[int] = []
        for token in tokens:
            out.append(int(token))
            if on_token is not None:
                on_token(out[-1])
            if out[-1] in stop_ids:
                break
        return cls(out)


@dataclass(frozen=True)
class RoundCommit:
    """What a round commits, by the one rule every party applies (the loop, the edge, the device's record of
    the edge, the modelled clock): the accepted draft tokens, then the round's own token, which the edge
    holds at once unless its residual was deferred to the device (DSSD); then it learns it next round."""

    ids: list[int]
    deferred: bool

    @staticmethod
    def of(sent: Sequence[int], verdict: Verdict) -> "RoundCommit":
        return RoundCommit(list(sent[: verdict.accepted]) + [verdict.token], verdict.deferred)

    @property
    def edge_ids(self) -> list[int]:
        """The ids the edge commits this round."""
        return self.ids[:-1] if self.deferred else list(self.ids)

    @property
    def pending(self) -> list[int]:
        """The ids the edge learns at the start of the next round."""
        return self.ids[-1:] if self.deferred else []


@dataclass(frozen=True)
class PhaseTimes:
    """Wall-clock seconds spent in each phase of a round (measured)."""

    draft: float = 0.0
    verify: float = 0.0
    other: float = 0.0


@dataclass(frozen=True)
class RoundCharge:
    """What a clock charged for one round: time (s), device and edge energy (J), bits, and the link.

    Modelled by :class:`gelato.system.clock.ModelledClock` (docs/design-decisions.md, "The round and the
    system model"); every field is a number so a round's log line is ``RoundRecord.as_row()``.
    """

    # time, s: t_round = t_draft + max(wait, t_predraft), wait = t_uplink + t_propagation + t_verify + t_downlink
    t_draft: float = 0.0
    t_uplink: float = 0.0
    t_propagation: float = 0.0
    t_verify: float = 0.0
    t_downlink: float = 0.0
    t_round: float = 0.0
    # device energy, J: e_round = e_draft + e_uplink + e_downlink + e_idle (e_edge is the edge's, apart)
    e_draft: float = 0.0
    e_uplink: float = 0.0
    e_downlink: float = 0.0
    e_idle: float = 0.0
    e_round: float = 0.0
    e_edge: float = 0.0
    # drafting ahead during the wait (0 without): its time, the part the round pays for, its energy
    t_predraft: float = 0.0
    t_predraft_exposed: float = 0.0
    e_predraft: float = 0.0
    # the messages and the channel state they crossed
    bits_up: float = 0.0
    bits_down: float = 0.0
    gain: float = 0.0
    snr_db: float = 0.0
    rate_up_bps: float = 0.0
    rate_down_bps: float = 0.0
    channel_index: int = 0
    fading: float = 1.0
    # where the round stood: committed tokens, draft-cache tokens the first forward fed, running totals
    context_len: int = 0
    n_pending: int = 0
    cum_tokens: int = 0
    cum_time: float = 0.0
    cum_energy: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


CHARGE_KEYS = tuple(f.name for f in fields(RoundCharge))


@dataclass(frozen=True)
class RoundRecord:
    """Everything known about a finished round; ``as_row()`` is its line in every round log.

    Vocabulary (vLLM's): of the ``sent`` draft tokens the first ``accepted`` match the target; the round
    then adds one token of the target's own (``token``: the recovered token after a rejection, the bonus
    token when all were accepted), so it commits ``tokens`` = accepted draft tokens + ``token``, cut at EOS
    or the length limit.

    A burst (the edge streams tokens it generates itself, :meth:`DraftPolicy.stream`) drafts nothing: budget,
    drafted, sent and accepted are 0, ``streamed`` counts the tokens the edge streamed, ``tokens`` holds them
    (cut at EOS or the length limit) and ``token`` is the last one.
    """

    index: int
    start: int  # committed tokens (prompt + generated) when the round began
    budget: int  # most tokens the policy allowed this round
    drafted: int  # computed draft tokens (sent or not)
    sent: int
    accepted: int
    token: int
    entropies: list[float]
    tokens: list[int] = field(default_factory=list)  # the ids this round committed
    wall: PhaseTimes = field(default_factory=PhaseTimes)
    charge: RoundCharge | None = None  # what the clock charged, if the loop had one
    predrafted: int = 0  # tokens drafted ahead while this round's verdict was in flight
    carried: int = 0  # tokens of this round's draft that came from the previous round's pre-draft
    predraft_used: bool = False  # the pre-draft became the head of the next round's draft
    measured: RoundMeasurement | None = field(default=None, compare=False)  # the verifier's (None in process)
    streamed: int = 0  # a burst: tokens the edge generated and streamed this round (0: a draft-verify round)

    @property
    def new_tokens(self) -> int:
        return self.streamed if self.streamed else self.accepted + 1

    def as_row(self, **extra) -> dict:
        """The round's log line: its fields, the charge's terms and ``extra`` (e.g. the policy's state)."""
        row = {"index": self.index, "start": self.start, "budget": self.budget, "drafted": self.drafted,
               "sent": self.sent, "accepted": self.accepted, "token": self.token,
               "entropies": [round(h, 5) for h in self.entropies], "predrafted": self.predrafted,
               "carried": self.carried, "predraft_used": self.predraft_used, "streamed": self.streamed}
        if self.charge is not None:
            row.update(self.charge.as_dict())
        row.update(extra)
        return row
