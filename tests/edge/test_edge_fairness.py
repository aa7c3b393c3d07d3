"""Fair scheduling: a long prompt is prefilled in chunks, and a waiting round runs before the next chunk."""

from __future__ import annotations

import asyncio

import torch
from edge_helpers import GREEDY, reference

from gelato.edge.sessions import Session
from gelato.edge.stats import EdgeMetrics
from gelato.edge.worker import ModelWorker, RoundJob
from gelato.models.cached import CachedCausalLM
from gelato.wire.codec import DecodedDraft

LONG = 480
CHUNK = 2


def test_a_round_waits_for_at_most_one_prefill_chunk(pair):
    target, _ = pair
    prompt = [3, 17, 42, 5, 8]

    async def scenario():
        metrics = EdgeMetrics()
        worker = ModelWorker(metrics, max_batch=4, window_s=0.0, prefill_chunk=CHUNK)
        worker.start()
        try:
            session = Session(id=1, lm=CachedCausalLM(target), committed=list(prompt), params=GREEDY,
                              generator=torch.Generator(), owner=None)
            await worker.prefill(session.lm, prompt[:-1])
            long_lm = CachedCausalLM(target)
            attack = asyncio.ensure_future(worker.prefill(long_lm, [i % 90 for i in range(LONG)]))
            while metrics.prefill_chunks < 3 + 1:  # the good session's own prefill took 3 chunks
                await asyncio.sleep(0.001)
            submitted_at = metrics.prefill_chunks
            job = RoundJob(session, DecodedDraft([], None), 1, [], list(prompt), len(prompt) - 1)
            result = await worker.submit_round(job)
            served_at = metrics.prefill_chunks
            await attack
            return session, result, submitted_at, served_at, long_lm.cache_len
        finally:
            await worker.stop()
            worker.shutdown()

    session, result, submitted_at, served_at, long_len = asyncio.run(scenario())
    assert served_at - submitted_at <= 1  # the round ran right after the chunk in progress
    assert served_at < LONG // CHUNK  # ... long before the long prompt was done
    assert long_len == LONG  # which was then prefilled completely
    assert result.verdict.token == reference(target, prompt, 1)[0]
    assert session.committed == prompt + [result.verdict.token]


def test_prefill_chunks_are_sized_to_the_time_budget_only_while_others_are_active(pair):
    """Alone, a prompt is prefilled in full ``prefill_chunk`` steps; while other sessions could send rounds,
    each step is sized from the previous step's time per token to fit ``prefill_budget_ms`` (a late chunk
    attends over the whole prefix, so it costs more per token); the cache ends up the same either way."""
    from gelato.edge.worker import MIN_PREFILL_CHUNK, _Prefill
    from gelato.models.slots import SlotKVPool

    target, _ = pair
    active = {"others": False}
    worker = ModelWorker(EdgeMetrics(), prefill_chunk=64, prefill_budget_ms=2.0,
                         others_waiting=lambda n: active["others"])
    item = _Prefill(CachedCausalLM(target), [i % 90 for i in range(300)], future=None)
    assert worker.chunk_tokens(item) == 64  # no timing yet: a full chunk
    item.ms_per_token = 0.5
    assert worker.chunk_tokens(item) == 64  # nobody to be fair to: full chunks
    active["others"] = True
    assert worker.chunk_tokens(item) == MIN_PREFILL_CHUNK  # 2 ms / 0.5 ms = 4 tokens, floored at the minimum
    item.ms_per_token = 0.05
    assert worker.chunk_tokens(item) == 40  # 2 ms / 0.05 ms per token
    item.ms_per_token = 0.001
    assert worker.chunk_tokens(item) == 64  # capped at prefill_chunk

    pool = SlotKVPool(target)
    budgeted, whole = pool.sequence(), pool.sequence()
    item = _Prefill(budgeted, [i % 90 for i in range(300)], future=None)
    steps = 0
    while not worker._prefill_step(item):
        steps += 1
    whole.feed(item.ids)
    assert steps + 1 >= 300 // 64 + 1  # several chunks, none over prefill_chunk
    assert budgeted.cached_ids == whole.cached_ids == item.ids
    probe = item.ids + [7]
    torch.testing.assert_close(budgeted.feed(probe), whole.feed(probe), atol=1e-4, rtol=1e-4)
