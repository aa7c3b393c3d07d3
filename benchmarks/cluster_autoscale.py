"""Autoscaling check (not a CI test at full size: ~2 minutes): a cluster of 1 replica, autoscaling 1..2 on 1 open
session per replica, 4 devices generating back to back for 90 s; prints the replicas and their sessions every 8 s
and whether every greedy output equals target-only.

    PYTHONPATH=src python benchmarks/cluster_autoscale.py [--seconds 90] [--devices 4] [--max-new-tokens 120]

The last line on stdout is one JSON object: generations per device, the devices whose output differed from
target-only (none, when lossless), the most replicas seen and the replicas at the end.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=90.0, help="how long the devices generate")
    ap.add_argument("--devices", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=120)
    ap.add_argument("--every", type=float, default=8.0, help="seconds between replica prints")
    args = ap.parse_args(argv)

    import torch

    from gelato.cluster.app import ClusterSpec, replica_statuses
    from gelato.cluster.control import LocalCluster
    from gelato.decoding.sampling import SamplingParams
    from gelato.device.client import RemoteVerifier
    from gelato.generation import DraftModelProposer, generate
    from gelato.generation.loop import target_only_generate
    from gelato.models.cached import CachedCausalLM
    from gelato.models.loading import load_causal_lm, load_tokenizer
    from gelato.models.pairs import fast_pair_dirs
    from gelato.policies import StaticPolicy
    from gelato.wire.fingerprint import tokenizer_fingerprint

    torch.set_num_threads(1)
    d, t = fast_pair_dirs()
    tok = load_tokenizer(t)
    fp = tokenizer_fingerprint(tok)
    draft, target = load_causal_lm(d), load_causal_lm(t)
    spec = ClusterSpec(target_dir=str(t), replicas=1, min_replicas=1, max_replicas=2, target_sessions=1,
                       max_sessions=4, port=_free_port(), metrics_port=_free_port())
    t0 = time.time()
    bad: list[int] = []
    gens = [0] * args.devices
    most = 0
    with LocalCluster(spec, num_cpus=2):
        most = len(replica_statuses())
        print("up", round(time.time() - t0), "s; replicas", most, flush=True)
        stop = time.time() + args.seconds

        def device(i: int) -> None:
            p = tok.encode(f"Question: A box holds 12 eggs. How many eggs are in {i + 2} boxes?\nAnswer:")
            ref = target_only_generate(CachedCausalLM(target), p, SamplingParams(), args.max_new_tokens).token_ids
            while time.time() < stop:
                v = RemoteVerifier(f"127.0.0.1:{spec.port}", SamplingParams(), fingerprint=fp, rpc_timeout=30)
                r = generate(p, DraftModelProposer(CachedCausalLM(draft), SamplingParams()), v, StaticPolicy(4),
                             args.max_new_tokens)
                v.close()
                gens[i] += 1
                if r.token_ids != ref:
                    bad.append(i)

        threads = [threading.Thread(target=device, args=(i,)) for i in range(args.devices)]
        for x in threads:
            x.start()
        while any(x.is_alive() for x in threads):
            st = replica_statuses()
            most = max(most, len(st))
            print(round(time.time() - t0), "s: replicas", [(r["replica"], r["sessions"]) for r in st], flush=True)
            time.sleep(args.every)
        print("generations", gens, "mismatches", bad, flush=True)
        time.sleep(1)
        final = len(replica_statuses())
        print("final replicas", final, flush=True)
    print(json.dumps({"generations": gens, "mismatches": bad, "max_replicas_seen": most, "final_replicas": final}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
