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
    port: int = typer.Option(9000, "--port", help="gRPC ingress port (every interface; devices use HOST:PORT)"),
    metrics_port: int = typer.Option(8000, "--metrics-port", help="HTTP: /metrics (Prometheus, by replica), /status"),
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
                "max_sessions_per_device": max_sessions_per_device}
        if tokens_file is not None:
            edge["tokens"] = str(tokens_file.resolve())
        if fingerprint:
            from gelato.cli.common import resolve_fingerprint
            edge["fingerprint"] = resolve_fingerprint(fingerprint)
        spec = ClusterSpec(target_dir=str(Path(target_dir).resolve()), replicas=replicas, port=port,
                           metrics_port=metrics_port, max_sessions=max_sessions, max_queued=max_queued,
                           min_replicas=min_replicas, max_replicas=max_replicas, target_sessions=target_sessions,
                           ingress=ingress, replica_cpus=replica_cpus, edge=edge)
        state = cluster_up(spec, address=address, num_cpus=num_cpus, timeout_s=timeout_s)
    except (ClusterError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"gelato cluster up: {replicas} replicas, gRPC ingress on port {state['port']}, metrics at "
               f"http://127.0.0.1:{state['metrics_port']}/metrics (head pid {state['pid']})")


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """The replicas with their open sessions and health."""
    from gelato.cluster.app import ClusterError
    from gelato.cluster.control import status as cluster_status

    try:
        result = cluster_status()
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
def down() -> None:
    """Stop the cluster started by `gelato cluster up` (Serve and the Ray it started)."""
    from gelato.cluster.control import down as cluster_down

    state = cluster_down()
    typer.echo("no gelato cluster was up" if state is None else f"gelato cluster down (head pid {state['pid']})")
