"""Records exchanged by the proposer, the verifier, the policies and the clocks."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

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

    @property
    def stopped_early(self) -> bool:
        return len(self.tokens) < self.budget


@dataclass(frozen=True)
class Verdict:
    """The edge's answer: how many draft tokens were accepted and the target's own next token."""

    accepted: int
    token: int
    # Dense target distribution at the first rejected position (DSSD variant only).
    residual_p: torch.Tensor | None = None


@dataclass
class PhaseTimes:
    """Wall-clock seconds spent in each phase of a round (measured)."""

    draft: float = 0.0
    verify: float = 0.0
    other: float = 0.0


@dataclass
class RoundRecord:
    """Everything known about a finished round; one JSONL line in experiment logs."""

    index: int
    start: int
    budget: int
    drafted: int  # computed draft tokens
    sent: int
    accepted: int
    token: int
    entropies: list[float]
    wall: PhaseTimes = field(default_factory=PhaseTimes)
    charge: dict | None = None  # modelled time/energy terms from the clock, if any
    predrafted: int = 0  # tokens drafted ahead while this round's verdict was in flight (pipelined loop)
    carried: int = 0  # tokens of this round's draft that came from the previous round's pre-draft

    @property
    def new_tokens(self) -> int:
        return self.accepted + 1
