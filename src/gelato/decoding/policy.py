"""The interface the round loop asks a draft-length policy for (implemented in ``gelato.policies``).

The loop asks, in order: ``stream(ctx)`` (an edge burst instead of a draft, if > 0), ``budget(ctx)`` before
drafting (the outer loop), ``keep_drafting(step)``
after each drafted token (the inner loop), and ``observe(record)`` once the round is verified and
charged (``record.charge`` then holds the clock's time and energy terms). The interface lives here, with
the loop that calls it, so the loop never imports the policies that implement it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from gelato.decoding.types import Draft, DraftStep, RoundRecord, StopDecision


@dataclass(frozen=True)
class RoundContext:
    """What a policy may read before a round: where generation stands and the clock's link state."""

    index: int  # round index over the policy's lifetime (across prompts)
    generated: int  # tokens generated so far for the current prompt
    context_len: int  # committed tokens (prompt + generated)
    # the loop clips the budget to this, the one ceiling: the least of the tokens left (remaining - 1), the
    # proposer's reach and the verifier's largest draft
    max_budget: int
    link: Any = None  # the clock's view of this round's channel (e.g. a ChannelState), if modelled
    carried: int = 0  # pipelined loop: tokens already drafted ahead for this round (free to send)
    # the most tokens the edge may stream this round (the answer's tokens left, within the verifier's burst
    # limit); 0 when the verifier cannot stream
    max_stream: int = 0


class DraftPolicy(ABC):
    """A draft-length policy. Which payload a policy implies is on its registry entry
    (``gelato.policies.registry.PolicySpec.payload_mode``), not on the instance."""

    name: str = "policy"

    @abstractmethod
    def budget(self, ctx: RoundContext) -> int:
        """Maximum number of tokens to draft this round: >= 1, or 0 for edge-only decoding (no draft)."""

    def keep_drafting(self, step: DraftStep) -> StopDecision:
        """Called after each drafted token; default: draft up to the budget."""
        return StopDecision.CONTINUE

    def predraft(self, ctx: RoundContext, draft: Draft) -> int:
        """How many tokens to draft ahead while ``draft`` is being verified (pipelined loop only).

        The pre-draft continues ``draft.tokens`` as if all were accepted; it becomes the head of the next
        round's draft when the edge accepts every sent token and its own token equals the first pre-drafted
        one, and is discarded (its energy spent) otherwise. Default 0: no pre-drafting, today's rounds."""
        return 0

    def stream(self, ctx: RoundContext) -> int:
        """Tokens the edge should generate by itself this round, streaming each (a burst; the loop clips it to
        ``ctx.max_stream``). > 0: the round drafts nothing (its budget is not asked). Default 0: no bursts."""
        return 0

    def observe(self, record: RoundRecord) -> None:
        """Update internal estimates with the finished round."""

    def state(self) -> dict:
        """Per-round fields for logs (queue, estimates...)."""
        return {}
