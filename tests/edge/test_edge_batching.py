"""Batched verification over slots of one preallocated KV pool: one forward for several sessions gives the
logits of one forward each, without copying any history; growth keeps every row; and over a real edge,
batched output equals unbatched."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from edge_helpers import PROMPTS, reference, remote_generate, start_edge

from gelato.models.cached import CachedCausalLM
from gelato.models.slots import SlotKVPool, _BatchView, supports_slots
from gelato.models.tiny import tiny_llama
from gelato.policies import StaticPolicy

pytestmark = pytest.mark.slow  # starts an edge server


def _histories(seed=0, lengths=(1, 6, 13, 30), drafts=(4, 0, 2, 7)):
    g = torch.Generator().manual_seed(seed)
    return ([torch.randint(0, 96, (n,), generator=g).tolist() for n in lengths],
            [torch.randint(0, 96, (n,), generator=g).tolist() for n in drafts])


def _check_against_solo(model, pool, rounds=3):
    """Feed 4 sequences batched (pool) and one by one (CachedCausalLM) for a few rounds; logits agree."""
    histories, drafts = _histories()
    solo = [CachedCausalLM(model) for _ in histories]
    seqs = [pool.sequence() for _ in histories]
    for lm_s, seq, h in zip(solo, seqs, histories):
        if len(h) > 1:
            lm_s.feed(h[:-1])
            seq.feed(h[:-1])
    seqs[2].truncate(5)  # a cache that lost part of its prefix: the batch recomputes it
    for r in range(rounds):
        seqs_ids = [h + d + [r] * r for h, d in zip(histories, drafts)]
        lfs = [len(h) - 1 for h in histories]
        expected = [lm.feed(ids, logits_from=lf) for lm, ids, lf in zip(solo, seqs_ids, lfs)]
        got = pool.feed_batch(seqs, seqs_ids, lfs)
        for e, o, lm_s, seq in zip(expected, got, solo, seqs):
            assert e.shape == o.shape
            torch.testing.assert_close(o, e, atol=1e-4, rtol=1e-4)
            assert torch.equal(o.argmax(-1), e.argmax(-1))
            assert seq.cached_ids == lm_s.cached_ids
        for seq, lm_s, h in zip(seqs, solo, histories):  # reject the drafts: roll back to the history
            seq.truncate(len(h))
            lm_s.truncate(len(h))
    return seqs, solo


def test_batched_slots_match_per_session_feed(pair):
    target, _ = pair
    pool = SlotKVPool(target, slots=2, capacity=8)  # forces growth of slots and capacity on the way
    seqs, solo = _check_against_solo(target, pool)
    assert pool.slots >= 4 and pool.capacity >= 37 and pool.grow_events >= 2
    # a sparse subset (slots not contiguous), in any order, keeps working
    a, b = seqs[3], seqs[0]
    ids_a, ids_b = solo[3].cached_ids + [5, 6], solo[0].cached_ids + [7]
    got = pool.feed_batch([a, b], [ids_a, ids_b], [len(ids_a) - 2, len(ids_b) - 1])
    torch.testing.assert_close(got[0], solo[3].feed(ids_a, logits_from=len(ids_a) - 2), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[1], solo[0].feed(ids_b, logits_from=len(ids_b) - 1), atol=1e-4, rtol=1e-4)


def test_eager_attention_slots_match_per_session_feed():
    model = tiny_llama(vocab_size=96, hidden=32, layers=2, heads=4, seed=3)
    model.config._attn_implementation = "eager"  # the float additive mask path
    _check_against_solo(model, SlotKVPool(model, slots=4, capacity=64))


def test_contiguous_batch_reads_the_pool_in_place_and_writes_only_new_tokens(pair):
    target, _ = pair
    pool = SlotKVPool(target, slots=4, capacity=64)
    seqs = [pool.sequence() for _ in range(3)]
    pool.feed_batch(seqs, [[1, 2, 3, 4, 5]] * 3, [4] * 3)
    before = [k.clone() for k in pool.keys]
    pointers = [k.data_ptr() for k in pool.keys]
    rows = torch.tensor([s.slot for s in seqs])
    assert rows.tolist() == [0, 1, 2]
    view = _BatchView(pool, rows, torch.tensor([[5, 6]] * 3), kv_len=7)
    new_k = torch.randn(3, pool.kv_heads, 2, pool.head_dim)
    keys, _ = view.update(new_k, new_k, 0)
    assert keys.shape == (3, pool.kv_heads, 7, pool.head_dim)
    assert keys.data_ptr() == pool.keys[0].data_ptr()  # a view of the pool: no history was copied
    changed = (pool.keys[0] != before[0]).any(dim=(1, 3))  # [slots, capacity]: which positions were written
    assert changed.nonzero().tolist() == [[r, p] for r in range(3) for p in (5, 6)]
    assert [k.data_ptr() for k in pool.keys] == pointers


def test_rounds_do_not_reallocate_once_capacity_suffices(pair):
    target, _ = pair
    pool = SlotKVPool(target, slots=4, capacity=128)
    seqs = [pool.sequence() for _ in range(4)]
    ids = [[i + 1] * 10 for i in range(4)]
    pool.feed_batch(seqs, ids, [9] * 4)
    pointers, grown = [k.data_ptr() for k in pool.keys], pool.grow_events
    for r in range(20):
        ids = [x + [r % 90, (r + 1) % 90] for x in ids]
        pool.feed_batch(seqs, ids, [len(x) - 3 for x in ids])
        for s, x in zip(seqs, ids):
            s.truncate(len(x) - 1)  # one rejected token per round
            del x[-1]
    assert pool.grow_events == grown
    assert [k.data_ptr() for k in pool.keys] == pointers


def test_reset_returns_the_slot_and_duplicates_are_refused(pair):
    target, _ = pair
    pool = SlotKVPool(target, slots=2, capacity=16)
    a, b = pool.sequence(), pool.sequence()
    a.feed([1, 2, 3])
    b.feed([4, 5])
    assert (a.slot, b.slot) == (0, 1)
    a.reset()
    assert a.slot is None and a.cache_len == 0
    c = pool.sequence()
    c.feed([9])
    assert c.slot == 0 and pool.slots == 2  # the freed slot is reused: no growth
    with pytest.raises(ValueError, match="only once"):
        pool.feed_batch([b, b], [[4, 5], [4, 5]], [1, 1])
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        b.feed([4, 5, 1000])
    assert b.cached_ids == [4, 5]  # a refused feed changes nothing


def test_models_that_do_not_fit_slots_are_detected(pair):
    target, _ = pair
    assert supports_slots(target)
    sliding = copy.deepcopy(target)
    sliding.config.layer_types = ["sliding_attention"] * sliding.config.num_hidden_layers
    assert not supports_slots(sliding)
    with pytest.raises(ValueError, match="slot caching"):
        SlotKVPool(sliding)


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
