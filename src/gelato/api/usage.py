"""The ``usage`` block of one response, tallied from the rounds the response used.

Speculative counters use vLLM's names where it has one (``num_drafts``, ``num_draft_tokens``,
``num_accepted_tokens``, ``num_accepted_tokens_per_pos``, ``mean_acceptance_length``,
``draft_acceptance_rate``); ``mean_acceptance_length`` is committed tokens per round (accepted + 1).
Drafting ahead (the pipelined policies): ``num_predrafted_tokens`` were drafted while a round was being
verified, ``num_carried_draft_tokens`` of them became the head of the next round's draft.
"""

from __future__ import annotations

from gelato.api.generation import RoundEvent
from gelato.api.speculative import Speculation


class UsageTally:
    def __init__(self, prompt_tokens: int, spec: Speculation, bytes_source: str) -> None:
        self.prompt_tokens = prompt_tokens
        self.spec = spec
        self.bytes_source = bytes_source  # "measured" (edge) or "modelled" (the messages the wire would carry)
        self.completion_tokens = 0
        self.rounds = 0
        self.num_drafts = 0
        self.sent = 0
        self.computed = 0
        self.accepted = 0
        self.committed = 0
        self.predrafted = 0
        self.carried = 0
        self.per_pos_accepted: list[int] = []
        self.per_pos_reached: list[int] = []
        self.up_bytes = 0
        self.down_bytes = 0
        self.joules: float | None = None

    def add(self, event: RoundEvent, counted_tokens: int) -> None:
        """Add a round; ``counted_tokens`` of its ids belong to the response (fewer after a stop string)."""
        r = event.record
        self.completion_tokens += counted_tokens
        self.rounds += 1
        self.num_drafts += r.sent > 0
        self.sent += r.sent
        self.computed += r.drafted
        self.accepted += r.accepted
        self.committed += len(r.tokens)
        self.predrafted += r.predrafted
        self.carried += r.carried
        while len(self.per_pos_reached) < r.sent:
            self.per_pos_reached.append(0)
            self.per_pos_accepted.append(0)
        for i in range(r.sent):
            self.per_pos_reached[i] += 1
            self.per_pos_accepted[i] += i < r.accepted
        self.up_bytes += event.up_bytes
        self.down_bytes += event.down_bytes
        if event.joules is not None:
            self.joules = (self.joules or 0.0) + event.joules

    def usage(self) -> dict:
        spec = {
            "rounds": self.rounds,
            "num_drafts": self.num_drafts,
            "num_draft_tokens": self.sent,
            "num_computed_draft_tokens": self.computed,
            "num_predrafted_tokens": self.predrafted,
            "num_carried_draft_tokens": self.carried,
            "num_accepted_tokens": self.accepted,
            "num_accepted_tokens_per_pos": list(self.per_pos_accepted),
            "acceptance_rate_per_pos": [a / n if n else 0.0 for a, n in zip(self.per_pos_accepted,
                                                                             self.per_pos_reached)],
            "mean_acceptance_length": self.committed / self.rounds if self.rounds else 0.0,
            "draft_acceptance_rate": self.accepted / self.sent if self.sent else 0.0,
            "uplink_bytes": self.up_bytes,
            "downlink_bytes": self.down_bytes,
            "bytes": self.bytes_source,
            "device_joules": self.joules,
            "settings": self.spec.as_dict(),
        }
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens, "speculative": spec}
