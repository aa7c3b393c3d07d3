"""Distil a small draft for a pretrained target (the default smollm2 pair), resumable across sessions.

Recipe (the choices measured on these CPUs):

- a Llama draft sharing the target's tokenizer; embeddings initialised from the target's embedding
  projected on its top ``hidden`` principal directions;
- the output layer limited to the tokens that occur in the data (:mod:`gelato.models.output_subset`):
  a ~3x smaller last matmul, argmax and sampling exact over that support;
- data: the target's own greedy answers (soft cross-entropy to its top-20 log-probs, renormalised over
  the support) mixed with GSM8K's gold answers (cross-entropy), both chat-formatted; loss on answer
  tokens only;
- AdamW, warm-up then cosine to 10% over the training-time budget; a checkpoint every few minutes
  (model, optimiser, step, elapsed time, RNG) so a stopped run resumes where it was.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from gelato.zoo.distill_data import AnswerSet


@dataclass(frozen=True)
class DraftRecipe:
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 768
    lr: float = 2e-3
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01
    warmup_steps: int = 20
    batch_sequences: int = 8
    gold_fraction: float = 0.4  # share of each batch drawn from GSM8K gold answers
    support_top_k: int = 4  # the target's top-k ids per answer token join the output support
    max_len: int = 512
    checkpoint_seconds: float = 180.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Example:
    ids: np.ndarray  # (L,) prompt + answer
    start: int  # first answer position (loss on positions start..L-1, predicted from ids[:pos])
    soft_pos: np.ndarray | None  # (L - start, k) support positions of the target's top-k, -1 if dropped
    soft_p: np.ndarray | None  # (L - start, k) renormalised probabilities


def output_support(answers: AnswerSet, gold: list[tuple[list[int], list[int]]], top_k: int,
                   always: tuple[int, ...] = ()) -> np.ndarray:
    ids: set[int] = set(always)
    for a, t in zip(answers.answers, answers.top_ids):
        ids.update(int(x) for x in a)
        ids.update(int(x) for x in t[:, :top_k].ravel())
    for p, a in gold:  # gold answers and the questions (answers restate them)
        ids.update(a)
        ids.update(p)
    return np.array(sorted(ids), dtype=np.int64)


def make_examples(answers: AnswerSet, gold: list[tuple[list[int], list[int]]], support: np.ndarray, vocab: int,
                  max_len: int) -> tuple[list[Example], list[Example]]:
    pos = np.full(vocab, -1, dtype=np.int64)
    pos[support] = np.arange(len(support))
    soft = []
    for p, a, ti, tl in zip(answers.prompts, answers.answers, answers.top_ids, answers.top_lp):
        ids = np.concatenate([p, a])[:max_len]
        n = len(ids) - len(p)
        if n <= 0:
            continue
        sp = pos[ti[:n].astype(np.int64)]
        pr = np.exp(tl[:n].astype(np.float32)) * (sp >= 0)
        pr = pr / np.maximum(pr.sum(1, keepdims=True), 1e-8)
        soft.append(Example(ids, len(p), sp, pr.astype(np.float32)))
    hard = [Example(np.array((p + a)[:max_len], dtype=np.int64), len(p), None, None) for p, a in gold
            if len(p) < min(len(p + a), max_len)]
    return soft, hard


def make_draft(recipe: DraftRecipe, target, seed: int) -> LlamaForCausalLM:
    """A fresh draft with the target's vocabulary and special ids, embeddings from the target's PCA."""
    tc = target.config
    cfg = LlamaConfig(vocab_size=tc.vocab_size, hidden_size=recipe.hidden_size,
                      intermediate_size=recipe.intermediate_size, num_hidden_layers=recipe.num_hidden_layers,
                      num_attention_heads=recipe.num_attention_heads, num_key_value_heads=recipe.num_attention_heads,
                      max_position_embeddings=tc.max_position_embeddings, rms_norm_eps=1e-5,
                      rope_theta=getattr(tc, "rope_theta", None) or 10000.0, tie_word_embeddings=True,
                      bos_token_id=tc.bos_token_id, eos_token_id=tc.eos_token_id, pad_token_id=tc.pad_token_id,
                      initializer_range=0.02, use_cache=True)
    torch.manual_seed(seed)
    draft = LlamaForCausalLM(cfg)
    with torch.no_grad():
        emb = target.get_input_embeddings().weight.float()
        centred = emb - emb.mean(0, keepdim=True)
        _, vecs = torch.linalg.eigh(centred.t() @ centred)  # ascending eigenvalues
        proj = emb @ vecs[:, -recipe.hidden_size:].flip(1)
        proj = proj / proj.norm(dim=1, keepdim=True).mean()  # unit mean row norm
        draft.get_input_embeddings().weight.copy_(proj)
    draft.generation_config.eos_token_id = tc.eos_token_id
    draft.generation_config.pad_token_id = tc.pad_token_id
    return draft


def batch_loss(draft: LlamaForCausalLM, batch: list[Example], support_t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean loss over the answer tokens of ``batch`` (soft CE for target answers, CE for gold)."""
    width = max(len(e.ids) for e in batch)
    pad = int(draft.config.pad_token_id or 0)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for b, e in enumerate(batch):
        ids[b, :len(e.ids)] = torch.from_numpy(e.ids.astype(np.int64))
        mask[b, :len(e.ids)] = 1
    hidden = draft.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, W, d)
    w_sub = draft.get_input_embeddings().weight[support_t]  # (n, d), tied
    total, count = hidden.new_zeros(()), 0
    lookup = torch.full((int(draft.config.vocab_size),), -1, dtype=torch.long)
    lookup[support_t] = torch.arange(len(support_t))
    for b, e in enumerate(batch):
        h = hidden[b, e.start - 1: len(e.ids) - 1]  # predicts ids[start:]
        logq = F.log_softmax(h @ w_sub.t(), -1)  # (n_ans, n)
        if e.soft_pos is not None:
            sp = torch.from_numpy(e.soft_pos).clamp_min(0)
            pr = torch.from_numpy(e.soft_p)
            total = total - (pr * logq.gather(1, sp)).sum()
        else:
            y = lookup[torch.from_numpy(e.ids[e.start:].astype(np.int64))]
            total = total + F.nll_loss(logq, y, reduction="sum", ignore_index=-1)
        count += h.shape[0]
    return total / max(count, 1), count


def lr_at(elapsed: float, budget: float, step: int, recipe: DraftRecipe) -> float:
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    frac = min(1.0, elapsed / budget)
    return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac)))


def train_draft(draft: LlamaForCausalLM, soft: list[Example], hard: list[Example], support: np.ndarray,
                recipe: DraftRecipe, budget_seconds: float, seed: int, checkpoint: Path,
                log: Callable[[str], None] = print,
                refresh: Callable[[], list[Example]] | None = None) -> dict:
    """Train until ``budget_seconds`` of training time (summed over resumed runs) have passed.

    ``refresh``, if given, is called at every checkpoint and returns the target-answer examples to use
    from then on (answers still being generated in the background join the training set)."""
    opt = torch.optim.AdamW(draft.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    state = {"step": 0, "elapsed": 0.0, "loss_tokens": 0, "losses": []}
    rng = random.Random(seed)
    if checkpoint.is_file():
        ck = torch.load(checkpoint, weights_only=False)
        draft.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        state = ck["state"]
        rng.setstate(ck["rng"])
        log(f"resumed from {checkpoint}: step {state['step']}, {state['elapsed']:.0f}s trained")
    support_t = torch.from_numpy(support)
    n_gold = round(recipe.batch_sequences * recipe.gold_fraction) if hard else 0
    draft.train()
    last_ck = time.perf_counter()
    while state["elapsed"] < budget_seconds:
        t0 = time.perf_counter()
        batch = rng.sample(soft, recipe.batch_sequences - n_gold) + (rng.sample(hard, n_gold) if n_gold else [])
        for g in opt.param_groups:
            g["lr"] = lr_at(state["elapsed"], budget_seconds, state["step"], recipe)
        loss, n = batch_loss(draft, batch, support_t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(draft.parameters(), 1.0)
        opt.step()
        state["step"] += 1
        state["loss_tokens"] += n
        state["elapsed"] += time.perf_counter() - t0
        state["losses"].append(round(loss.item(), 4))
        if state["step"] % 10 == 0:
            recent = state["losses"][-10:]
            log(f"step {state['step']}: loss {sum(recent) / len(recent):.3f}, {state['loss_tokens']:,} loss tokens, "
                f"{state['elapsed']:.0f}/{budget_seconds:.0f}s, lr {opt.param_groups[0]['lr']:.2e}")
        if time.perf_counter() - last_ck > recipe.checkpoint_seconds or state["elapsed"] >= budget_seconds:
            save_checkpoint(checkpoint, draft, opt, state, rng)
            last_ck = time.perf_counter()
            if refresh is not None:
                fresh = refresh()
                if len(fresh) > len(soft):
                    log(f"training set: {len(fresh)} target answers (was {len(soft)})")
                    soft = fresh
    draft.eval()
    return state


def save_checkpoint(path: Path, draft, opt, state: dict, rng: random.Random) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": draft.state_dict(), "optimizer": opt.state_dict(), "state": state, "rng": rng.getstate()},
               tmp)
    tmp.replace(path)


def gold_pairs(tokenizer, data_dir=None, exclude_eos: bool = False) -> list[tuple[list[int], list[int]]]:
    """(chat prompt ids, gold answer ids + end of turn) for every GSM8K train question."""
    from gelato.experiments.workloads import clean_gsm8k_answer, data_file
    from gelato.models.chat import chat_text, stop_token_id

    stop = stop_token_id(tokenizer)
    out = []
    with open(data_file("gsm8k_train.jsonl", data_dir)) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                p = tokenizer(chat_text(tokenizer, row["question"]), add_special_tokens=False)["input_ids"]
                a = tokenizer(clean_gsm8k_answer(row["answer"]).strip(), add_special_tokens=False)["input_ids"]
                out.append((p, a + ([] if exclude_eos else [stop])))
    return out
