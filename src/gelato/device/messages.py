"""The messages of a device's rounds and what they measure: the uplink message of a round, a round's
:class:`~gelato.decoding.types.RoundMeasurement` (the one way bytes are measured), and the device's running
:class:`RemoteStats` (re-exported by :mod:`gelato.device.client`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gelato.decoding.types import Draft, RoundMeasurement, Verdict
from gelato.wire.codec import encode_draft
from gelato.wire.payload import PayloadConfig, build_verdict_down
from gelato.wire.proto import gelato_pb2 as pb


def draft_message(committed: Sequence[int], draft: Draft, round_id: int, payload: PayloadConfig,
                  pending: int = 0) -> pb.StreamUp:
    """The round's uplink message on a stream: ``draft`` after ``committed``, whose last ``pending`` ids the
    edge learns with it."""
    return pb.StreamUp(draft=encode_draft(draft, round_id=round_id, position=len(committed),
                                          pending_ids=list(committed[len(committed) - pending:]), cfg=payload))


def measure(up: pb.StreamUp, down: pb.StreamDown, extra: Sequence[tuple[pb.StreamUp, pb.StreamDown]] = (),
            **timing) -> RoundMeasurement:
    """A round's measurement: the serialized sizes of its real messages (the one way bytes are measured; ``extra``:
    the round's further exchanges, a draws payload's redraws), with the times given."""
    return RoundMeasurement(up_bytes=up.ByteSize() + sum(u.ByteSize() for u, _ in extra),
                            down_bytes=down.ByteSize() + sum(d.ByteSize() for _, d in extra),
                            up_messages=1 + len(extra), down_messages=1 + len(extra), **timing)


def message_measurement(committed: Sequence[int], draft: Draft, verdict: Verdict, round_id: int,
                        payload: PayloadConfig) -> RoundMeasurement:
    """The measurement of a round verified in process: the sizes of the messages a stream would carry (under the
    draws payload a rejected round's verdict carries M draws of p, not the token the in-process verifier drew)."""
    on_stream = payload.model_copy(update={"session": 0})  # the stream is the session
    down = pb.StreamDown(verdict=build_verdict_down(verdict, on_stream, round_id, len(committed) + verdict.accepted + 1,
                                                    n_sent=len(draft.tokens)))
    return measure(draft_message(committed, draft, round_id, payload), down)


@dataclass
class RemoteStats:
    rounds: int = 0
    attempts: int = 0
    retries: int = 0
    reopens: int = 0
    opens: int = 0
    busy_retries: int = 0
    redraws: int = 0  # draws payload: fallback exchanges (every draw of a verdict failed)
    up_bytes: int = 0
    down_bytes: int = 0
    timings: list[RoundMeasurement] = field(default_factory=list)

    def summary(self) -> dict:
        t = self.timings
        mean = (lambda xs: sum(xs) / len(xs) if xs else 0.0)
        return {"rounds": self.rounds, "retries": self.retries, "reopens": self.reopens, "opens": self.opens,
                "busy_retries": self.busy_retries, "redraws": self.redraws,
                "up_bytes": self.up_bytes, "down_bytes": self.down_bytes,
                "rpc_ms_mean": mean([x.rpc_ms for x in t]), "server_ms_mean": mean([x.server_ms for x in t]),
                "network_ms_mean": mean([x.network_ms for x in t]), "forward_ms_mean": mean([x.forward_ms for x in t]),
                "queue_ms_mean": mean([x.queue_ms for x in t]), "batch_mean": mean([x.batch for x in t])}
