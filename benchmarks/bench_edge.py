"""Edge benchmark: protocol overhead per round, wire bytes over payload bytes, rounds/s at 1 / 8 / 32
devices batched and unbatched, and fairness under clients looping long opens.

The edge runs in its own process (as in a deployment); devices are threads of this process sending
synthetic drafts (random tokens: no device compute, so the edge is the bottleneck being measured).

    python benchmarks/bench_edge.py                 # tables; random Llama (vocab 512, h128, 4 layers)
    python benchmarks/bench_edge.py --json          # one JSON object on stdout
    python benchmarks/bench_edge.py --target-dir models/code/target --out bench_edge.json

JSON fields: ``overhead_ms_per_round`` (device-side round time minus the edge's model time, loopback, one
device) and ``overhead_split_ms`` (where it goes), ``wire_over_payload_up`` / ``_down`` (bytes at the link proxy over protobuf
payload bytes, greedy ids-only drafts) and ``wire_bytes_per_round`` (payload and bytes per HTTP/2 frame
type, per round and direction), ``rounds_per_s`` ({"batched"|"unbatched": {devices: r/s}}, from the common
start to the last verdict) and ``rounds_per_edge_cpu_s`` (the same rounds over the edge process's CPU
seconds: its capacity, whatever share of the 2 cores the device threads take), ``context_scaling`` (8
devices at each ``--contexts`` prompt length: rounds/s, forward time, and the KV pool's batching cost
outside the model), and ``fairness_p99_ratio`` (a well-behaved client's p99 round latency while four
clients loop 2,000-token opens, over its p99 alone).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


log = print  # main() sends progress to stderr under --json

# --------------------------------------------------------------------------- models

def build_models(args):
    """(target, draft, vocab): from directories, or seeded random tiny Llamas."""
    from gelato.models.tiny import noisy_copy, tiny_llama
    if args.target_dir:
        from gelato.models.loading import load_causal_lm
        target = load_causal_lm(args.target_dir)
        draft = load_causal_lm(args.draft_dir) if args.draft_dir else noisy_copy(target, 0.15, seed=1)
    else:
        target = tiny_llama(vocab_size=args.vocab, hidden=args.hidden, layers=args.layers,
                            heads=max(2, args.hidden // 32), seed=0, max_positions=4096)
        draft = noisy_copy(target, noise=0.15, seed=1)
    vocab = min(int(target.config.vocab_size), int(draft.config.vocab_size))
    return target, draft, vocab


def _edge_process(args, cfg: dict, ready, stop) -> None:
    import asyncio

    import torch

    from gelato.edge.server import EdgeConfig, EdgeServer
    from gelato.wire.fingerprint import synthetic_fingerprint
    torch.set_num_threads(args.edge_threads)
    target, _, vocab = build_models(args)
    server = EdgeServer(target, fingerprint=synthetic_fingerprint(vocab), vocab_size=vocab,
                        config=EdgeConfig(max_sessions=64, grace_s=0.1, **cfg))

    async def main():
        port = await server.start("127.0.0.1", 0)
        ready.put(port)
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await server.stop()
    asyncio.run(main())


class EdgeProcess:
    def __init__(self, args, **cfg):
        ctx = mp.get_context("spawn")
        self.ready, self.stop_event = ctx.Queue(), ctx.Event()
        self.proc = ctx.Process(target=_edge_process, args=(args, cfg, self.ready, self.stop_event), daemon=True)

    def __enter__(self):
        self.proc.start()
        self.port = self.ready.get(timeout=180)
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()


# --------------------------------------------------------------------------- synthetic devices

def random_draft_proposer(vocab: int, seed: int):
    """A :class:`~gelato.decoding.proposer.Proposer` drafting random tokens (no compute): isolates the edge and
    the protocol."""
    from gelato.decoding.proposer import DraftedToken, Proposer

    class RandomDraftProposer(Proposer):
        def __init__(self) -> None:
            self.rng = random.Random(seed)

        def draft_next(self, committed, sent) -> DraftedToken:
            return DraftedToken(self.rng.randrange(vocab), entropy=0.1, token_prob=0.9, max_prob=0.9)

    return RandomDraftProposer()


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return None


def run_devices(port: int, n_devices: int, rounds: int, k: int, vocab: int, prompt_len: int = 32,
                edge_pid: int | None = None) -> dict:
    """``n_devices`` threads, each opening a ``prompt_len``-token prompt, then generating ``rounds`` synthetic
    rounds; wall time runs from the common start to the last device's last verdict (opens and closes excluded).
    With ``edge_pid``, also rounds per second of the edge process's CPU time (``rounds_per_edge_cpu_s``): the
    edge's capacity, whatever share of the cores the devices (threads of this process) take."""
    from gelato.decoding.sampling import SamplingParams
    from gelato.device.client import RemoteVerifier
    from gelato.device.edge_client import EdgeClient
    from gelato.generation import generate
    from gelato.policies import StaticPolicy
    from gelato.wire.fingerprint import synthetic_fingerprint

    fp = synthetic_fingerprint(vocab)
    results, errors, done_at = [None] * n_devices, [], [0.0] * n_devices
    barrier = threading.Barrier(n_devices + 1)

    def device(i):
        try:
            client = EdgeClient(f"127.0.0.1:{port}")
            verifier = RemoteVerifier(client, SamplingParams(), fingerprint=fp, rpc_timeout=60)
            rng = random.Random(i)
            prompt = [rng.randrange(vocab) for _ in range(prompt_len)]
            verifier.open(prompt)
            barrier.wait()
            res = generate(prompt, random_draft_proposer(vocab, i), verifier,
                                       StaticPolicy(k), max_new_tokens=rounds)  # ~1 token per round
            done_at[i] = time.perf_counter()
            results[i] = (res, verifier.stats)
            verifier.close()
            client.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=device, args=(i,)) for i in range(n_devices)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    cpu0 = process_cpu_s(edge_pid)
    for t in threads:
        t.join()
    cpu1 = process_cpu_s(edge_pid)
    if errors:
        raise errors[0]
    wall = max(done_at) - t0
    total_rounds = sum(r.metrics.rounds for r, _ in results)
    tokens = sum(r.metrics.generated_tokens for r, _ in results)
    timings = [t for _, s in results for t in s.timings]
    edge_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    return {"devices": n_devices, "rounds": total_rounds, "tokens": tokens, "wall_s": wall,
            "rounds_per_s": total_rounds / wall, "tokens_per_s": tokens / wall, "edge_cpu_s": edge_cpu,
            "rounds_per_edge_cpu_s": total_rounds / edge_cpu if edge_cpu else None,
            "round_ms_p50": statistics.median(t.rpc_ms for t in timings),
            "forward_ms_mean": statistics.fmean(t.forward_ms for t in timings),
            "batch_mean": statistics.fmean(t.batch for t in timings)}


# --------------------------------------------------------------------------- overhead, wire bytes, fairness

def _one_device(address: str, vocab: int, rounds: int, k: int, seed: int = 0, prompt_len: int = 32, on_round=None):
    """The verifier stats of one device generating ``rounds`` synthetic rounds."""
    from gelato.decoding.sampling import SamplingParams
    from gelato.device.client import RemoteVerifier
    from gelato.generation import generate
    from gelato.policies import StaticPolicy
    from gelato.wire.fingerprint import synthetic_fingerprint

    rng = random.Random(seed)
    prompt = [rng.randrange(vocab) for _ in range(prompt_len)]
    verifier = RemoteVerifier(address, SamplingParams(), fingerprint=synthetic_fingerprint(vocab), rpc_timeout=60)
    try:
        verifier.open(prompt)
        generate(prompt, random_draft_proposer(vocab, seed), verifier, StaticPolicy(k),
                             max_new_tokens=rounds, on_round=on_round)
    finally:
        verifier.close()
    return verifier.stats


def measure_overhead(port: int, vocab: int, rounds: int, k: int) -> tuple[float, dict]:
    """Mean over rounds of (device-side round time - the edge's model time), loopback, one device; and where
    it goes: on the device outside the RPC, in gRPC both ways (serialisation, HTTP/2, the edge's stream
    handling outside its handler), and in the edge's handler outside the model (queueing, the hand-off to
    the model thread, verification, encoding)."""
    stats = _one_device(f"127.0.0.1:{port}", vocab, rounds, k)
    ts = stats.timings[3:]
    mean = lambda f: statistics.fmean(f(t) for t in ts)  # noqa: E731
    split = {"device_outside_rpc": mean(lambda t: t.total_ms - t.rpc_ms),
             "grpc_both_ways": mean(lambda t: t.rpc_ms - t.server_ms),
             "edge_handler_outside_model": mean(lambda t: t.server_ms - t.forward_ms)}
    return mean(lambda t: t.total_ms - t.forward_ms), split


def measure_wire(port: int, vocab: int, rounds: int, k: int) -> tuple[float, float, dict]:
    """Bytes through the link proxy over protobuf payload bytes (StreamUp/StreamDown), greedy ids-only; and
    where the wire bytes go: per round and direction, payload and bytes per HTTP/2 frame type."""
    from gelato.link.proxy import LinkConfig, LinkThread

    cfg = LinkConfig(bandwidth_mhz=None, uplink_bps=1e9, downlink_bps=1e9)
    skip = 5  # steady state: connection setup, stream headers and the open are not per-round costs
    snaps = {}
    with LinkThread(f"127.0.0.1:{port}", cfg) as link:
        def on_round(record):  # a random draft is now and then accepted: fewer rounds than ``rounds`` may run
            if record.index >= skip - 1:
                snaps[record.index] = link.stats()
        stats = _one_device(link.address, vocab, rounds, k, on_round=on_round)
    if len(snaps) < 2:
        raise ValueError(f"--single-rounds {rounds} leaves no steady-state round after the first {skip}")
    first, last = snaps[skip - 1], snaps[max(snaps)]
    timed = stats.timings[skip:max(snaps) + 1]
    payload = {"up": sum(t.up_bytes for t in timed), "down": sum(t.down_bytes for t in timed)}
    ratio = {d: (last[d]["bytes"] - first[d]["bytes"]) / max(1, payload[d]) for d in payload}
    frames = {d: {"payload": payload[d] / len(timed),
                  **{name: (last[d]["frame_bytes"].get(name, 0) - first[d]["frame_bytes"].get(name, 0)) / len(timed)
                     for name in last[d]["frame_bytes"]}} for d in payload}
    return ratio["up"], ratio["down"], frames


def _looping_opener(port: int, vocab: int, prompt_len: int, stop: threading.Event, seed: int) -> None:
    from gelato.device.edge_client import EdgeClient
    from gelato.wire.fingerprint import synthetic_fingerprint
    from gelato.wire.proto import gelato_pb2 as pb

    rng = random.Random(seed)
    with EdgeClient(f"127.0.0.1:{port}") as client:
        while not stop.is_set():
            stream = client.open_stream()
            try:
                stream.exchange(pb.StreamUp(open=pb.OpenRequest(
                    prompt_ids=[rng.randrange(vocab) for _ in range(prompt_len)],
                    tokenizer_fingerprint=synthetic_fingerprint(vocab))), 120)
            except Exception:  # noqa: BLE001 - refused or busy: loop on, as an attacker would
                time.sleep(0.01)
            finally:
                stream.cancel()


def measure_fairness(port: int, vocab: int, rounds: int, k: int, attackers: int = 4, prompt_len: int = 2000):
    """(p99 alone, p99 under attack) of a well-behaved client's round latency (ms)."""
    def p99(stats):
        xs = sorted(t.total_ms for t in stats.timings[3:])
        return xs[min(len(xs) - 1, int(0.99 * len(xs)))]

    alone = p99(_one_device(f"127.0.0.1:{port}", vocab, rounds, k, seed=11))
    stop = threading.Event()
    threads = [threading.Thread(target=_looping_opener, args=(port, vocab, prompt_len, stop, i), daemon=True)
               for i in range(attackers)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    try:
        attacked = p99(_one_device(f"127.0.0.1:{port}", vocab, rounds, k, seed=12))
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    return alone, attacked


def measure_context(port: int, vocab: int, args, edge_pid: int | None = None) -> dict:
    """8 devices at each prompt length of ``--contexts``: rounds/s, the edge's mean forward time per round and,
    from the KV pool's counters, its batching cost outside the model's forward (ms per forward; None when the
    edge does not report it)."""
    from gelato.device.edge_client import EdgeClient

    out = {}
    with EdgeClient(f"127.0.0.1:{port}") as client:
        for ctx in (int(c) for c in args.contexts.split(",")):
            before = client.metrics()
            r = run_devices(port, 8, args.rounds, args.k, vocab, prompt_len=ctx, edge_pid=edge_pid)
            after = client.metrics()
            forwards = after.get("kv_forwards", 0) - before.get("kv_forwards", 0)
            outside = None
            if "kv_feed_ms" in after and forwards:
                outside = ((after["kv_feed_ms"] - before["kv_feed_ms"]) - (after["kv_model_ms"] - before["kv_model_ms"])) / forwards
            out[str(ctx)] = {"rounds_per_s": r["rounds_per_s"], "rounds_per_edge_cpu_s": r["rounds_per_edge_cpu_s"],
                             "forward_ms_mean": r["forward_ms_mean"],
                             "batch_mean": r["batch_mean"], "outside_model_ms_per_forward": outside}
            log(f"  8 devices at {ctx:5d} context tokens: {r['rounds_per_s']:7.1f} rounds/s, forward "
                f"{r['forward_ms_mean']:.2f} ms (batch {r['batch_mean']:.2f}), outside the model "
                + ("n/a" if outside is None else f"{outside:.3f} ms"))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target-dir")
    ap.add_argument("--draft-dir")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--devices", default="1,8,32")
    ap.add_argument("--rounds", type=int, default=60, help="rounds per device (32 devices: half)")
    ap.add_argument("--contexts", default="32,1024", help="prompt lengths of the context-scaling runs (8 devices)")
    ap.add_argument("--k", type=int, default=4, help="draft tokens per round")
    ap.add_argument("--window-ms", type=float, default=8.0)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--edge-threads", type=int, default=1)
    ap.add_argument("--single-rounds", type=int, default=200,
                    help="rounds of the overhead/wire/fairness device (p99 of 60 rounds would be their maximum)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout (no tables)")
    ap.add_argument("--out", type=Path, help="also write the JSON object here")
    args = ap.parse_args(argv)
    global log
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    devices = [int(x) for x in args.devices.split(",")]
    _, _, vocab = build_models(args)
    report: dict = {"rounds_per_s": {"unbatched": {}, "batched": {}}, "throughput": []}

    with EdgeProcess(args, max_batch=1) as edge:
        _one_device(f"127.0.0.1:{edge.port}", vocab, 5, args.k)  # warm-up
        report["overhead_ms_per_round"], report["overhead_split_ms"] = measure_overhead(
            edge.port, vocab, args.single_rounds, args.k)
        up, down, frames = measure_wire(edge.port, vocab, args.single_rounds, args.k)
        report["wire_over_payload_up"], report["wire_over_payload_down"] = up, down
        report["wire_bytes_per_round"] = frames
        log(f"overhead {report['overhead_ms_per_round']:.3f} ms/round ("
            + ", ".join(f"{name} {v:.3f}" for name, v in report["overhead_split_ms"].items())
            + f"); wire/payload up {up:.2f}, down {down:.2f}")
        for d, parts in frames.items():
            log(f"  {d:4s} bytes per round: " + ", ".join(f"{name} {v:.1f}" for name, v in parts.items() if v))
    for mode, cfg in (("unbatched", dict(max_batch=1)),
                      ("batched", dict(max_batch=args.max_batch, batch_window_ms=args.window_ms))):
        with EdgeProcess(args, **cfg) as edge:
            run_devices(edge.port, 1, 5, args.k, vocab)  # warm-up
            for n in devices:
                r = run_devices(edge.port, n, args.rounds if n < 32 else max(5, args.rounds // 2), args.k, vocab,
                                edge_pid=edge.proc.pid)
                r["mode"] = mode
                report["throughput"].append(r)
                report["rounds_per_s"][mode][str(n)] = r["rounds_per_s"]
                report.setdefault("rounds_per_edge_cpu_s", {"unbatched": {}, "batched": {}})[mode][str(n)] = \
                    r["rounds_per_edge_cpu_s"]
                cpu = r["rounds_per_edge_cpu_s"]
                log(f"{mode:9s} {n:3d} devices: {r['rounds_per_s']:8.1f} rounds/s, round p50 "
                    f"{r['round_ms_p50']:.2f} ms, mean batch {r['batch_mean']:.2f}, "
                    + ("n/a" if cpu is None else f"{cpu:.0f}") + " rounds per edge CPU second")
        with EdgeProcess(args, **cfg) as edge:
            report.setdefault("context_scaling", {})[mode] = measure_context(edge.port, vocab, args, edge.proc.pid)
        if mode == "batched":
            with EdgeProcess(args, **cfg) as edge:
                alone, attacked = measure_fairness(edge.port, vocab, args.single_rounds, args.k)
            report["fairness_p99_ms"] = {"alone": alone, "attacked": attacked}
            report["fairness_p99_ratio"] = attacked / alone
            log(f"fairness: p99 alone {alone:.2f} ms, with 4 clients looping 2,000-token opens {attacked:.2f} ms "
                f"(ratio {attacked / alone:.2f})")
    b, u = report["rounds_per_s"]["batched"], report["rounds_per_s"]["unbatched"]
    if "8" in b and "8" in u:
        log(f"8 batched / 8 unbatched = {b['8'] / u['8']:.2f}" + (f"; 32 / 8 batched = {b['32'] / b['8']:.2f}"
                                                                   if "32" in b else ""))
        cb, cu = report["rounds_per_edge_cpu_s"]["batched"], report["rounds_per_edge_cpu_s"]["unbatched"]
        if cb.get("8") and cu.get("8"):
            log(f"per edge CPU second: 8 batched / 8 unbatched = {cb['8'] / cu['8']:.2f}"
                + (f"; 32 / 8 batched = {cb['32'] / cb['8']:.2f}" if cb.get("32") else ""))
    report["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    text = json.dumps(report)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    if args.json:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
