"""Every replica's edge metrics in one place: Prometheus text, each sample labelled ``replica``.

The edge reports its metrics as JSON (the ``Metrics`` RPC); :func:`prometheus_text` turns the replicas'
reports into prometheus_client metric families. :func:`http_response` serves Serve's HTTP ingress
(``--metrics-port``) from any replica: ``GET /metrics`` asks every edge replica for its report (a Serve
broadcast) and answers the text; ``GET /status`` answers the replicas' reports as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

PREFIX = "gelato_edge_"
COUNTERS = {  # JSON key -> (metric name, help)
    "rounds": ("rounds", "verification rounds served"),
    "tokens": ("tokens", "tokens appended to sessions (accepted + the edge's own)"),
    "drafted": ("drafted_tokens", "draft tokens received"),
    "accepted": ("accepted_tokens", "draft tokens accepted"),
    "prefill_chunks": ("prefill_chunks", "prompt prefill steps"),
    "batches": ("batches", "model forwards of verification rounds"),
}
GAUGES = {
    "cache_tokens": ("cache_tokens", "KV cache positions held by live sessions"),
    "prefilling": ("sessions_prefilling", "sessions still prefilling their prompt"),
    "kv_slots": ("kv_slots", "slots of the KV pool"),
    "kv_bytes": ("kv_bytes", "bytes of the KV pool"),
    "uptime_s": ("uptime_seconds", "seconds since the replica's edge started"),
}
HISTOGRAMS = {"verify_latency_ms": ("verify_latency_ms", "server-side round latency (queue + forward + verification)"),
              "queue_ms": ("queue_ms", "time a round waited for the model thread"),
              "forward_ms": ("forward_ms", "model forward time of a batch")}


class _ReplicaCollector:
    def __init__(self, reports: Iterable[dict]) -> None:
        self.reports = [r for r in reports if isinstance(r, dict)]

    def collect(self):
        label = ["replica"]
        fams = []
        for key, (name, doc) in COUNTERS.items():
            fam = CounterMetricFamily(PREFIX + name, doc, labels=label)
            for r in self.reports:
                fam.add_metric([r["replica"]], float(r.get(key, 0)))
            fams.append(fam)
        sessions = GaugeMetricFamily(PREFIX + "sessions_active", "open sessions (streams)", labels=label)
        opened = CounterMetricFamily(PREFIX + "sessions_opened", "sessions opened", labels=label)
        errors = CounterMetricFamily(PREFIX + "errors", "refusals by gRPC status", labels=["replica", "code"])
        for r in self.reports:
            s = r.get("sessions", {})
            sessions.add_metric([r["replica"]], float(s.get("active", 0)))
            opened.add_metric([r["replica"]], float(s.get("opened", 0)))
            for code, n in sorted(r.get("errors", {}).items()):
                errors.add_metric([r["replica"], code], float(n))
        fams += [sessions, opened, errors]
        for key, (name, doc) in GAUGES.items():
            fam = GaugeMetricFamily(PREFIX + name, doc, labels=label)
            for r in self.reports:
                if key in r:
                    fam.add_metric([r["replica"]], float(r[key]))
            fams.append(fam)
        for key, (name, doc) in HISTOGRAMS.items():
            fam = HistogramMetricFamily(PREFIX + name, doc, labels=label)
            for r in self.reports:
                h = r.get(key)
                if not h:
                    continue
                cumulative, buckets = 0, []
                for bound, n in zip([*h["buckets"], float("inf")], h["counts"]):
                    cumulative += n
                    buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
                fam.add_metric([r["replica"]], buckets, h["sum"])
            fams.append(fam)
        yield from fams


def prometheus_text(reports: Iterable[dict]) -> bytes:
    """Prometheus exposition text of the replicas' metric reports (``EdgeReplica.metrics_dict``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ReplicaCollector(reports))
    return generate_latest(registry)


async def http_response(request, handle):
    """``GET /metrics`` (Prometheus text) or ``GET /status`` (JSON) over every replica of ``handle``'s deployment."""
    from starlette.responses import Response

    results = await handle.broadcast("replica_status").results_async(timeout_s=10.0, return_exceptions=True)
    reports = [r for r in results if isinstance(r, dict)]
    if request.url.path.rstrip("/").endswith("/status"):
        return Response(json.dumps(reports), media_type="application/json")
    return Response(prometheus_text(r["metrics"] for r in reports),
                    media_type="text/plain; version=0.0.4; charset=utf-8")
