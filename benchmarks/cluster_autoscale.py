"""Autoscaling check (not a CI test: ~2 minutes): a cluster of 1 replica, autoscaling 1..2 on 1 open session per
replica, 4 devices generating back to back for 90 s; prints the replicas and their sessions every 8 s and
whether every greedy output equals target-only.

    PYTHONPATH=src python benchmarks/cluster_autoscale.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import torch; torch.set_num_threads(1)
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


def fp_(): s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
d, t = fast_pair_dirs(); tok = load_tokenizer(t); fp = tokenizer_fingerprint(tok); draft = load_causal_lm(d)
target = load_causal_lm(t)
spec = ClusterSpec(target_dir=str(t), replicas=1, min_replicas=1, max_replicas=2, target_sessions=1, max_sessions=4,
                   port=fp_(), metrics_port=fp_())
t0=time.time()
with LocalCluster(spec, num_cpus=2) as c:
    print("up", round(time.time()-t0), "s; replicas", len(replica_statuses()), flush=True)
    stop = time.time() + 90; bad = []; gens=[0]*4
    def dev(i):
        p = tok.encode(f"Question: A box holds 12 eggs. How many eggs are in {i+2} boxes?\nAnswer:")
        ref = target_only_generate(CachedCausalLM(target), p, SamplingParams(), 120).token_ids
        while time.time() < stop:
            v = RemoteVerifier(f"127.0.0.1:{spec.port}", SamplingParams(), fingerprint=fp, rpc_timeout=30)
            r = generate(p, DraftModelProposer(CachedCausalLM(draft), SamplingParams()), v, StaticPolicy(4), 120)
            v.close(); gens[i]+=1
            if r.token_ids != ref: bad.append(i)
    ts=[threading.Thread(target=dev,args=(i,)) for i in range(4)]; [x.start() for x in ts]
    while any(x.is_alive() for x in ts):
        st = replica_statuses(); print(round(time.time()-t0), "s: replicas", [(r["replica"], r["sessions"]) for r in st], flush=True); time.sleep(8)
    print("generations", gens, "mismatches", bad, flush=True)
    time.sleep(1)
    print("final replicas", len(replica_statuses()))
