"""The static-shape verify path (models/static_verify.py) gives the dynamic path's logits, on CPU (eagerly).

Graph capture runs only on CUDA; here the very same fixed-shape forward runs eagerly, so these tests pin
its correctness: padding, the kv buckets, the mask, rollbacks, session swaps and the end of the cache.
"""

from __future__ import annotations

import random

import pytest
import torch

from gelato.decoding.sampling import SamplingParams
from gelato.generation import DraftModelProposer, TargetModelVerifier, generate
from gelato.generation.loop import target_only_generate
from gelato.models.cached import CachedCausalLM
from gelato.models.static_verify import (
    ContextTooLong,
    StaticVerifyEngine,
    kv_buckets,
    make_static_engine,
)
from gelato.models.tiny import tiny_llama
from gelato.policies import StaticPolicy

ATOL = 1e-4  # float summation order only: the tiny models' logits are O(10-100)


def _rounds(target, engine, seed: int, rounds: int = 25, prompt_len: int = 9, max_draft: int = 16):
    """Drive the dynamic and the static path through the same verify rounds (1..17 tokens each, random
    rejections rolled back) and return the worst logit difference and the number of rounds checked."""
    rng = random.Random(seed)
    vocab = target.config.vocab_size
    dyn, sta = CachedCausalLM(target), engine.sequence()
    committed = [rng.randrange(vocab) for _ in range(prompt_len)]
    dyn.feed(committed[:-1])
    sta.feed(committed[:-1])
    worst, sizes = 0.0, set()
    for _ in range(rounds):
        draft = [rng.randrange(vocab) for _ in range(rng.randint(0, max_draft))]
        ids = committed + draft
        a = dyn.feed(ids, logits_from=len(committed) - 1)
        b = sta.feed(ids, logits_from=len(committed) - 1)
        assert a.shape == b.shape == (len(draft) + 1, vocab)
        assert torch.equal(a.argmax(-1), b.argmax(-1))
        worst = max(worst, float((a - b).abs().max()))
        sizes.add(len(draft) + 1)
        accepted = rng.randint(0, len(draft))
        dyn.truncate(len(committed) + accepted)
        sta.truncate(len(committed) + accepted)
        assert sta.cached_ids == dyn.cached_ids
        committed = ids[: len(committed) + accepted] + [int(a[accepted].argmax())]
    return worst, sizes


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_static_logits_equal_dynamic_over_rounds_with_rollbacks(attn):
    target = tiny_llama(vocab_size=64, hidden=32, layers=2, seed=3)
    target.config._attn_implementation = attn
    engine = StaticVerifyEngine(target, max_len=400)
    assert not engine.graphs  # CPU: the fixed-shape forward runs eagerly
    worst, sizes = _rounds(target, engine, seed=1, rounds=40)
    assert worst < ATOL
    assert len(sizes) >= 12 and max(sizes) == 17  # rounds of many sizes, up to 17 tokens (K=16 + 1)
    assert engine.padded_tokens > 0  # the sizes really were padded to buckets


def test_every_round_size_from_1_to_17_matches():
    target = tiny_llama(vocab_size=64, hidden=32, layers=2, seed=4)
    engine = StaticVerifyEngine(target, max_len=256)
    dyn, sta = CachedCausalLM(target), engine.sequence()
    prompt = list(range(5, 25))
    for n in range(1, 18):
        ids = prompt + [(7 * n + j) % 64 for j in range(n - 1)]
        dyn.truncate(len(prompt) - 1)
        sta.truncate(len(prompt) - 1)
        a = dyn.feed(ids, logits_from=len(prompt) - 1)
        b = sta.feed(ids, logits_from=len(prompt) - 1)
        assert torch.allclose(a, b, atol=ATOL), n
        assert sta.cache_len == len(ids)


def test_long_prompt_runs_in_bucket_chunks_and_matches():
    target = tiny_llama(vocab_size=64, hidden=32, layers=2, seed=5)
    engine = StaticVerifyEngine(target, max_len=512)
    prompt = [(3 * i + 1) % 64 for i in range(150)]  # > the largest token bucket (32): several chunks
    a = CachedCausalLM(target).feed(prompt, logits_from=100)
    b = engine.sequence().feed(prompt, logits_from=100)  # the rows asked for span chunk boundaries
    assert a.shape == b.shape == (50, 64)
    assert torch.allclose(a, b, atol=ATOL)
    assert engine.forward_calls >= 5


def test_interleaved_sequences_swap_and_stay_exact():
    """Two sessions taking turns in the one working cache: each round swaps, logits still match."""
    target = tiny_llama(vocab_size=64, hidden=32, layers=2, seed=6)
    engine = StaticVerifyEngine(target, max_len=300)
    pairs = [(CachedCausalLM(target), engine.sequence()) for _ in range(2)]
    rng = random.Random(2)
    committed = [[rng.randrange(64) for _ in range(6 + 5 * i)] for i in range(2)]
    for (dyn, sta), c in zip(pairs, committed):
        dyn.feed(c[:-1])
        sta.feed(c[:-1])
    for r in range(12):
        i = r % 2
        dyn, sta = pairs[i]
        draft = [rng.randrange(64) for _ in range(rng.randint(0, 8))]
        ids = committed[i] + draft
        a = dyn.feed(ids, logits_from=len(committed[i]) - 1)
        b = sta.feed(ids, logits_from=len(committed[i]) - 1)
        assert torch.allclose(a, b, atol=ATOL), r
        accepted = rng.randint(0, len(draft))
        dyn.truncate(len(committed[i]) + accepted)
        sta.truncate(len(committed[i]) + accepted)  # truncating while swapped out must hold too
        committed[i] = ids[: len(committed[i]) + accepted] + [int(a[accepted].argmax())]
    assert engine.swaps >= 10


def test_reset_sequence_starts_fresh():
    target = tiny_llama(vocab_size=64, hidden=32, layers=2, seed=7)
    engine = StaticVerifyEngine(target, max_len=128)
    seq = engine.sequence()
    seq.feed([1, 2, 3, 4, 5])
    seq.reset()
    assert seq.cache_len == 0
    assert torch.allclose(seq.feed([9, 8, 7]), CachedCausalLM(target).feed([9, 8, 7]), atol=ATOL)


def test_the_end_of_the_cache_uses_smaller_buckets_then_one_clear_error():
    target = tiny_llama(vocab_size=64, hidden=32, layers=2, seed=8)
    engine = StaticVerifyEngine(target, max_len=70)  # kv buckets 64, 70: the last bucket is not a power of 2
    assert kv_buckets(70) == [64, 70]
    ids = [(5 * i + 2) % 64 for i in range(70)]
    seq, dyn = engine.sequence(), CachedCausalLM(target)
    seq.feed(ids[:60])
    dyn.feed(ids[:60])
    a = dyn.feed(ids, logits_from=59)  # 10 new tokens: 16 would overrun 70, so 8 + 2
    b = seq.feed(ids, logits_from=59)
    assert torch.allclose(a, b, atol=ATOL) and seq.cache_len == 70
    with pytest.raises(ContextTooLong, match="71 positions exceed the static verify cache of 70"):
        seq.feed(ids + [1])
    assert seq.cached_ids == ids  # the refused feed changed nothing
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        seq.feed(ids[:10] + [999])


def test_greedy_speculative_generation_through_static_path_equals_target_only(tiny_target, tiny_drafts):
    target = tiny_target
    params = SamplingParams()
    engine = StaticVerifyEngine(target, max_len=256)
    for prompt in ([3, 17, 42, 5, 8], [60, 1], [11, 12, 13, 14, 15, 16, 17, 18, 19]):
        reference = target_only_generate(CachedCausalLM(target), prompt, params, 40).token_ids
        verifier = TargetModelVerifier(engine.sequence(), params)
        proposer = DraftModelProposer(CachedCausalLM(tiny_drafts["noisy"]), params)
        result = generate(prompt, proposer, verifier, StaticPolicy(6), 40)
        assert result.token_ids == reference
        assert 0 < result.metrics.accepted < result.metrics.sent  # rejections happened


def test_make_static_engine_is_off_on_cpu_unless_forced():
    target = tiny_llama(vocab_size=64, hidden=32, layers=2, seed=9)
    assert make_static_engine(target, None, None, 128) is None  # auto: only on cuda
    assert make_static_engine(target, None, False, 128) is None
    assert isinstance(make_static_engine(target, None, True, 128), StaticVerifyEngine)
    with pytest.raises(ValueError, match="CUDA graphs need a cuda model"):
        StaticVerifyEngine(target, max_len=64, graphs=True)


def test_a_model_that_does_not_fit_is_refused_in_one_line():
    target = tiny_llama(vocab_size=64, hidden=32, layers=2, seed=9)
    target.config._attn_implementation = "flex_attention"
    with pytest.raises(ValueError, match="does not fit static verification"):
        StaticVerifyEngine(target, max_len=64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (run on a GPU machine)")
def test_cuda_graph_path_equals_dynamic_path():
    target = tiny_llama(vocab_size=64, hidden=32, layers=2, seed=3).to("cuda")
    engine = StaticVerifyEngine(target, max_len=400)
    assert engine.graphs  # on cuda by default
    worst, sizes = _rounds(target, engine, seed=1, rounds=40)
    assert worst < ATOL and max(sizes) == 17
    assert engine.graphs_captured > 0 and engine.graph_replays == engine.forward_calls
