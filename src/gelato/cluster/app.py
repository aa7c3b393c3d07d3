"""The Serve application: N edge replicas behind Serve's gRPC ingress, autoscaled on open sessions.

Everything here expects a connected Ray driver (``ray.init``); :mod:`gelato.cluster.control` makes one.
Routing: a stream is one Serve request pinned to one replica for its life; ``max_ongoing_requests`` is the
replica's session limit (plus room for Health/Metrics calls), so Serve sends no stream to a full replica;
at most ``max_queued`` streams wait in the proxy when every replica is full, and beyond that Serve answers
RESOURCE_EXHAUSTED, which the device retries with backoff. Autoscaling (``min_replicas < max_replicas``)
targets ``target_sessions`` open sessions per replica.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from gelato.cluster.ingress import SERVICER_FUNCTION

APP = "gelato"
DEPLOYMENT = "edge"
# Serve reads these flags once, at import, in every Ray process (workers inherit the driver's environment).
# haproxy (measured +0.25-0.35 ms a round over a direct edge, +1.7 under heavy load): HAProxy pins each HTTP/2
# stream to one replica's own gRPC server ("direct ingress"); proxy (+1.3-2.9 ms): Serve's Python proxy actor relays every message,
# the replica pulling each one from it with a Ray call.
INGRESS_MODES = {"proxy": {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "0", "RAY_SERVE_ENABLE_HA_PROXY": "0"},
                 "haproxy": {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"},
                 # no ingress at all: each replica's own gRPC port (40000 upwards); for measuring one replica
                 "direct": {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1", "RAY_SERVE_ENABLE_HA_PROXY": "0"}}
UNARY_HEADROOM = 4  # Health/Metrics calls also count as Serve requests on a replica


class ClusterError(RuntimeError):
    """A cluster operation failed; the message is one line for the user."""


@dataclass
class ClusterSpec:
    target_dir: str
    replicas: int = 2  # fixed count, or the initial count when autoscaling
    port: int = 9000  # Serve's gRPC ingress (every interface)
    metrics_port: int = 8000  # Serve's HTTP proxy: GET /metrics (Prometheus text, every replica labelled)
    max_sessions: int = 16  # per replica (the edge's --max-sessions, and Serve's routing limit)
    max_queued: int = 1  # streams waiting in the proxy when every replica is full; beyond: RESOURCE_EXHAUSTED
    min_replicas: int | None = None  # autoscaling when min_replicas < max_replicas
    max_replicas: int | None = None
    target_sessions: float | None = None  # autoscaling target per replica (default 3/4 of max_sessions)
    ingress: str = "haproxy"  # Serve's HAProxy to the replicas' own gRPC servers; "proxy": Serve's gRPC proxy actor
    replica_cpus: float = 1.0
    threads: int = 1
    health_check_period_s: float = 2.0
    edge: dict[str, Any] = field(default_factory=dict)  # build_edge_server keywords (tokens, max_batch, ...)

    def __post_init__(self) -> None:
        for name in ("replicas", "max_sessions", "max_queued"):
            if getattr(self, name) < 1:
                raise ClusterError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("port", "metrics_port"):
            if not 0 < getattr(self, name) < 65536:
                raise ClusterError(f"{name} must be a TCP port (1-65535), got {getattr(self, name)}")
        if self.port == self.metrics_port:
            raise ClusterError(f"the gRPC port and the metrics port are both {self.port}")
        if self.ingress not in INGRESS_MODES:
            raise ClusterError(f"ingress must be one of {', '.join(INGRESS_MODES)}, got {self.ingress!r}")
        lo, hi = self.min_replicas, self.max_replicas
        if (lo is None) != (hi is None):
            raise ClusterError("autoscaling needs both --min-replicas and --max-replicas")
        if lo is not None and not 1 <= lo <= self.replicas <= hi:
            raise ClusterError(f"need 1 <= min_replicas ({lo}) <= replicas ({self.replicas}) <= max_replicas ({hi})")

    @property
    def autoscaling(self) -> bool:
        return self.min_replicas is not None and self.min_replicas < self.max_replicas

    def to_dict(self) -> dict:
        return asdict(self)


def replica_options(spec: ClusterSpec) -> dict:
    """``serve.deployment`` options: the session limit, the queue, health checks, replicas or autoscaling."""
    options = dict(name=DEPLOYMENT, max_ongoing_requests=spec.max_sessions + UNARY_HEADROOM,
                   max_queued_requests=spec.max_queued, health_check_period_s=spec.health_check_period_s,
                   health_check_timeout_s=max(10.0, 3 * spec.health_check_period_s),
                   graceful_shutdown_timeout_s=5.0, ray_actor_options={"num_cpus": spec.replica_cpus})
    if spec.autoscaling:
        options["autoscaling_config"] = {
            "min_replicas": spec.min_replicas, "max_replicas": spec.max_replicas,
            "initial_replicas": spec.replicas,
            "target_ongoing_requests": spec.target_sessions or max(1.0, 0.75 * spec.max_sessions),
            "upscale_delay_s": 5.0, "downscale_delay_s": 60.0}
    else:
        options["num_replicas"] = spec.replicas
    return options


def edge_app(spec: ClusterSpec):
    from ray import serve

    from gelato.cluster.replica import EdgeReplica

    edge_cfg = dict(spec.edge, max_sessions=spec.max_sessions)
    replica_spec = {"target_dir": spec.target_dir, "threads": spec.threads, "edge": edge_cfg}
    return serve.deployment(EdgeReplica, **replica_options(spec)).bind(replica_spec)


def deploy(spec: ClusterSpec, timeout_s: float = 300.0) -> None:
    """Start Serve's proxies (gRPC on ``spec.port``, HTTP on ``spec.metrics_port``) and run the edge replicas.

    One application, one deployment: gRPC calls run the edge's methods; HTTP ``/metrics`` and ``/status``
    reach any replica, which asks all of them (:func:`gelato.cluster.metrics.http_response`)."""
    from ray import serve
    from ray.serve.config import gRPCOptions

    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": spec.metrics_port},
                grpc_options=gRPCOptions(port=spec.port, grpc_servicer_functions=[SERVICER_FUNCTION],
                                         enable_reflection=False))
    serve.run(edge_app(spec), name=APP, route_prefix="/", blocking=False)
    wait_running(spec.replicas, timeout_s)


def wait_running(replicas: int, timeout_s: float) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while True:
        app = serve.status().applications.get(APP)
        state = str(getattr(app, "status", "")) if app else "MISSING"
        running = _running_replicas(app)
        if running >= replicas and state.endswith("RUNNING"):
            return
        if state.endswith("DEPLOY_FAILED"):
            raise ClusterError(f"the edge replicas failed to start: {_one_line(app.message)}")
        if time.monotonic() > deadline:
            raise ClusterError(f"{running} of {replicas} replicas running after {timeout_s:.0f} s (app {state})")
        time.sleep(0.5)


def _running_replicas(app) -> int:
    if app is None or DEPLOYMENT not in app.deployments:
        return 0
    states = app.deployments[DEPLOYMENT].replica_states
    return int(sum(n for s, n in states.items() if str(s).endswith("RUNNING")))


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    return lines[-1][:400] if lines else "(no message)"


def replica_statuses(timeout_s: float = 10.0) -> list[dict]:
    """Every running replica's own report (sessions, health, metrics): one call per replica."""
    from ray import serve

    handle = serve.get_deployment_handle(DEPLOYMENT, APP)
    results = handle.broadcast("replica_status").results(timeout_s=timeout_s)
    return sorted((r for r in _values(results) if isinstance(r, dict)), key=lambda r: r["replica"])


def _values(results) -> list:
    if isinstance(results, dict):
        return list(results.values())
    return list(results)


def cluster_status(timeout_s: float = 10.0) -> dict:
    """Serve's view (application and replica states) and each replica's sessions and health."""
    from ray import serve

    status = serve.status()
    app = status.applications.get(APP)
    if app is None:
        raise ClusterError("no gelato cluster is deployed (run `gelato cluster up`)")
    dep = app.deployments.get(DEPLOYMENT)
    replicas = replica_statuses(timeout_s)
    for r in replicas:
        r.pop("metrics", None)
    return {"application": str(app.status).rsplit(".", 1)[-1],
            "deployment": str(dep.status).rsplit(".", 1)[-1] if dep else "MISSING",
            "replica_states": {str(k).rsplit(".", 1)[-1]: int(v) for k, v in (dep.replica_states.items() if dep else [])},
            "replicas": replicas, "sessions": sum(r["sessions"] for r in replicas),
            "capacity": sum(r["max_sessions"] for r in replicas)}
