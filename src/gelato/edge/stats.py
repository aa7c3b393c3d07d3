"""Edge counters and histograms, exported as JSON by the Metrics RPC."""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

LATENCY_BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


@dataclass
class Histogram:
    """Cumulative-free bucket counts: ``counts[i]`` = observations <= ``buckets[i]`` and > ``buckets[i-1]``;
    the last count is the overflow (> last bucket)."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS_MS
    counts: list[int] = field(default_factory=list)
    count: int = 0
    total: float = 0.0
    max: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.count += 1
        self.total += value
        self.max = max(self.max, value)

    def quantile(self, q: float) -> float:
        """Upper bucket bound containing quantile ``q`` (the max for the overflow bucket)."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank and c:
                return self.buckets[i] if i < len(self.buckets) else self.max
        return self.max

    def to_dict(self) -> dict:
        return {"buckets": list(self.buckets), "counts": list(self.counts), "count": self.count,
                "sum": round(self.total, 6), "mean": round(self.total / self.count, 6) if self.count else 0.0,
                "max": round(self.max, 6), "p50": self.quantile(0.5), "p99": self.quantile(0.99)}


class EdgeMetrics:
    """Updated from the event loop and the model thread; every access holds one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = time.time()
        self.rounds = 0
        self.tokens = 0  # tokens appended to sessions (accepted + edge tokens, streamed ones included)
        self.streamed = 0  # tokens the edge generated in bursts (each also in ``tokens``)
        self.drafted = 0  # draft tokens received
        self.accepted = 0
        self.prefill_chunks = 0
        self.sessions_opened = 0
        self.sessions_closed = 0
        self.sessions_expired = 0
        self.clients_gone = 0  # streams whose client vanished before their reply could be written
        self.batches = 0
        self.batch_sizes: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.verify_ms = Histogram()  # server-side Verify latency: queue + forward + verification
        self.queue_ms = Histogram()
        self.forward_ms = Histogram()

    def observe_round(self, drafted: int, accepted: int, appended: int, streamed: bool = False,
                      new_round: bool = True) -> None:
        """One verification; a burst's step has ``streamed`` (its first also ``new_round``: a burst is one round)."""
        with self.lock:
            self.rounds += new_round
            self.drafted += drafted
            self.accepted += accepted
            self.tokens += appended
            self.streamed += streamed

    def observe_batch(self, size: int, forward_ms: float) -> None:
        with self.lock:
            self.batches += 1
            self.batch_sizes[size] += 1
            self.forward_ms.observe(forward_ms)

    def count(self, name: str, key: str | None = None) -> None:
        """Increment a counter attribute, or ``errors[key]`` when ``name == "errors"``."""
        with self.lock:
            if name == "errors":
                self.errors[key] += 1
            else:
                setattr(self, name, getattr(self, name) + 1)

    def observe_latency(self, verify_ms: float, queue_ms: float) -> None:
        with self.lock:
            self.verify_ms.observe(verify_ms)
            self.queue_ms.observe(queue_ms)

    def to_dict(self, active_sessions: int, cache_tokens: int) -> dict:
        with self.lock:
            return self._to_dict(active_sessions, cache_tokens)

    def _to_dict(self, active_sessions: int, cache_tokens: int) -> dict:
        return {
            "uptime_s": round(time.time() - self.started, 3),
            "rounds": self.rounds,
            "tokens": self.tokens,
            "streamed": self.streamed,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "acceptance_rate": self.accepted / self.drafted if self.drafted else 0.0,
            "mean_acceptance_length": self.tokens / self.rounds if self.rounds else 0.0,
            "prefill_chunks": self.prefill_chunks,
            "sessions": {"active": active_sessions, "opened": self.sessions_opened,
                         "closed": self.sessions_closed, "expired": self.sessions_expired,
                         "clients_gone": self.clients_gone},
            "cache_tokens": cache_tokens,
            "batches": self.batches,
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "errors": dict(self.errors),
            "verify_latency_ms": self.verify_ms.to_dict(),
            "queue_ms": self.queue_ms.to_dict(),
            "forward_ms": self.forward_ms.to_dict(),
        }
