"""Bursts on a device's stream: the edge generates up to n tokens by itself and streams each (issue "the
baseline a user would run"). A mixin of :class:`~gelato.device.client.RemoteVerifier`, which holds the stream,
its retries and its record of what the edge has committed; this module only adds the burst round."""

from __future__ import annotations

import time
from collections.abc import Sequence

from gelato.decoding.types import Burst, Draft, RoundMeasurement
from gelato.wire.codec import decode_verdict, encode_draft
from gelato.wire.errors import TransportError
from gelato.wire.proto import gelato_pb2 as pb


class BurstRounds:
    """``stream(committed, n, on_token, stop_ids) -> Burst`` for :class:`~gelato.device.client.RemoteVerifier`."""

    def stream(self, committed: Sequence[int], n: int, on_token=None, stop_ids: Sequence[int] = ()) -> Burst:
        """The edge generates up to ``n`` tokens after ``committed`` by itself (one round: a DraftUp with
        ``stream_tokens``), each handed to ``on_token`` as it arrives; it ends after ``n``, or after a stop id
        (this verifier's, or ``stop_ids``: those reach the edge at its next open; until then the device ends the
        stream itself). A drop mid-burst resumes on a new stream with the received tokens committed."""
        live = list(committed)
        if self._prompt_len is None:
            self._prompt_len = len(live)
        self._committed = live  # grows as tokens arrive: a failure reports them as committed
        self.stop_ids |= frozenset(stop_ids)
        if n < 1:
            raise ValueError(f"a burst streams at least one token, got n = {n}")
        got: list[int] = []
        seen = {"up": 0, "down": 0, "up_messages": 0, "down_messages": 0, "server_ms": 0.0, "queue_ms": 0.0, "forward_ms": 0.0, "batch": 0, "rpc_ms": 0.0}
        t0 = time.perf_counter()
        attempts0, reopens0 = self.stats.attempts, self.stats.reopens
        self._with_retries(lambda remaining: self._stream_once(live, got, n, on_token, seen, remaining))
        timing = RoundMeasurement(up_bytes=seen["up"], down_bytes=seen["down"], up_messages=seen["up_messages"],
                                  down_messages=seen["down_messages"], rpc_ms=seen["rpc_ms"],
                                  total_ms=(time.perf_counter() - t0) * 1e3, server_ms=seen["server_ms"],
                                  queue_ms=seen["queue_ms"], forward_ms=seen["forward_ms"], batch=seen["batch"],
                                  attempts=self.stats.attempts - attempts0, reopened=self.stats.reopens - reopens0)
        self.stats.rounds += 1
        self.stats.up_bytes += timing.up_bytes
        self.stats.down_bytes += timing.down_bytes
        self.stats.timings.append(timing)
        return Burst(got, measured=timing)

    def _stream_once(self, live: list[int], got: list[int], n: int, on_token, seen: dict, remaining: float) -> None:
        if got and (len(got) >= n or got[-1] in self.stop_ids):
            return  # the drop came after the burst's last token
        known = len(self._edge_ids)
        if (self._stream is None or known > len(live) or live[:known] != self._edge_ids
                or (self.max_draft is not None and len(live) - known > self.max_draft + 1)):
            self._open(live, remaining)  # first round, or resume with everything received so far
            known = len(live)
        up = pb.StreamUp(draft=encode_draft(Draft.empty(len(live)), round_id=self._round + 1, position=len(live),
                                            pending_ids=live[known:], cfg=self.payload, stream_tokens=n - len(got)))
        seen["up"] += up.ByteSize()
        seen["up_messages"] += 1
        t = time.perf_counter()
        down = self._stream.exchange(up, self.rpc_timeout)
        self._round += 1
        self._edge_ids = list(live)
        while True:
            reply = down.verdict
            if down.WhichOneof("kind") != "verdict" or not reply.streamed or reply.round != self._round:
                raise TransportError(f"the edge answered burst round {self._round} with "
                                     f"{down.WhichOneof('kind')} (streamed={reply.streamed}, round {reply.round})",
                                     live, self._prompt_len or 0)
            try:
                token = decode_verdict(reply, self.vocab_size or 0).token
            except ValueError as exc:
                raise TransportError(str(exc), live, self._prompt_len or 0) from None
            if token < 0 or len(got) >= n:
                raise TransportError(f"the edge streamed {'a distribution' if token < 0 else 'more than ' + str(n)}"
                                     " in a burst", live, self._prompt_len or 0)
            for x in (got, live, self._edge_ids):
                x.append(token)
            seen["down"] += down.ByteSize()
            seen["down_messages"] += 1
            times = down.times
            seen["server_ms"] += times.server_ms
            seen["queue_ms"] += times.queue_ms
            seen["forward_ms"] += times.forward_ms
            seen["batch"] = max(seen["batch"], times.batch)
            seen["rpc_ms"] = (time.perf_counter() - t) * 1e3
            if on_token is not None:
                on_token(token)
            if reply.last:
                return
            if token in self.stop_ids:  # a stop id the edge did not know at open: end the stream here
                self._drop_stream()
                return
            down = self._stream.receive(self.rpc_timeout)
