"""Edge memory: cancelled opens leak nothing, KV memory follows the sessions and stays inside its budget."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from edge_helpers import FINGERPRINT, PROMPTS, clone, finishes, reference, remote_generate, start_edge

from gelato.device.edge_client import EdgeClient, StreamTimeout
from gelato.wire.proto import gelato_pb2 as pb

pytestmark = pytest.mark.slow  # starts an edge server


def _open_up(prompt: list[int]) -> pb.StreamUp:
    return pb.StreamUp(open=pb.OpenRequest(prompt_ids=prompt, tokenizer_fingerprint=FINGERPRINT,
                                           max_new_tokens=8))


def _give_up(client: EdgeClient, prompt: list[int], after_s: float) -> str:
    try:
        client.open_stream().exchange(_open_up(prompt), timeout=after_s)
    except StreamTimeout:
        return "gave up"
    return "opened"


def _held_slots(edge) -> int:
    return edge.call(lambda: edge.server.kv_holders())


def _settle(edge, timeout: float = 10.0) -> dict:
    """Wait until no session and no prefill is left on the edge; its metrics then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = edge.metrics()
        if m["sessions"]["active"] == 0 and m["prefilling"] == 0:
            time.sleep(0.2)  # frees queued on the model thread
            return edge.metrics()
        time.sleep(0.05)
    raise AssertionError(f"the edge did not settle: {edge.metrics()}")


def test_opens_cancelled_while_waiting_for_prefill_hold_no_slot(pair):
    """Streams that give up while their prompt waits for (or is in) prefill release everything: no KV slot is
    held afterwards, however the cancel fell between prefill steps (it used to leak one slot per open)."""
    target, _ = pair
    edge = start_edge(target, prefill_chunk=4, max_sessions=64)
    client = EdgeClient(edge.address)
    try:
        prompt = [i % 90 + 1 for i in range(300)]
        with ThreadPoolExecutor(4) as pool:
            for wave in range(5):  # four devices open long prompts at once and give up after 20-60 ms
                outcomes = list(pool.map(lambda i: _give_up(client, prompt, 0.02 + 0.01 * wave), range(4)))
                assert outcomes == ["gave up"] * 4
        m = _settle(edge)
        assert m["sessions"]["active"] == 0
        assert _held_slots(edge) == 0
        assert m["sessions"]["closed"] <= m["sessions"]["opened"]
        # the edge still serves exactly the target's tokens afterwards
        _, draft = pair
        result, _ = remote_generate(edge.address, draft, PROMPTS[0], 12)
        assert result.token_ids == reference(target, PROMPTS[0], 12)
    finally:
        client.close()
        edge.stop()


def _store(target, **kwargs):
    from gelato.models.kv_store import SlotKVStore
    kwargs.setdefault("min_capacity", 16)
    kwargs.setdefault("block_slots", 4)
    kwargs.setdefault("block_positions", 64)
    return SlotKVStore(target, **kwargs)


def test_store_batches_across_blocks_and_moves_growing_sequences_losslessly(pair):
    """Sequences in blocks of different classes, one moving up two classes: each one's logits equal its
    own CachedCausalLM's, and the cache each holds is exactly its own context (not the longest one's)."""
    import torch

    from gelato.models.cached import CachedCausalLM

    target, _ = pair
    store = _store(target)
    g = torch.Generator().manual_seed(0)
    histories = [torch.randint(0, 96, (n,), generator=g).tolist() for n in (3, 9, 40, 5)]
    solo = [CachedCausalLM(target) for _ in histories]
    seqs = [store.sequence() for _ in histories]
    for lm, seq, h in zip(solo, seqs, histories):  # prefilled one by one, as the edge does
        lm.feed(h[:-1])
        seq.feed(h[:-1])
    for r in range(4):
        ids = [h + [r + 1] * (6 * r if i == 0 else 2) for i, h in enumerate(histories)]
        lfs = [len(h) - 1 for h in histories]
        expected = [lm.feed(x, logits_from=lf) for lm, x, lf in zip(solo, ids, lfs)]
        got = store.feed_batch(seqs, ids, lfs)
        for e, o in zip(expected, got):
            torch.testing.assert_close(o, e, atol=1e-4, rtol=1e-4)
            assert torch.equal(o.argmax(-1), e.argmax(-1))
    assert store.migrations >= 1  # the first sequence grew from 3 to 21 positions: it moved, history and all
    # a short one does not pay for the long one (its room: its own 7 positions + the batch's widest run, 19)
    assert seqs[3].cache_len == 7 and seqs[3].pool.capacity <= 32 < seqs[2].cache_len <= seqs[2].pool.capacity


def test_store_frees_closed_sessions_blocks_and_never_exceeds_its_budget(pair):
    from gelato.models.kv_store import KVMemoryExhausted

    target, _ = pair
    store = _store(target, budget_bytes=None)
    idle = store.bytes_allocated
    budget = idle + store.block_bytes(64, 1) + store.block_bytes(16, 4)
    store.budget_bytes = budget
    long, shorts = store.sequence(), [store.sequence() for _ in range(9)]
    long.feed(list(range(1, 60)))  # a block of its own: 1 slot x 64 positions
    for s in shorts[:8]:
        s.feed([1, 2, 3])  # the idle baseline block (4 slots x 16), then a second one: exactly the budget
    assert [(b.slots, b.capacity) for b in store.blocks] == [(4, 16), (1, 64), (4, 16)]
    with pytest.raises(KVMemoryExhausted, match="budget"):
        shorts[8].feed([1, 2, 3])
    assert store.peak_bytes <= budget and shorts[8].slot is None
    with pytest.raises(KVMemoryExhausted) as refused:
        store.sequence().feed(list(range(1, 200)))  # more than the whole budget could ever hold
    assert refused.value.never_fits
    for s in [long, *shorts]:
        s.reset()
    assert store.bytes_allocated > idle and store.holders == 0  # empty blocks are kept a while for reuse ...
    store.keep_empty_s = 0.0
    store.trim()
    assert store.bytes_allocated == idle  # ... then freed: memory came back
    assert store.peak_bytes <= budget


def test_edge_admits_opens_against_its_kv_budget_and_stops_a_session_that_outgrows_it(pair):
    """``kv_memory`` = the idle block + one slot of 384 positions: a second long open waits (RESOURCE_EXHAUSTED),
    a prompt that could never fit is OUT_OF_RANGE, a session that outgrows the budget is stopped with a clear
    status; the KV bytes never exceed the budget, return to idle, and the edge keeps serving exactly."""
    import grpc

    from gelato.wire.errors import EdgeRejectedError

    target, draft = pair
    idle_block, slot_384 = 8 * 256 * 256, 384 * 256  # tiny model: 256 bytes per position
    budget = idle_block + slot_384
    edge = start_edge(target, kv_memory=budget)
    client = EdgeClient(edge.address)
    try:
        first = client.open_stream()
        assert first.exchange(_open_up([i % 90 + 1 for i in range(300)]), timeout=10).WhichOneof("kind") == "opened"
        with pytest.raises(grpc.RpcError) as busy:
            client.open_stream().exchange(_open_up([i % 90 + 1 for i in range(300)]), timeout=10)
        assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "KV memory" in busy.value.details()
        with pytest.raises(grpc.RpcError) as never:
            client.open_stream().exchange(_open_up([i % 90 + 1 for i in range(450)]), timeout=10)
        assert never.value.code() == grpc.StatusCode.OUT_OF_RANGE and "never fit" in never.value.details()
        first.cancel()
        _settle(edge)
        with pytest.raises(EdgeRejectedError) as outgrown:  # 300 prompt tokens + 120 new > 384 positions
            remote_generate(edge.address, draft, [i % 90 + 1 for i in range(300)], 120, busy_after=0.5)
        assert "KV memory" in outgrown.value.details
        assert len(outgrown.value.committed_ids) > 340  # what was committed before the stop is kept
        m = _settle(edge)
        deadline = time.monotonic() + 10
        while m["kv_bytes"] > idle_block and time.monotonic() < deadline:  # empty blocks go after 1 s idle
            time.sleep(0.2)
            m = edge.metrics()
        assert m["kv_peak_bytes"] <= budget and m["kv_bytes"] == idle_block and m["kv_budget_bytes"] == budget
        result, _ = remote_generate(edge.address, draft, PROMPTS[2], 12)
        assert result.token_ids == reference(target, PROMPTS[2], 12)
    finally:
        client.close()
        edge.stop()


def test_prometheus_shows_kv_used_and_budget_bytes(pair):
    import urllib.request

    from gelato.edge.prometheus import start_metrics_server

    target, draft = pair
    edge = start_edge(target, kv_memory=3 * 2**20)
    httpd, _ = start_metrics_server(edge.server, 0)
    try:
        remote_generate(edge.address, draft, PROMPTS[0], 8)
        text = urllib.request.urlopen(f"http://127.0.0.1:{httpd.server_port}/metrics", timeout=5).read().decode()
        values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line and line[0] != "#"}
        assert values["gelato_edge_kv_budget_bytes"] == 3 * 2**20
        assert 0 < values["gelato_edge_kv_used_bytes"] <= values["gelato_edge_kv_peak_bytes"] <= 3 * 2**20
        assert values["gelato_edge_sessions_opened_total"] == values["gelato_edge_sessions_closed_total"] == 1
    finally:
        httpd.shutdown()
        edge.stop()


def test_a_long_prefill_is_not_declared_unreachable(pair):
    """An open whose prefill outlasts the device's unreachable window still succeeds (the edge acknowledges the
    stream at once; the device then waits up to open_timeout), and the text is the target's. The edge's model
    sleeps 2 ms per forward, so the prefill (449 one-token steps) outlasts the 0.5 s window on any machine."""
    target, draft = pair
    slow = clone(target)
    forwards = []
    slow.register_forward_pre_hook(lambda module, args: (forwards.append(1), time.sleep(0.002)) and None)
    edge = start_edge(slow, prefill_chunk=1)
    try:
        prompt = [i % 90 + 1 for i in range(450)]
        result, verifier = finishes(remote_generate, edge.address, draft, prompt, 6, unreachable_after=0.5,
                                    open_timeout=30)
        assert len(forwards) * 0.002 > 0.5  # the prefill's forwards alone slept longer than the window
        assert result.token_ids == reference(target, prompt, 6)
        assert verifier.stats.opens == 1 and verifier.stats.retries == 0
    finally:
        edge.stop()


def test_the_documented_minimum_temperature_is_accepted(pair):
    """0.0001 travels as the float32 9.99999974e-05: it used to be refused as "too small (at least 0.0001)"."""
    from gelato.decoding.sampling import SamplingParams

    target, draft = pair
    edge = start_edge(target)
    try:
        result, _ = remote_generate(edge.address, draft, PROMPTS[0], 6, params=SamplingParams(temperature=0.0001))
        assert len(result.token_ids) == 6
    finally:
        edge.stop()


def test_a_fresh_opens_first_chunk_is_budgeted_while_others_are_active(pair):
    """A looping attacker's every open used to start with a full ``prefill_chunk`` (no timing of its own yet);
    now its first chunk is sized from the last chunk the worker timed."""
    from gelato.edge.stats import EdgeMetrics
    from gelato.edge.worker import ModelWorker, _Prefill
    from gelato.models.cached import CachedCausalLM

    target, _ = pair
    worker = ModelWorker(EdgeMetrics(), prefill_chunk=128, prefill_budget_ms=2.0, others_waiting=lambda n: True)
    first = _Prefill(CachedCausalLM(target), [i % 90 for i in range(300)], future=None)
    assert worker.chunk_tokens(first) == 128  # nothing timed yet
    worker._prefill_step(first)
    assert worker.last_ms_per_token == first.ms_per_token is not None  # the worker keeps the last timing
    worker.last_ms_per_token = 0.05  # (a fixed figure, so the check does not depend on this machine's speed)
    fresh = _Prefill(CachedCausalLM(target), [i % 90 for i in range(300)], future=None)
    assert worker.chunk_tokens(fresh) == 40  # 2 ms / 0.05 ms per token, not a full 128-token chunk
