"""A draft with an output layer limited to listed tokens; the shift-reusing trace recorder; draft distillation."""

from __future__ import annotations

import numpy as np
import torch

from gelato.decoding.pipeline import generate_speculative, generate_target_only
from gelato.decoding.sampling import SamplingParams, processed_probs
from gelato.experiments.trace import record_trace
from gelato.experiments.trace_fast import record_trace_fast
from gelato.models import load_causal_lm
from gelato.models.output_subset import FILL, apply_output_subset, read_output_tokens, write_output_tokens
from gelato.models.tiny import noisy_copy, tiny_llama
from gelato.policies import StaticPolicy
from tests.conftest import random_prompts

LISTED = list(range(0, 64, 2)) + [5, 7]


def test_subset_head_keeps_listed_logits_and_zeroes_the_rest():
    model = tiny_llama(vocab_size=64, seed=3)
    x = torch.tensor([[1, 2, 3, 4]])
    full = model(input_ids=x).logits
    apply_output_subset(model, LISTED)
    limited = model(input_ids=x).logits
    assert limited.shape == full.shape
    assert torch.allclose(limited[..., LISTED], full[..., LISTED], atol=1e-5)
    others = [i for i in range(64) if i not in LISTED]
    assert (limited[..., others] == FILL).all()
    q = processed_probs(limited[0, -1], SamplingParams(temperature=1.0))
    assert float(q[others].sum()) == 0.0 and abs(float(q.sum()) - 1) < 1e-5
    assert int(limited[0, -1].argmax()) == LISTED[int(full[0, -1, LISTED].argmax())]


def test_saved_list_is_applied_on_load_and_decoding_stays_lossless(tmp_path):
    target = tiny_llama(vocab_size=64, seed=0)
    draft = noisy_copy(target, 0.15, seed=1)
    draft.save_pretrained(tmp_path)
    write_output_tokens(tmp_path, LISTED)
    assert read_output_tokens(tmp_path) == sorted(LISTED)
    loaded = load_causal_lm(tmp_path)
    assert type(loaded.lm_head).__name__ == "SubsetLMHead"
    for prompt in random_prompts(3, seed=4, min_len=3):
        ref = generate_target_only(target, prompt, SamplingParams(), 20)
        ours = generate_speculative(loaded, target, prompt, SamplingParams(), StaticPolicy(3), 20)
        assert ours.token_ids == ref.token_ids


def test_fast_trace_recorder_equals_the_reference_recorder():
    target = tiny_llama(vocab_size=64, seed=0)
    draft = noisy_copy(target, 0.1, seed=2)
    prompts = [(f"p{i}", p) for i, p in enumerate(random_prompts(3, seed=8, min_len=3))]
    a = record_trace(draft, target, prompts, k_max=5, max_new_tokens=24)
    b = record_trace_fast(draft, target, prompts, k_max=5, max_new_tokens=24)
    for pa, pb in zip(a.prompts, b.prompts):
        assert (pa.target_tokens == pb.target_tokens).all() and (pa.draft_tokens == pb.draft_tokens).all()
        assert (pa.topp_support == pb.topp_support).all()
        assert np.allclose(pa.entropies, pb.entropies, atol=1e-5)
        assert np.allclose(pa.token_probs, pb.token_probs, atol=1e-6)


def test_draft_distillation_learns_and_resumes_from_its_checkpoint(tmp_path):
    from gelato.zoo.distill_data import AnswerSet
    from gelato.zoo.draft_distill import DraftRecipe, make_draft, make_examples, output_support, train_draft

    target = tiny_llama(vocab_size=64, hidden=32, seed=0)
    target.config.pad_token_id = 0
    rng = np.random.default_rng(0)
    answers = [rng.integers(1, 64, 12).astype(np.int32) for _ in range(6)]
    tops = [np.stack([a, (a + 1) % 64], 1).astype(np.int32) for a in answers]
    lps = [np.log(np.tile([0.9, 0.1], (len(a), 1))).astype(np.float16) for a in answers]
    prompts = [rng.integers(1, 64, 5).astype(np.int32) for _ in answers]
    data = AnswerSet(np.arange(6), prompts, answers, tops, lps)
    gold = [(p.tolist(), a.tolist()) for p, a in zip(prompts, answers)]
    support = output_support(data, gold, 2)
    soft, hard = make_examples(data, gold, support, 64, 64)
    recipe = DraftRecipe(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         batch_sequences=4, gold_fraction=0.5, warmup_steps=2, lr=1e-2, checkpoint_seconds=0.0)
    ck = tmp_path / "ck.pt"
    draft = make_draft(recipe, target, seed=0)
    first = train_draft(draft, soft, hard, support, recipe, budget_seconds=1.0, seed=0, checkpoint=ck,
                        log=lambda s: None)
    assert ck.is_file() and first["step"] > 0
    again = make_draft(recipe, target, seed=0)
    resumed = train_draft(again, soft, hard, support, recipe, budget_seconds=2.0, seed=0, checkpoint=ck,
                          log=lambda s: None)
    assert resumed["step"] > first["step"] and resumed["losses"][:first["step"]] == first["losses"]
    assert np.mean(resumed["losses"][-3:]) < np.mean(resumed["losses"][:3])
