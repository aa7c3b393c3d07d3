"""Edge benchmark: rounds/s and tokens/s for 1, 2, 4, 8 concurrent devices, batched vs unbatched, and the
protocol + controller overhead per round on loopback.

The edge runs in its own process (as in a deployment); devices are threads of this process sending
synthetic drafts (random tokens: no device compute, so the edge is the bottleneck being measured).
The overhead section runs one device with a real draft model and compares the remote verifier with
the in-process one on identical rounds.

    python benchmarks/bench_edge.py                       # random Llama (vocab 512, h128, 4 layers)
    python benchmarks/bench_edge.py --target-dir models/code/target --draft-dir models/code/draft
    python benchmarks/bench_edge.py --devices 1,2,4,8 --rounds 40 --json bench_edge.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import statistics
import sys
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


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

    from gelato.transport.fingerprint import synthetic_fingerprint
    from gelato.transport.server import EdgeConfig, EdgeServer
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

class RandomDraftProposer:
    """Drafts ``budget`` random tokens (no compute): isolates the edge and the protocol."""

    def __init__(self, vocab: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.vocab = vocab

    def propose(self, committed, budget, keep_drafting):
        from gelato.decoding.types import Draft
        tokens = [self.rng.randrange(self.vocab) for _ in range(budget)]
        n = len(tokens)
        return Draft(tokens=tokens, q=None, entropies=[0.1] * n, token_probs=[0.9] * n, max_probs=[0.9] * n,
                     budget=budget, n_computed=n, start=len(committed))

    def rollback(self, committed_len: int) -> None:
        pass


def run_devices(port: int, n_devices: int, rounds: int, k: int, vocab: int) -> dict:
    from gelato.policies import StaticPolicy
    from gelato.decoding.engine import speculative_generate
    from gelato.decoding.sampling import SamplingParams
    from gelato.transport.client import EdgeClient, RemoteVerifier
    from gelato.transport.fingerprint import synthetic_fingerprint

    fp = synthetic_fingerprint(vocab)
    results, errors = [None] * n_devices, []
    barrier = threading.Barrier(n_devices + 1)

    def device(i):
        try:
            client = EdgeClient(f"127.0.0.1:{port}")
            verifier = RemoteVerifier(client, SamplingParams(), fingerprint=fp, rpc_timeout=60)
            rng = random.Random(i)
            prompt = [rng.randrange(vocab) for _ in range(32)]
            verifier.open(prompt)
            barrier.wait()
            res = speculative_generate(prompt, RandomDraftProposer(vocab, i), verifier,
                                       StaticPolicy(k), max_new_tokens=rounds)  # ~1 token per round
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
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    total_rounds = sum(r.metrics.rounds for r, _ in results)
    tokens = sum(r.metrics.generated_tokens for r, _ in results)
    timings = [t for _, s in results for t in s.timings]
    return {"devices": n_devices, "rounds": total_rounds, "tokens": tokens, "wall_s": wall,
            "rounds_per_s": total_rounds / wall, "tokens_per_s": tokens / wall,
            "round_ms_p50": statistics.median(t.rpc_ms for t in timings),
            "forward_ms_mean": statistics.fmean(t.forward_ms for t in timings),
            "batch_mean": statistics.fmean(t.batch for t in timings)}


# --------------------------------------------------------------------------- overhead on loopback

def measure_overhead(args, port: int) -> dict:
    """Same rounds locally and remotely (greedy, identical drafts): remote verify - local verify per round."""
    import torch

    from gelato.models.cached import CachedCausalLM
    from gelato.policies import StaticPolicy
    from gelato.policies.gelato_paper import GelatoPaperPolicy
    from gelato.policies.predictor import LinearRoundPredictor
    from gelato.decoding.engine import speculative_generate
    from gelato.decoding.proposer import DraftModelProposer
    from gelato.decoding.sampling import SamplingParams
    from gelato.decoding.verifier import TargetModelVerifier
    from gelato.transport.client import RemoteVerifier
    from gelato.transport.fingerprint import synthetic_fingerprint

    torch.set_num_threads(args.edge_threads)
    target, draft, vocab = build_models(args)
    params = SamplingParams()
    prompt = [random.Random(5).randrange(vocab) for _ in range(32)]
    n = args.overhead_tokens
    out = {}
    for name, make in (("static-k4", lambda: StaticPolicy(4)),
                       ("gelato-paper", lambda: GelatoPaperPolicy(LinearRoundPredictor()))):
        local = speculative_generate(prompt, DraftModelProposer(CachedCausalLM(draft, vocab), params),
                                     TargetModelVerifier(CachedCausalLM(target, vocab), params), make(), n)
        verifier = RemoteVerifier(f"127.0.0.1:{port}", params, fingerprint=synthetic_fingerprint(vocab),
                                  rpc_timeout=60)
        remote = speculative_generate(prompt, DraftModelProposer(CachedCausalLM(draft, vocab), params), verifier,
                                      make(), n)
        verifier.close()
        assert remote.token_ids == local.token_ids, "remote and local outputs differ"
        lm, rm = local.metrics, remote.metrics
        s = verifier.stats.summary()
        out[name] = {
            "rounds": rm.rounds,
            "local_verify_ms": lm.verify_seconds / lm.rounds * 1e3,
            "remote_verify_ms": rm.verify_seconds / rm.rounds * 1e3,
            "remote_minus_local_ms": (rm.verify_seconds / rm.rounds - lm.verify_seconds / lm.rounds) * 1e3,
            "protocol_ms": s["network_ms_mean"],
            "edge_handler_ms": s["server_ms_mean"],
            "edge_forward_ms": s["forward_ms_mean"],
            "controller_ms": rm.other_seconds / rm.rounds * 1e3,
            "draft_ms": rm.draft_seconds / rm.rounds * 1e3,
            "identical_output": remote.token_ids == local.token_ids,
        }
    from gelato.transport.client import EdgeClient
    with EdgeClient(f"127.0.0.1:{port}") as client:
        client.health()
        rtts = []
        for _ in range(200):
            t = time.perf_counter()
            client.health()
            rtts.append((time.perf_counter() - t) * 1e3)
    out["health_rtt_ms_p50"] = statistics.median(rtts)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target-dir")
    ap.add_argument("--draft-dir")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--devices", default="1,2,4,8")
    ap.add_argument("--rounds", type=int, default=30, help="rounds per device")
    ap.add_argument("--k", type=int, default=4, help="draft tokens per round")
    ap.add_argument("--window-ms", type=float, default=8.0)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--edge-threads", type=int, default=1)
    ap.add_argument("--overhead-tokens", type=int, default=48)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    console = Console(width=150)
    devices = [int(x) for x in args.devices.split(",")]
    _, _, vocab = build_models(args)
    report = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "throughput": [], "overhead": {}}

    table = Table(title=f"edge throughput, {args.k} random draft tokens per round "
                        f"(window {args.window_ms} ms, max batch {args.max_batch})")
    for col in ("mode", "devices", "rounds/s", "tokens/s", "round p50 ms", "forward ms", "mean batch"):
        table.add_column(col, justify="right")
    for mode, cfg in (("unbatched", dict(max_batch=1)),
                      ("batched", dict(max_batch=args.max_batch, batch_window_ms=args.window_ms))):
        with EdgeProcess(args, **cfg) as edge:
            run_devices(edge.port, 1, 5, args.k, vocab)  # warm-up
            for n in devices:
                r = run_devices(edge.port, n, args.rounds, args.k, vocab)
                r["mode"] = mode
                report["throughput"].append(r)
                table.add_row(mode, str(n), f"{r['rounds_per_s']:.1f}", f"{r['tokens_per_s']:.1f}",
                              f"{r['round_ms_p50']:.2f}", f"{r['forward_ms_mean']:.2f}", f"{r['batch_mean']:.2f}")
    console.print(table)

    with EdgeProcess(args, max_batch=1) as edge:
        report["overhead"] = measure_overhead(args, edge.port)
    ot = Table(title="per-round times on loopback, 1 device, real draft, identical rounds (ms); protocol = "
                     "device rpc time - edge handler time")
    for col in ("policy", "rounds", "local verify", "remote verify", "remote - local", "protocol",
                "edge handler", "edge forward", "controller", "draft"):
        ot.add_column(col, justify="right")
    for name, o in report["overhead"].items():
        if not isinstance(o, dict):
            continue
        ot.add_row(name, str(o["rounds"]), f"{o['local_verify_ms']:.2f}", f"{o['remote_verify_ms']:.2f}",
                   f"{o['remote_minus_local_ms']:.2f}", f"{o['protocol_ms']:.2f}", f"{o['edge_handler_ms']:.2f}",
                   f"{o['edge_forward_ms']:.2f}", f"{o['controller_ms']:.3f}", f"{o['draft_ms']:.2f}")
    console.print(ot)
    console.print(f"bare gRPC round trip (Health) on loopback: p50 {report['overhead']['health_rtt_ms_p50']:.3f} ms")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
