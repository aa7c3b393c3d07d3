"""``gelato cluster up / status / down``: edge replicas behind Ray Serve's gRPC ingress (extra ``.[cluster]``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import typer  # noqa: E402

from gelato.cli.common import fail  # noqa: E402

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                  help="Many edge replicas behind one gRPC ingress (Ray Serve): devices and "
                  "`gelato api --edge` talk to it exactly as to one edge. Needs pip install -e '.[cluster]'.")


@app.command()
def up(
    replicas: int = typer.Option(2, "--replicas", help="edge replicas (the initial count when autoscaling)"),
    port: int = typer.Option(9000, "--port", help="gRPC ingress port, on --host (devices use HOST:PORT)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address the ingress and metrics listen on (0.0.0.0 for "
                             "every interface; the haproxy ingress only: the proxy ingress binds every interface)"),
    name: str = typer.Option("default", "--name", help="the cluster's name: status and down act on it only"),
    metrics_port: int = typer.Option(8000, "--metrics-port", help="HTTP on --host: /metrics (Prometheus, by "
                                     "replica), /status"),
    stats_port: int = typer.Option(8404, "--stats-port", help="Serve's HAProxy statistics page (haproxy ingress; "
                                   "Ray binds it on every interface: firewall it)"),
    exporter_port: int = typer.Option(9101, "--exporter-port", help="Serve's HAProxy Prometheus exporter (haproxy "
                                      "ingress; every interface too: firewall it)"),
    fallback_port: int = typer.Option(9500, "--fallback-port", help="Serve's gRPC proxy actor, HAProxy's backup "
                                      "route to the replicas (haproxy ingress; every interface: firewall it)"),
    fallback_http_port: int = typer.Option(8500, "--fallback-http-port", help="its HTTP twin, on --host (haproxy "
                                           "ingress)"),
    max_message_kb: int = typer.Option(4096, "--max-message-kb", help="largest gRPC message the ingress and the "
                                       "replicas accept (RESOURCE_EXHAUSTED beyond, before it is read)"),
    target_dir: Optional[Path] = typer.Option(None, "--target", "--target-dir",
                                              help="target model directory (default: the default pair's target)"),
    max_sessions: int = typer.Option(16, "--max-sessions", help="sessions per replica (Serve routes no more)"),
    max_queued: int = typer.Option(1, "--max-queued", help="streams that may wait in the ingress when every replica "
                                   "is full; beyond that RESOURCE_EXHAUSTED"),
    min_replicas: Optional[int] = typer.Option(None, "--min-replicas", help="autoscale between these bounds"),
    max_replicas: Optional[int] = typer.Option(None, "--max-replicas"),
    target_sessions: Optional[float] = typer.Option(None, "--target-sessions", help="autoscaling target of open "
                                                    "sessions per replica (default 3/4 of --max-sessions)"),
    ingress: str = typer.Option("haproxy", "--ingress", help="haproxy: Serve's HAProxy to each replica's own gRPC "
                                "server (+0.3 ms a round); proxy: Serve's gRPC proxy actor (+1.3-2.9 ms)"),
    replica_cpus: float = typer.Option(1.0, "--replica-cpus", help="Ray CPUs reserved per replica"),
    num_cpus: Optional[float] = typer.Option(None, "--num-cpus", help="CPUs of the local Ray (default: all)"),
    address: Optional[str] = typer.Option(None, "--address", help="join this Ray cluster instead of starting one"),
    max_batch: int = typer.Option(8, "--max-batch"),
    batch_window_ms: float = typer.Option(8.0, "--batch-window-ms"),
    tokens_file: Optional[Path] = typer.Option(None, "--tokens-file", help="bearer tokens, checked in each replica "
                                               "(default: $GELATO_TOKENS_FILE; none = no auth)"),
    max_sessions_per_device: int = typer.Option(16, "--max-sessions-per-device", help="per token, per replica"),
    fingerprint: Optional[str] = typer.Option(None, "--fingerprint", help="synthetic:N for tokenizer-less models"),
    timeout_s: float = typer.Option(300.0, "--timeout-s", help="wait this long for the replicas"),
) -> None:
    """Start (or join) Ray and serve N edge replicas behind Serve's gRPC ingress, in the background."""
    from gelato.cluster.app import ClusterError, ClusterSpec
    from gelato.cluster.control import require_ray
    from gelato.cluster.control import up as cluster_up

    try:
        require_ray()
        if target_dir is None:
            from gelato.cli.common import resolve_pair_dirs
            target_dir = resolve_pair_dirs(None, None)[1]
        tokens_file = tokens_file or (Path(os.environ["GELATO_TOKENS_FILE"]) if os.environ.get("GELATO_TOKENS_FILE")
                                      else None)
        if tokens_file is not None and not tokens_file.is_file():
            fail(f"token file not found: {tokens_file}")
        if not Path(target_dir).exists():
            fail(f"target model directory not found: {target_dir}")
        edge = {"max_batch": max_batch, "batch_window_ms": batch_window_ms,
                "max_sessions_per_device": max_sessions_per_device, "max_message_bytes": max_message_kb * 1024}
        if tokens_file is not None:
            edge["tokens"] = str(tokens_file.resolve())
        if fingerprint:
            from gelato.cli.common import resolve_fingerprint
            edge["fingerprint"] = resolve_fingerprint(fingerprint)
        spec = ClusterSpec(target_dir=str(Path(target_dir).resolve()), replicas=replicas, port=port, host=host,
                           name=name, metrics_port=metrics_port, stats_port=stats_port, exporter_port=exporter_port,
                           fallback_port=fallback_port, fallback_http_port=fallback_http_port,
                           max_sessions=max_sessions, max_queued=max_queued,
                           min_replicas=min_replicas, max_replicas=max_replicas, target_sessions=target_sessions,
                           ingress=ingress, replica_cpus=replica_cpus, edge=edge)
        state = cluster_up(spec, address=address, num_cpus=num_cpus, timeout_s=timeout_s)
    except (ClusterError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"gelato cluster {name} up: {replicas} replicas, gRPC ingress on {host}:{state['port']}, metrics "
               f"at http://{host}:{state['metrics_port']}/metrics (head pid {state['pid']}); open ports: "
               + ", ".join(f"{flag} {p}" for flag, p in spec.fixed_ports().items()))


NAME = typer.Option("default", "--name", help="the cluster's name (`gelato cluster up --name`)")


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="print JSON"), name: str = NAME) -> None:
    """The replicas with their open sessions and health."""
    from gelato.cluster.app import ClusterError
    from gelato.cluster.control import status as cluster_status

    try:
        result = cluster_status(name)
    except ClusterError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"application {result['application']}, deployment {result['deployment']}, replicas "
               f"{result['replica_states']}, sessions {result['sessions']}/{result['capacity']}, gRPC port "
               f"{result['grpc_port']}, metrics {result['metrics_url']}")
    for r in result["replicas"]:
        typer.echo(f"  replica {r['replica']}  pid {r['pid']}  node {r['node']}  sessions {r['sessions']}/"
                   f"{r['max_sessions']}  {'healthy' if r['healthy'] else 'UNHEALTHY'}  up {r['uptime_s']:.0f} s")


@app.command()
def down(name: str = NAME) -> None:
    """Stop the cluster started by `gelato cluster up` (Serve and the Ray it started)."""
    from gelato.cluster.control import down as cluster_down

    state = cluster_down(name)
    typer.echo(f"no gelato cluster named {name!r} was up" if state is None
               else f"gelato cluster {name} down (head pid {state['pid']})")
