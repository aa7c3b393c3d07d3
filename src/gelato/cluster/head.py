"""The background process of ``gelato cluster up``: a :class:`LocalCluster` driver kept alive until SIGTERM.

``python -m gelato.cluster.head --spec JSON --state PATH [--address A] [--num-cpus N]`` writes
``{"pid", "ready", "gcs_address", "name", "host", "port", "metrics_port", "ports"}`` (or ``{"pid", "error"}``) to PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from pathlib import Path

from gelato.cluster.app import ClusterError, ClusterSpec
from gelato.cluster.control import LocalCluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gelato.cluster.head")
    parser.add_argument("--spec", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--address")
    parser.add_argument("--num-cpus", type=float)
    args = parser.parse_args(argv)
    state = Path(args.state)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def record(**fields) -> None:
        tmp = state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), **fields}))
        tmp.replace(state)

    try:
        spec = ClusterSpec(**json.loads(args.spec))
        cluster = LocalCluster(spec, address=args.address, num_cpus=args.num_cpus).start()
    except ClusterError as exc:
        record(error=str(exc))
        return 2
    # Ray's token auth (on by default for a new local cluster, token in ~/.ray/auth_token): drivers of
    # `gelato cluster status` must ask for it too
    record(ready=True, gcs_address=cluster.gcs_address or args.address, auth_mode=os.environ.get("RAY_AUTH_MODE"),
           name=spec.name, host=spec.host, port=spec.port, metrics_port=spec.metrics_port, replicas=spec.replicas,
           ingress=spec.ingress, ports=spec.fixed_ports(), private_dir=cluster.private_dir)
    print(f"gelato cluster {spec.name} up: gRPC ingress on {spec.host}:{spec.port}, metrics on {spec.metrics_port}",
          flush=True)
    stop.wait()
    cluster.stop()
    print("gelato cluster down", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
