"""Fair scheduling: a long prompt is prefilled in chunks, and a waiting round runs before the next chunk."""

from __future__ import annotations

import asyncio

import torch

from edge_helpers import GREEDY, reference
from gelato.models.cached import CachedCausalLM
from gelato.transport.codec import DecodedDraft
from gelato.transport.sessions import Session
from gelato.transport.stats import EdgeMetrics
from gelato.transport.worker import ModelWorker, RoundJob

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
