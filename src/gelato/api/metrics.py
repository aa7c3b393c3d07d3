"""Server-wide Prometheus metrics (``GET /metrics``), named like vLLM's with a ``gelato_`` prefix.

Each app has its own registry, so several servers can live in one process (tests).
"""

from __future__ import annotations

from prometheus_client import (  # noqa: F401
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from gelato.api.generation import RoundEvent

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
                    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)


disable_created_metrics()  # no ``*_created`` series (as vLLM): they double the scrape for nothing


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.num_drafts = Counter("gelato_spec_decode_num_drafts", "Rounds that sent at least one draft token",
                                  registry=r)
        self.num_draft_tokens = Counter("gelato_spec_decode_num_draft_tokens", "Draft tokens sent for "
                                        "verification", registry=r)
        self.num_accepted_tokens = Counter("gelato_spec_decode_num_accepted_tokens", "Draft tokens accepted",
                                           registry=r)
        self.accepted_per_pos = Counter("gelato_spec_decode_num_accepted_tokens_per_pos", "Draft tokens "
                                        "accepted at each position of a round", ["position"], registry=r)
        self.rounds = Counter("gelato_spec_decode_num_rounds", "Draft-verify rounds", registry=r)
        self.uplink_bytes = Counter("gelato_spec_decode_uplink_bytes", "Bytes of draft messages", registry=r)
        self.downlink_bytes = Counter("gelato_spec_decode_downlink_bytes", "Bytes of verdict messages",
                                      registry=r)
        self.device_joules = Counter("gelato_device_energy_joules", "Modelled device energy (system model)",
                                     registry=r)
        self.prompt_tokens = Counter("gelato_prompt_tokens", "Prompt tokens processed", registry=r)
        self.generation_tokens = Counter("gelato_generation_tokens", "Tokens generated", registry=r)
        self.requests = Counter("gelato_request_success", "Finished requests", ["finished_reason"], registry=r)
        self.cancelled = Counter("gelato_request_cancelled", "Requests whose client went away mid-generation",
                                 registry=r)
        self.request_errors = Counter("gelato_request_errors", "Refused or failed requests", ["status"],
                                      registry=r)
        self.running = Gauge("gelato_num_requests_running", "Requests in flight", registry=r)
        self.ttft = Histogram("gelato_time_to_first_token_seconds", "Time to first token", registry=r,
                              buckets=_LATENCY_BUCKETS)
        self.itl = Histogram("gelato_inter_token_latency_seconds", "Time between tokens (a round's time "
                             "shared by the tokens it committed)", registry=r, buckets=_LATENCY_BUCKETS)
        self.e2e = Histogram("gelato_e2e_request_latency_seconds", "Request latency", registry=r,
                             buckets=_LATENCY_BUCKETS)

    def round(self, event: RoundEvent, tokens: int, since_previous: float, first: bool) -> None:
        """Count one round that ``tokens`` response tokens came from, ``since_previous`` s after the last one
        (after the request's arrival for the first round)."""
        rec = event.record
        self.rounds.inc()
        if rec.sent:
            self.num_drafts.inc()
            self.num_draft_tokens.inc(rec.sent)
        self.num_accepted_tokens.inc(rec.accepted)
        for pos in range(rec.accepted):
            self.accepted_per_pos.labels(position=str(pos)).inc()
        self.uplink_bytes.inc(event.up_bytes)
        self.downlink_bytes.inc(event.down_bytes)
        if event.joules is not None:
            self.device_joules.inc(event.joules)
        self.generation_tokens.inc(tokens)
        if first:
            self.ttft.observe(since_previous)
        elif tokens:
            for _ in range(tokens):
                self.itl.observe(since_previous / tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
