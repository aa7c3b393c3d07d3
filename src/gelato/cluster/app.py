"""The Serve application: N edge replicas behind Serve's gRPC ingress, autoscaled on open sessions.

Everything here expects a connected Ray driver (``ray.init``); :mod:`gelato.cluster.control` makes one.
Routing: a stream is one Serve request pinned to one replica for its life; ``max_ongoing_requests`` is the
replica's session limit (plus room for Health/Metrics calls), so Serve sends no stream to a full replica;
at most ``max_queued`` streams wait in the proxy when every replica is full, and beyond that Serve answers
RESOURCE_EXHAUSTED, which the device retries with backoff. Autoscaling (``min_replicas < max_replicas``)
targets ``target_sessions`` open sessions per replica.
"""

from __future__ import annotations

import re
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


NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
DEFAULT_MESSAGE_BYTES = 4 * 1024 * 1024  # a single edge's default (EdgeConfig.max_message_bytes)


@dataclass
class ClusterSpec:
    target_dir: str
    replicas: int = 2  # fixed count, or the initial count when autoscaling
    port: int = 9000  # the gRPC ingress, on ``host``
    metrics_port: int = 8000  # Serve's HTTP ingress on ``host``: GET /metrics (Prometheus text, every replica labelled)
    host: str = "127.0.0.1"  # where the ingress (gRPC and HTTP) listens; 0.0.0.0 for every interface
    name: str = "default"  # `gelato cluster status/down --name` act on this cluster only
    stats_port: int = 8404  # Serve's HAProxy statistics page (haproxy ingress; Ray binds it on every interface)
    exporter_port: int = 9101  # Serve's HAProxy Prometheus exporter (haproxy ingress; every interface too)
    fallback_port: int = 9500  # Serve's gRPC proxy actor, HAProxy's backup route (haproxy ingress; every interface)
    fallback_http_port: int = 8500  # its HTTP twin, on ``host`` (haproxy ingress)
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
        if not NAME.fullmatch(self.name):
            raise ClusterError(f"--name takes lower-case letters, digits, - and _ (up to 40), not {self.name!r}")
        ports = self.fixed_ports()
        for flag, port in ports.items():
            if not 0 < port < 65536:
                raise ClusterError(f"{flag} must be a TCP port (1-65535), got {port}")
        seen: dict[int, str] = {}
        for flag, port in ports.items():
            if port in seen:
                raise ClusterError(f"{flag} {port} is also {seen[port]}: give each port its own number")
            seen[port] = flag
        if int(self.edge.get("max_message_bytes", DEFAULT_MESSAGE_BYTES)) < 1:
            raise ClusterError("max_message_bytes must be >= 1")
        if self.ingress not in INGRESS_MODES:
            raise ClusterError(f"ingress must be one of {', '.join(INGRESS_MODES)}, got {self.ingress!r}")
        lo, hi = self.min_replicas, self.max_replicas
        if (lo is None) != (hi is None):
            raise ClusterError("autoscaling needs both --min-replicas and --max-replicas")
        if lo is not None and not 1 <= lo <= self.replicas <= hi:
            raise ClusterError(f"need 1 <= min_replicas ({lo}) <= replicas ({self.replicas}) <= max_replicas ({hi})")

    def fixed_ports(self) -> dict[str, int]:
        """Every TCP port the cluster opens at a fixed number, by the flag that sets it (the replicas' own
        gRPC ports, 40000 upwards in the haproxy ingress, are Serve's choice)."""
        ports = {"--port": self.port, "--metrics-port": self.metrics_port}
        if self.ingress == "haproxy":
            ports.update({"--stats-port": self.stats_port, "--exporter-port": self.exporter_port,
                          "--fallback-port": self.fallback_port, "--fallback-http-port": self.fallback_http_port})
        return ports

    @property
    def max_message_bytes(self) -> int:
        return int(self.edge.get("max_message_bytes", DEFAULT_MESSAGE_BYTES))

    @property
    def autoscaling(self) -> bool:
        return self.min_replicas is not None and self.min_replicas < self.max_replicas

    def to_dict(self) -> dict:
        return asdict(self)


def ray_env(spec: ClusterSpec, private_dir: str | None = None) -> dict[str, str]:
    """What Serve reads from the environment, once, in every Ray process: the ingress mode, the largest gRPC
    message its servers accept (the proxy's, the replicas' own: a larger one is RESOURCE_EXHAUSTED before it
    is read, as on a single edge), the HAProxy's statistics and exporter ports, the fallback proxy's ports,
    and (``private_dir``, an owner-only directory) where the HAProxy keeps its config, admin socket and
    state instead of the machine-wide ``/tmp/haproxy-serve`` (two clusters would share them)."""
    env = dict(INGRESS_MODES[spec.ingress], RAY_SERVE_GRPC_MAX_MESSAGE_SIZE=str(spec.max_message_bytes),
               RAY_SERVE_HAPROXY_STATS_PORT=str(spec.stats_port),
               RAY_SERVE_HAPROXY_METRICS_PORT=str(spec.exporter_port),
               RAY_SERVE_FALLBACK_PROXY_GRPC_PORT=str(spec.fallback_port),
               RAY_SERVE_FALLBACK_PROXY_HTTP_PORT=str(spec.fallback_http_port))
    if private_dir is not None:
        env.update(RAY_SERVE_HAPROXY_CONFIG_FILE_LOC=f"{private_dir}/haproxy.cfg",
                   RAY_SERVE_HAPROXY_SOCKET_PATH=f"{private_dir}/admin.sock",
                   RAY_SERVE_HAPROXY_SERVER_STATE_BASE=private_dir,
                   RAY_SERVE_HAPROXY_SERVER_STATE_FILE=f"{private_dir}/server-state")
    return env


def replica_options(spec: ClusterSpec) -> dict:
    """``serve.deployment`` options: the session limit, the queue, health checks, replicas or autoscaling."""
    options = dict(name=DEPLOYMENT, max_ongoing_requests=spec.max_sessions + UNARY_HEADROOM,
                   max_queued_requests=spec.max_queued, health_check_period_s=spec.health_check_period_s,
                   health_check_timeout_s=max(10.0, 3 * spec.health_check_period_s),
                   graceful_shutdown_timeout_s=5.0,
                   # the message limit travels with the replicas, also into a joined (--address) Ray
                   ray_actor_options={"num_cpus": spec.replica_cpus, "runtime_env": {"env_vars": {
                       "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": str(spec.max_message_bytes)}}})
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

    edge_cfg = dict(spec.edge, max_sessions=spec.max_sessions, max_message_bytes=spec.max_message_bytes)
    replica_spec = {"target_dir": spec.target_dir, "threads": spec.threads, "edge": edge_cfg}
    return serve.deployment(EdgeReplica, **replica_options(spec)).bind(replica_spec)


def deploy(spec: ClusterSpec, timeout_s: float = 300.0) -> None:
    """Start Serve's proxies (gRPC on ``spec.port``, HTTP on ``spec.metrics_port``, both on ``spec.host``: Serve's
    HAProxy binds both on its HTTP host) and run the edge replicas.

    One application, one deployment: gRPC calls run the edge's methods; HTTP ``/metrics`` and ``/status``
    reach any replica, which asks all of them (:func:`gelato.cluster.metrics.http_response`)."""
    from ray import serve
    from ray.serve.config import gRPCOptions

    serve.start(proxy_location="HeadOnly", http_options={"host": spec.host, "port": spec.metrics_port},
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
