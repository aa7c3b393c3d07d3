"""Per-generation metrics, with vLLM's names where one exists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from gelato.decoding.types import RoundRecord


@dataclass
class SpecMetrics:
    generated_tokens: int = 0
    rounds: int = 0
    drafted: int = 0  # draft tokens computed on the device
    sent: int = 0  # draft tokens proposed to the verifier
    accepted: int = 0
    discarded: int = 0  # computed but not sent (early stop on the token itself)
    streamed: int = 0  # tokens the edge generated in bursts (no draft)
    mean_acceptance_length: float = 0.0  # generated tokens / rounds
    draft_acceptance_rate: float = 0.0  # accepted / sent
    acceptance_per_position: list[float] = field(default_factory=list)
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0
    other_seconds: float = 0.0
    wall_seconds: float = 0.0
    tokens_per_second: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def summarize_rounds(rounds: Sequence[RoundRecord], generated_tokens: int, wall_seconds: float) -> SpecMetrics:
    m = SpecMetrics(generated_tokens=generated_tokens, rounds=len(rounds), wall_seconds=wall_seconds)
    longest = max((r.sent for r in rounds), default=0)
    reached = [0] * longest
    passed = [0] * longest
    for r in rounds:
        m.drafted += r.drafted
        m.sent += r.sent
        m.accepted += r.accepted
        m.streamed += r.streamed
        m.draft_seconds += r.wall.draft
        m.verify_seconds += r.wall.verify
        m.other_seconds += r.wall.other
        for i in range(r.sent):
            reached[i] += 1
            passed[i] += i < r.accepted
    m.discarded = m.drafted - m.sent
    m.mean_acceptance_length = generated_tokens / m.rounds if m.rounds else 0.0
    m.draft_acceptance_rate = m.accepted / m.sent if m.sent else 0.0
    m.acceptance_per_position = [p / n if n else 0.0 for p, n in zip(passed, reached)]
    m.tokens_per_second = generated_tokens / wall_seconds if wall_seconds > 0 else 0.0
    return m
