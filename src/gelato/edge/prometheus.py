"""The edge's Prometheus endpoint (``gelato serve --metrics-port``): KV memory, sessions and rounds as gauges
and counters, read from the running :class:`~gelato.edge.server.EdgeServer` at each scrape."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class EdgeCollector(Collector):
    """Reads plain counters only (ints the model thread updates whole), so a scrape never waits on a round."""

    def __init__(self, server) -> None:
        self.server = server

    def collect(self):
        s, m = self.server, self.server.metrics
        store = s.kv_store
        gauges = [("gelato_edge_kv_used_bytes", "Bytes of KV cache allocated now", store.bytes_used if store else 0),
                  ("gelato_edge_kv_budget_bytes", "The KV cache's budget (--kv-memory)", s.kv_budget),
                  ("gelato_edge_kv_peak_bytes", "Most KV cache bytes ever allocated at once",
                   store.peak_bytes if store else 0),
                  ("gelato_edge_sessions_active", "Open sessions", s.active_sessions),
                  ("gelato_edge_prefilling", "Opens whose prompt is being prefilled", s.worker.prefilling)]
        for name, doc, value in gauges:
            yield GaugeMetricFamily(name, doc, value=value)
        counters = [("gelato_edge_sessions_opened", "Sessions opened", m.sessions_opened),
                    ("gelato_edge_sessions_closed", "Opened sessions closed", m.sessions_closed),
                    ("gelato_edge_rounds", "Verification rounds", m.rounds),
                    ("gelato_edge_tokens", "Tokens committed by rounds", m.tokens)]
        for name, doc, value in counters:
            yield CounterMetricFamily(name, doc, value=value)
        errors = CounterMetricFamily("gelato_edge_errors", "Refused or failed requests by status", labels=["status"])
        for status, n in sorted(dict(m.errors).items()):
            errors.add_metric([status], n)
        yield errors


def start_metrics_server(server, port: int, host: str = "127.0.0.1"):
    """Serve ``/metrics`` for ``server`` on ``host:port`` from a daemon thread; returns (http server, thread)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EdgeCollector(server))
    return start_http_server(port, addr=host, registry=registry)
