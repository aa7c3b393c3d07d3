"""Load: 16 concurrent devices against one batched edge; no errors, every session closed, caches freed."""

from __future__ import annotations

import gc
import random
import threading

import pytest
from edge_helpers import reference, remote_generate, start_edge

from gelato.policies import StaticPolicy

pytestmark = pytest.mark.slow  # starts an edge server

DEVICES = 16
N = 12


def test_sixteen_concurrent_devices(pair):
    target, draft = pair
    rng = random.Random(0)
    prompts = [[rng.randrange(96) for _ in range(rng.randint(1, 10))] for _ in range(DEVICES)]
    server = start_edge(target, max_batch=8, batch_window_ms=2.0, max_sessions=DEVICES)
    outputs, errors = [None] * DEVICES, []
    peak = {"cache": 0, "active": 0}
    barrier = threading.Barrier(DEVICES)

    def device(i):
        try:
            barrier.wait(timeout=20)

            def watch(record):
                if i == 0 and record.index == 2:
                    m = server.metrics()
                    peak.update(cache=m["cache_tokens"], active=m["sessions"]["active"])
            outputs[i] = remote_generate(server.address, draft, prompts[i], N, policy=StaticPolicy(1 + i % 4),
                                         on_round=watch, rpc_timeout=20.0)[0].token_ids
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=device, args=(i,)) for i in range(DEVICES)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        gc.collect()
        metrics = server.metrics()
    finally:
        server.stop()
    assert not errors, errors
    assert outputs == [reference(target, p, N) for p in prompts]
    assert metrics["errors"] == {}
    assert metrics["sessions"]["opened"] == DEVICES and metrics["sessions"]["closed"] == DEVICES
    assert metrics["sessions"]["active"] == 0 and metrics["cache_tokens"] == 0  # every cache freed
    assert peak["cache"] > 0 and peak["active"] >= 2
    assert metrics["rounds"] >= DEVICES and metrics["verify_latency_ms"]["count"] == metrics["rounds"]
    assert sum(int(k) * v for k, v in metrics["batch_sizes"].items()) == metrics["rounds"]
