"""Cluster benchmark: per-round overhead through Ray Serve's gRPC ingress against a direct edge, and rounds/s
of 8 devices on 1 and 2 replicas (synthetic drafts; the same random Llama and devices as bench_edge.py).

    python benchmarks/bench_cluster.py --json --out docs/results/bench_cluster.json
    python benchmarks/bench_cluster.py --mode direct-ingress --replicas 1 --json
    python benchmarks/bench_cluster.py --mode haproxy --json

Each configuration is measured in the same way: ``measure_overhead`` (one device, 200 rounds: device round
time minus the edge's model time) and ``run_devices`` (8 devices x 60 rounds, common start to last verdict).
Every run keeps a direct edge up (same model and devices) beside the cluster; the ingress's extra cost per
round is the median of paired differences over alternating blocks (direct, ingress, direct, ...), so the
shared machine's load hits both sides alike. ``--mode direct-ingress``: Serve starts no proxy; each replica serves gRPC on its
own port (40000 upwards), which the devices use directly (one replica). ``--mode haproxy``: Serve's HAProxy
ingress on ``--port`` forwards each stream to a replica's own gRPC server. CPU seconds of the edge, the
replicas, Serve's proxy and HAProxy over the 8-device run give rounds per CPU second of each part.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import bench_edge  # noqa: E402
from bench_edge import EdgeProcess, build_models, measure_overhead, run_devices  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _edge_answers(port: int) -> bool:
    from gelato.device.edge_client import EdgeClient
    client = EdgeClient(f"127.0.0.1:{port}")
    try:
        return client.health(timeout=2.0).status == "SERVING"
    except Exception:  # noqa: BLE001
        return False
    finally:
        client.close()


def _pids(word: str) -> list[int]:
    """Processes whose command line contains ``word`` (Ray names its workers ``ray::ProxyActor`` etc.)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if word in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _cpu(pids: list[int]) -> float:
    return sum(bench_edge.process_cpu_s(p) or 0.0 for p in pids)


def measure(port: int, vocab: int, args, label: str, cpu_of: dict[str, list[int]] | None = None) -> dict:
    bench_edge._one_device(f"127.0.0.1:{port}", vocab, 5, args.k)  # warm-up
    overhead, split = measure_overhead(port, vocab, args.single_rounds, args.k)
    print(f"{label}: overhead {overhead:.3f} ms/round ({', '.join(f'{k} {v:.3f}' for k, v in split.items())})",
          file=sys.stderr)
    cpu0 = {name: _cpu(pids) for name, pids in (cpu_of or {}).items()}
    loaded = run_devices(port, args.devices, args.rounds, args.k, vocab)
    cpu = {name: _cpu(pids) - cpu0[name] for name, pids in (cpu_of or {}).items()}
    loaded["cpu_s"] = cpu
    loaded["rounds_per_cpu_s"] = {name: loaded["rounds"] / v for name, v in cpu.items() if v > 0}
    print(f"{label}: {args.devices} devices {loaded['rounds_per_s']:.0f} rounds/s (batch {loaded['batch_mean']:.2f}, "
          f"forward {loaded['forward_ms_mean']:.2f} ms, p50 round {loaded['round_ms_p50']:.2f} ms; rounds per CPU s "
          f"{ {k: round(v) for k, v in loaded['rounds_per_cpu_s'].items()} })", file=sys.stderr)
    return {"overhead_ms_per_round": overhead, "overhead_split_ms": split, "devices": loaded}


def paired_overhead(direct_port: int, ingress_port: int, vocab: int, args) -> dict:
    """Overhead per round through the ingress minus through the direct edge, measured in alternating blocks
    (``--blocks`` x ``--block-rounds`` rounds each way) so that the shared machine's load hits both alike:
    the median of the blocks' differences, and each side's median block."""
    direct, ingress = [], []
    for _ in range(args.blocks):
        for port, out in ((direct_port, direct), (ingress_port, ingress)):
            stats = bench_edge._one_device(f"127.0.0.1:{port}", vocab, args.block_rounds, args.k)
            ts = stats.timings[2:]
            out.append(statistics.fmean(t.total_ms - t.forward_ms for t in ts))
    diffs = [i - d for d, i in zip(direct, ingress)]
    return {"extra_ms_per_round_median": statistics.median(diffs), "extra_ms_per_round_blocks": diffs,
            "direct_ms_per_round_median": statistics.median(direct),
            "ingress_ms_per_round_median": statistics.median(ingress)}


def cluster_run(target_dir: str, vocab: int, replicas: int, args, direct_port: int) -> dict:
    from gelato.cluster.app import ClusterSpec
    from gelato.cluster.control import LocalCluster
    from gelato.wire.fingerprint import synthetic_fingerprint

    ingress = {"proxy": "proxy", "haproxy": "haproxy", "direct-ingress": "direct"}[args.mode]
    spec = ClusterSpec(target_dir=target_dir, replicas=replicas, port=_free_port(), metrics_port=_free_port(),
                       ingress=ingress, max_sessions=32,
                       edge={"fingerprint": synthetic_fingerprint(vocab), "vocab_size": vocab,
                             "max_batch": args.max_batch, "batch_window_ms": args.window_ms})
    t0 = time.perf_counter()
    label = f"{args.mode}, {replicas} replica(s)"
    with LocalCluster(spec, num_cpus=2) as cluster:
        port = cluster.spec.port
        if args.mode == "direct-ingress":  # no proxy: the replica's own gRPC server
            port = next(p for p in range(40000, 40064) if _edge_answers(p))
        started = time.perf_counter() - t0
        bench_edge._one_device(f"127.0.0.1:{port}", vocab, 5, args.k)  # warm-up
        paired = paired_overhead(direct_port, port, vocab, args)
        print(f"{label}: ingress extra {paired['extra_ms_per_round_median']:.3f} ms/round (median of {args.blocks} "
              f"paired blocks; direct {paired['direct_ms_per_round_median']:.3f}, ingress "
              f"{paired['ingress_ms_per_round_median']:.3f})", file=sys.stderr)
        cpu_of = {"replicas": _pids("ray::ServeReplica:gelato:edge"), "proxy": _pids("ProxyActor"),
                  "haproxy": _pids("haproxy")}
        result = measure(port, vocab, args, label, cpu_of)
    result.update(paired=paired, startup_s=started)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--single-rounds", type=int, default=200)
    ap.add_argument("--blocks", type=int, default=10, help="paired overhead blocks (direct, ingress, direct, ...)")
    ap.add_argument("--block-rounds", type=int, default=40)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--window-ms", type=float, default=8.0)
    ap.add_argument("--replicas", default="1,2")
    ap.add_argument("--mode", choices=["proxy", "direct-ingress", "haproxy"], default="haproxy",
                    help="haproxy (gelato cluster's default) or proxy: Serve's gRPC proxy actor; direct-ingress: the replica's own "
                         "gRPC port, no proxy (one replica); haproxy: Serve's HAProxy ingress to direct-ingress replicas")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    args.target_dir = args.draft_dir = None
    args.edge_threads = 1
    target, _, vocab = build_models(args)
    report: dict = {"model": f"random Llama vocab {args.vocab}, hidden {args.hidden}, {args.layers} layers",
                    "k": args.k, "cores": os.cpu_count(), "mode": args.mode}
    with tempfile.TemporaryDirectory() as tmp:
        target.save_pretrained(tmp)
        args.target_dir = tmp  # the direct edge: same model, same devices; kept up for the paired blocks
        with EdgeProcess(args, max_batch=args.max_batch, batch_window_ms=args.window_ms) as edge:
            report["direct_edge"] = measure(edge.port, vocab, args, "direct edge", {"edge": [edge.proc.pid]})
            args.target_dir = None
            for n in [int(x) for x in args.replicas.split(",")]:
                report[f"cluster_{n}"] = cluster_run(tmp, vocab, n, args, edge.port)
    report["ingress_extra_ms_per_round"] = {k: v["paired"]["extra_ms_per_round_median"] for k, v in report.items()
                                            if k.startswith("cluster_")}
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text if args.json else json.dumps(report.get("ingress_extra_ms_per_round", {})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
