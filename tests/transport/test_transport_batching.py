"""Batched verification: one forward for several sessions gives the same verdicts as one forward each."""

from __future__ import annotations

import threading

import pytest
import torch

from edge_helpers import PROMPTS, reference, remote_generate, start_edge
from gelato.models.cached import CachedCausalLM
from gelato.policies import StaticPolicy
from gelato.transport.batching import batched_feed, supports_batching


def _caches_equal(a: CachedCausalLM, b: CachedCausalLM) -> None:
    assert a.cached_ids == b.cached_ids
    for la, lb in zip(a._cache.layers, b._cache.layers):
        assert la.keys.shape == lb.keys.shape
        torch.testing.assert_close(la.keys, lb.keys, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(la.values, lb.values, atol=1e-5, rtol=1e-5)


def test_batched_feed_matches_per_session_feed(pair):
    target, _ = pair
    g = torch.Generator().manual_seed(0)
    histories = [torch.randint(0, 96, (n,), generator=g).tolist() for n in (1, 6, 13, 30)]
    drafts = [torch.randint(0, 96, (n,), generator=g).tolist() for n in (4, 0, 2, 7)]
    solo = [CachedCausalLM(target) for _ in histories]
    batch = [CachedCausalLM(target) for _ in histories]
    for lm_s, lm_b, h in zip(solo, batch, histories):
        if len(h) > 1:
            lm_s.feed(h[:-1])
            lm_b.feed(h[:-1])
    batch[2].truncate(5)  # a cache that lost part of its prefix: the batch recomputes it
    assert supports_batching(batch[0])
    expected = [lm.feed(h + d, logits_from=len(h) - 1) for lm, h, d in zip(solo, histories, drafts)]
    got = batched_feed(batch, [h + d for h, d in zip(histories, drafts)], [len(h) - 1 for h in histories])
    for e, o, lm_s, lm_b in zip(expected, got, solo, batch):
        assert e.shape == o.shape
        torch.testing.assert_close(o, e, atol=1e-4, rtol=1e-4)
        assert torch.equal(o.argmax(-1), e.argmax(-1))
        _caches_equal(lm_s, lm_b)
    # the split caches keep working unbatched
    nxt = [lm.feed(h + d + [1], logits_from=len(h + d)) for lm, h, d in zip(batch, histories, drafts)]
    ref = [lm.feed(h + d + [1], logits_from=len(h + d)) for lm, h, d in zip(solo, histories, drafts)]
    for a, b in zip(nxt, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_batched_feed_rejects_duplicate_sessions(pair):
    target, _ = pair
    lm = CachedCausalLM(target)
    with pytest.raises(ValueError, match="only once"):
        batched_feed([lm, lm], [[1, 2], [1, 2]], [1, 1])


def _run_concurrently(address, draft, prompts, n, k=3):
    results, errors = [None] * len(prompts), []
    barrier = threading.Barrier(len(prompts))

    def device(i):
        try:
            barrier.wait(timeout=10)
            results[i] = remote_generate(address, draft, prompts[i], n, policy=StaticPolicy(k))[0].token_ids
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=device, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_batched_equals_unbatched_with_four_sessions(pair):
    target, draft = pair
    n = 20
    prompts = PROMPTS[:4]
    outputs = {}
    for mode, cfg in {"unbatched": dict(max_batch=1), "batched": dict(max_batch=8, batch_window_ms=30.0)}.items():
        server = start_edge(target, **cfg)
        try:
            outputs[mode] = _run_concurrently(server.address, draft, prompts, n)
            metrics = server.metrics()
        finally:
            server.stop()
        sizes = {int(k): v for k, v in metrics["batch_sizes"].items()}
        if mode == "batched":
            assert max(sizes) >= 2, sizes  # verification really ran batched
        else:
            assert set(sizes) == {1}
        assert metrics["errors"] == {}
    assert outputs["batched"] == outputs["unbatched"]
    assert outputs["batched"] == [reference(target, p, n) for p in prompts]
