"""A real 2-replica Ray Serve cluster on this machine (fast pair): failover keeps every output, limits, metrics.

One module-scoped cluster (Ray started by this process, 2 CPUs, 2 replicas); shut down at the end.
Skipped only when Ray Serve is not installed (the ``cluster`` extra, which ``.[test]`` includes).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request

import pytest

from gelato.cluster.app import INGRESS_MODES  # noqa: E402

# CI runs the default ingress (Serve's HAProxy); GELATO_TEST_INGRESS=proxy runs the same tests through Serve's
# gRPC proxy actor.
INGRESS = os.environ.get("GELATO_TEST_INGRESS", "haproxy")
os.environ.update(INGRESS_MODES[INGRESS])  # before Ray Serve is imported: it reads them once
pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install -e '.[cluster]'")

import grpc  # noqa: E402
import torch  # noqa: E402

from gelato.cluster.app import ClusterSpec, replica_statuses  # noqa: E402
from gelato.cluster.control import LocalCluster, port_in_use  # noqa: E402
from gelato.decoding.sampling import SamplingParams  # noqa: E402
from gelato.device.client import RemoteVerifier
from gelato.device.edge_client import EdgeClient
from gelato.generation import DraftModelProposer, generate
from gelato.generation.loop import target_only_generate
from gelato.models.cached import CachedCausalLM  # noqa: E402
from gelato.models.loading import load_causal_lm, load_tokenizer  # noqa: E402
from gelato.policies import StaticPolicy  # noqa: E402
from gelato.wire.errors import EdgeRejectedError
from gelato.wire.fingerprint import tokenizer_fingerprint

pytestmark = pytest.mark.slow
GREEDY = SamplingParams()
QUESTIONS = ["Tom has 3 apples and buys 5 more. How many apples does he have?",
             "A box holds 12 eggs. How many eggs are in 4 boxes?",
             "Sara reads 20 pages a day. How many pages does she read in 6 days?",
             "A train travels 60 km in one hour. How far does it go in 3 hours?"]
NEW_TOKENS = 64
TOKEN = "cluster-test-token"  # bearer tokens are checked in the replicas
AUTH = (("authorization", f"Bearer {TOKEN}"),)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def models(fast_pair):
    torch.set_num_threads(1)
    draft_dir, target_dir = fast_pair
    tokenizer = load_tokenizer(target_dir)
    prompts = [tokenizer.encode(f"Question: {q}\nAnswer:") for q in QUESTIONS]
    target = load_causal_lm(target_dir)
    refs = [target_only_generate(CachedCausalLM(target), p, GREEDY, NEW_TOKENS).token_ids for p in prompts]
    return {"draft": load_causal_lm(draft_dir), "target_dir": target_dir, "prompts": prompts, "refs": refs,
            "fingerprint": tokenizer_fingerprint(tokenizer)}


@pytest.fixture(scope="module")
def cluster(models):
    spec = ClusterSpec(target_dir=str(models["target_dir"]), replicas=2, port=_free_port(),
                       metrics_port=_free_port(), max_sessions=4, health_check_period_s=1.0, ingress=INGRESS,
                       edge={"tokens": {TOKEN: "tester"}})
    with LocalCluster(spec, num_cpus=2) as running:
        yield running


def _device(cluster, models, i: int, on_round=None, **kwargs):
    kwargs.setdefault("token", TOKEN)
    verifier = RemoteVerifier(f"127.0.0.1:{cluster.spec.port}", GREEDY, fingerprint=models["fingerprint"],
                              rpc_timeout=10.0, unreachable_after=60.0, device_name=f"device-{i}", **kwargs)
    proposer = DraftModelProposer(CachedCausalLM(models["draft"]), GREEDY)
    try:
        return generate(models["prompts"][i], proposer, verifier, StaticPolicy(4), NEW_TOKENS,
                                    on_round=on_round), verifier
    finally:
        verifier.close()


def test_killing_a_replica_mid_generation_keeps_every_output(cluster, models):
    """4 devices; once every device has verified 2 rounds, SIGKILL a replica holding sessions. Every device's
    output equals target-only; the killed replica's devices resumed on the survivor; Serve restarts it."""
    n = len(QUESTIONS)
    results: list = [None] * n
    errors: list = []
    progress = [0] * n
    go_kill, killed = threading.Event(), threading.Event()

    def on_round(i):
        def hook(record):
            progress[i] += 1
            if min(progress) >= 2:
                go_kill.set()
            if progress[i] >= 2 and not killed.wait(30):  # hold every device until the kill is done
                errors.append(f"device {i}: the kill did not happen")
        return hook

    def run(i):
        try:
            results[i] = _device(cluster, models, i, on_round=on_round(i))
        except Exception as exc:  # reported below
            errors.append(f"device {i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    assert go_kill.wait(120), f"devices did not start: {errors}"
    before = replica_statuses()
    victim = max(before, key=lambda r: r["sessions"])
    assert victim["sessions"] >= 1 and len(before) == 2
    os.kill(victim["pid"], signal.SIGKILL)
    time.sleep(0.5)  # the kill lands before the devices' next rounds
    killed.set()
    for t in threads:
        t.join(180)
    assert not errors, errors
    for i, (result, verifier) in enumerate(results):
        assert result.token_ids == models["refs"][i], f"device {i} differs from target-only"
    resumed = sum(verifier.stats.reopens for _, verifier in results)
    assert resumed >= victim["sessions"]  # each of the victim's devices resumed on a new stream
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # Serve replaces the dead replica
        after = replica_statuses()
        if len(after) == 2 and victim["pid"] not in {r["pid"] for r in after} and all(r["healthy"] for r in after):
            break
        time.sleep(1.0)
    else:
        pytest.fail(f"Serve did not restart the killed replica: {after}")


def test_full_cluster_answers_resource_exhausted(cluster, models):
    """2 replicas x 4 sessions open; the 9th stream is refused with RESOURCE_EXHAUSTED (the device backs off)."""
    from gelato.wire.proto import gelato_pb2 as pb

    open_up = pb.StreamUp(open=pb.OpenRequest(prompt_ids=models["prompts"][0],
                                              tokenizer_fingerprint=models["fingerprint"], max_new_tokens=8))
    streams, clients = [], []
    try:
        # A stream routed to a full replica is refused and retried with backoff, as a device does (its
        # busy_after window is 60 s); which replica a new connection reaches is the ingress's choice, so the
        # bound is that window, not a count of refusals.
        deadline, delay = time.monotonic() + 60.0, 0.02
        while len(streams) < 8:
            clients.append(EdgeClient(f"127.0.0.1:{cluster.spec.port}", token=TOKEN))  # one connection a device
            stream = clients[-1].open_stream()
            try:
                assert stream.exchange(open_up, 30.0).WhichOneof("kind") == "opened"
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, "the cluster kept refusing opens for 60 s while it had free sessions"
                clients.pop().close()
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            streams.append(stream)
        assert sorted(r["sessions"] for r in replica_statuses()) == [4, 4]
        clients.append(EdgeClient(f"127.0.0.1:{cluster.spec.port}", token=TOKEN))
        with pytest.raises(grpc.RpcError) as info:
            clients[-1].open_stream().exchange(open_up, 30.0)
    finally:
        for s in streams:
            s.cancel()
        for c in clients:
            c.close()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_replicas_report_sessions_and_prometheus_metrics_by_replica(cluster, models):
    result, _ = _device(cluster, models, 0)
    assert result.token_ids == models["refs"][0]
    text = urllib.request.urlopen(f"http://127.0.0.1:{cluster.spec.metrics_port}/metrics", timeout=30).read().decode()
    statuses = replica_statuses()
    for r in statuses:
        assert f'gelato_edge_sessions_active{{replica="{r["replica"]}"}}' in text
    rounds = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("gelato_edge_rounds_total{")]
    assert len(rounds) == 2 and sum(rounds) >= result.metrics.rounds


def test_bad_bytes_keep_the_edges_statuses(cluster, models):
    """Raw bytes reach the replica's edge: undecodable messages get INVALID_ARGUMENT, as on a single edge."""
    channel = grpc.insecure_channel(f"127.0.0.1:{cluster.spec.port}")
    call = channel.stream_stream("/gelato.v1.Edge/Generate")
    with pytest.raises(grpc.RpcError) as info:
        list(call(iter([b"\xff\xff\xff"]), timeout=30, metadata=AUTH))
    channel.close()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed StreamUp" in info.value.details()


def test_port_in_use_is_one_line(cluster, models):
    assert port_in_use(cluster.spec.port)
    from gelato.cluster.app import ClusterError
    spec = ClusterSpec(target_dir=str(models["target_dir"]), port=cluster.spec.port, metrics_port=_free_port(),
                       ingress=INGRESS)
    with pytest.raises(ClusterError, match=f"port {cluster.spec.port} is in use"):
        LocalCluster(spec).start()


def test_rejected_refusal_reaches_the_device_with_its_status(cluster, models):
    """A fingerprint mismatch is the edge's FAILED_PRECONDITION through the ingress (resync, then refusal)."""
    with pytest.raises(EdgeRejectedError) as info:
        _device(cluster, {**models, "fingerprint": "sha256:wrong"}, 1)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "fingerprint mismatch" in info.value.details


def test_bearer_tokens_are_checked_in_the_replica(cluster, models):
    for token in (None, "not-a-token"):
        with pytest.raises(EdgeRejectedError) as info:
            _device(cluster, models, 2, token=token)
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    client = EdgeClient(f"127.0.0.1:{cluster.spec.port}", token=TOKEN)
    try:
        assert client.health().status == "SERVING"
    finally:
        client.close()
