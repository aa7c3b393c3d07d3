"""Distil the default pair's draft on the target's own answers (:mod:`gelato.zoo.teacher`), resumably.

Recipe (chosen by measurement; BUILD.md of the shipped draft records the run):

- a Llama draft sharing the target's tokenizer and vocabulary; tied embeddings; its output layer limited
  to every token the training data contains (:mod:`gelato.models.output_subset`);
- data: the target's greedy answers and its temperature-1 answers, each one chat turn; cross-entropy on
  the answer tokens only. On a greedy answer this is the loss of greedy agreement; on a sampled answer
  it is an unbiased estimate of KL(p || q), what acceptance under sampling needs;
- AdamW, warm-up then cosine to 10% over the training-time budget; batches of similar lengths up to a
  token budget; bf16 autocast on CUDA;
- the held-out queries' greedy mean acceptance length at K = 4 is measured every few minutes and the
  best weights are kept (early stopping on the figure the draft exists for);
- a checkpoint every few minutes (model, optimiser, step, elapsed time, RNG, best weights), so a
  stopped run resumes where it was with the same command.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from gelato.zoo.teacher import TeacherSequence, acceptance_lengths


@dataclass(frozen=True)
class DraftRecipe:
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    intermediate_size: int = 768
    lr: float = 2e-3
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    warmup_steps: int = 100
    batch_tokens: int = 32768  # padded tokens per step
    max_len: int = 512
    checkpoint_seconds: float = 180.0
    eval_seconds: float = 60.0
    eval_sequences: int = 307  # held-out queries scored at each evaluation (all of them by default)

    def to_dict(self) -> dict:
        return asdict(self)

    def with_shape(self, shape: str) -> "DraftRecipe":
        """``"h256-l4-f768"`` style override of width, depth and FFN size (heads of 64 dims)."""
        parts = {p[0]: int(p[1:]) for p in shape.split("-")}
        h = parts.get("h", self.hidden_size)
        return replace(self, hidden_size=h, num_hidden_layers=parts.get("l", self.num_hidden_layers),
                       intermediate_size=parts.get("f", self.intermediate_size),
                       num_attention_heads=max(1, h // 64), num_key_value_heads=max(1, h // 64))


@dataclass(frozen=True)
class TargetFacts:
    """What the draft copies from its target's config: vocabulary, special ids, positions."""
    vocab_size: int
    bos_token_id: int | None
    eos_token_id: int | None
    pad_token_id: int | None
    max_position_embeddings: int

    @classmethod
    def of(cls, config) -> "TargetFacts":
        get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
        return cls(int(get("vocab_size")), get("bos_token_id"), get("eos_token_id"), get("pad_token_id"),
                   int(get("max_position_embeddings", 8192)))


def make_draft(recipe: DraftRecipe, facts: TargetFacts, seed: int) -> LlamaForCausalLM:
    cfg = LlamaConfig(vocab_size=facts.vocab_size, hidden_size=recipe.hidden_size,
                      intermediate_size=recipe.intermediate_size, num_hidden_layers=recipe.num_hidden_layers,
                      num_attention_heads=recipe.num_attention_heads, num_key_value_heads=recipe.num_key_value_heads,
                      max_position_embeddings=facts.max_position_embeddings, rms_norm_eps=1e-5,
                      tie_word_embeddings=True, bos_token_id=facts.bos_token_id, eos_token_id=facts.eos_token_id,
                      pad_token_id=facts.pad_token_id, initializer_range=0.02, use_cache=True)
    torch.manual_seed(seed)
    draft = LlamaForCausalLM(cfg)
    draft.generation_config.eos_token_id = facts.eos_token_id
    draft.generation_config.pad_token_id = facts.pad_token_id
    return draft


# ------------------------------------------------------------------------------------------- batches

def make_batches(seqs: list[TeacherSequence], batch_tokens: int, max_len: int, rng: random.Random) -> list[list[int]]:
    """One epoch of batches (indices into ``seqs``): similar lengths together, at most ``batch_tokens`` padded."""
    order = list(range(len(seqs)))
    rng.shuffle(order)
    length = [min(len(s.prompt) + len(s.answer), max_len) for s in seqs]
    batches: list[list[int]] = []
    group = max(1, 64 * batch_tokens // max_len)
    for g in range(0, len(order), group):
        chunk = sorted(order[g: g + group], key=lambda i: length[i])
        cur: list[int] = []
        for i in chunk:
            if cur and (len(cur) + 1) * max(length[j] for j in (*cur, i)) > batch_tokens:
                batches.append(cur)
                cur = []
            cur.append(i)
        if cur:
            batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(seqs: list[TeacherSequence], support_pos: torch.Tensor, max_len: int, pad: int
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids (B, W), attention mask (B, W), labels (B, W))``; labels are support positions of the next
    token at answer positions and -100 elsewhere. A sequence longer than ``max_len`` loses its prompt's
    start (the answer is what the loss reads)."""
    rows = []
    for s in seqs:
        ids = np.concatenate([s.prompt, s.answer])
        start = len(s.prompt)
        if len(ids) > max_len:
            cut = len(ids) - max_len
            ids, start = ids[cut:], max(1, start - cut)
        rows.append((torch.from_numpy(ids), start))
    width = max(len(r) for r, _ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for b, (r, start) in enumerate(rows):
        ids[b, :len(r)] = r
        mask[b, :len(r)] = 1
        labels[b, start - 1: len(r) - 1] = support_pos[r[start:]]
    return ids, mask, labels


def subset_logits(draft: LlamaForCausalLM, hidden: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """``hidden (N, d) -> (N, n)`` logits over the support (the tied embedding's rows)."""
    return hidden @ draft.get_input_embeddings().weight[support].t()


def batch_loss(draft: LlamaForCausalLM, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
               support: torch.Tensor) -> tuple[torch.Tensor, int]:
    hidden = draft.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, W, d)
    keep = labels >= 0
    logits = subset_logits(draft, hidden[keep], support).float()  # (N, n)
    n = int(keep.sum())
    return F.cross_entropy(logits, labels[keep]), n


# ---------------------------------------------------------------------------------------- evaluation

@torch.inference_mode()
def held_out_acceptance(draft: LlamaForCausalLM, held: list[TeacherSequence], support: torch.Tensor,
                        device: torch.device, ks=(2, 4, 8), batch: int = 32) -> dict:
    """Exact greedy mean acceptance length (K = 2/4/8) and top-1 agreement along held-out greedy answers."""
    was_training = draft.training
    draft.eval()
    tot = {str(k): [0, 0] for k in ks}
    agree = n = 0
    for i in range(0, len(held), batch):
        seqs = held[i: i + batch]
        width = max(len(s.prompt) + len(s.answer) for s in seqs)
        ids = torch.zeros((len(seqs), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, s in enumerate(seqs):
            r = torch.from_numpy(np.concatenate([s.prompt, s.answer]))
            ids[b, :len(r)], mask[b, :len(r)] = r, 1
        with _autocast(device):
            hidden = draft.model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        for b, s in enumerate(seqs):
            p = len(s.prompt)
            h = hidden[b, p - 1: p + len(s.answer) - 1].float()
            guess = support[(h @ draft.get_input_embeddings().weight[support].float().t()).argmax(-1)].cpu().numpy()
            matches = guess == s.answer
            agree += int(matches.sum())
            n += len(matches)
            for k, (t, r) in acceptance_lengths(matches, ks).items():
                tot[k][0] += t
                tot[k][1] += r
    draft.train(was_training)
    return {"mean_acceptance_length": {k: round(t / max(r, 1), 4) for k, (t, r) in tot.items()},
            "top1_agreement": round(agree / max(n, 1), 4), "positions": n, "sequences": len(held)}


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


# ------------------------------------------------------------------------------------------ training

def lr_at(elapsed: float, budget: float, step: int, recipe: DraftRecipe) -> float:
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    frac = min(1.0, elapsed / budget)
    return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac)))


def train_draft(draft: LlamaForCausalLM, train: list[TeacherSequence], held: list[TeacherSequence],
                support: np.ndarray, recipe: DraftRecipe, budget_seconds: float, seed: int, checkpoint: Path,
                device: str = "cpu", log: Callable[[str], None] = print) -> dict:
    """Train until ``budget_seconds`` of training time (summed over resumed runs) have passed.

    Returns the run's state; ``draft`` ends holding the best weights by held-out K = 4 acceptance."""
    dev = torch.device(device)
    draft.to(dev)
    opt = torch.optim.AdamW(draft.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "elapsed": 0.0, "loss_tokens": 0, "losses": [],
             "evals": [], "best": None}
    best_weights = None
    rng = random.Random(seed)
    if checkpoint.is_file():
        ck = torch.load(checkpoint, weights_only=False, map_location="cpu")
        draft.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        state, best_weights = ck["state"], ck.get("best_weights")
        rng.setstate(ck["rng"])
        log(f"resumed from {checkpoint}: step {state['step']}, {state['elapsed']:.0f}s trained")
    support_t = torch.from_numpy(support).to(dev)
    support_pos = torch.full((draft.config.vocab_size,), -100, dtype=torch.long)
    support_pos[torch.from_numpy(support)] = torch.arange(len(support))
    pad = int(draft.config.pad_token_id or 0)
    eval_set = held[: recipe.eval_sequences]
    epoch_rng = random.Random(seed * 1000 + state["epoch"])
    batches = make_batches(train, recipe.batch_tokens, recipe.max_len, epoch_rng)
    draft.train()
    last_ck = last_eval = time.perf_counter()

    def evaluate() -> None:
        nonlocal best_weights
        ev = held_out_acceptance(draft, eval_set, support_t, dev)
        ev.update(step=state["step"], elapsed=round(state["elapsed"], 1))
        state["evals"].append(ev)
        mal = ev["mean_acceptance_length"]["4"]
        if state["best"] is None or mal > state["best"]["mean_acceptance_length"]["4"]:
            state["best"] = ev
            best_weights = {k: v.detach().to("cpu", copy=True) for k, v in draft.state_dict().items()}
        log(f"eval step {state['step']}: held-out MAL K=2/4/8 {mal_str(ev)}, top-1 {ev['top1_agreement']:.3f} "
            f"(best K=4 {state['best']['mean_acceptance_length']['4']:.3f})")

    while state["elapsed"] < budget_seconds:
        if state["batch_in_epoch"] >= len(batches):
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
            batches = make_batches(train, recipe.batch_tokens, recipe.max_len, random.Random(seed * 1000 + state["epoch"]))
        t0 = time.perf_counter()
        idx = batches[state["batch_in_epoch"]]
        state["batch_in_epoch"] += 1
        ids, mask, labels = (t.to(dev, non_blocking=True) for t in collate([train[i] for i in idx], support_pos,
                                                                           recipe.max_len, pad))
        for g in opt.param_groups:
            g["lr"] = lr_at(state["elapsed"], budget_seconds, state["step"], recipe)
        with _autocast(dev):
            loss, n = batch_loss(draft, ids, mask, labels, support_t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(draft.parameters(), 1.0)
        opt.step()
        state["step"] += 1
        state["loss_tokens"] += n
        state["losses"].append(round(loss.item(), 4))
        state["elapsed"] += time.perf_counter() - t0
        if state["step"] % 50 == 0:
            recent = state["losses"][-50:]
            log(f"step {state['step']} (epoch {state['epoch']}): loss {sum(recent) / len(recent):.3f}, "
                f"{state['loss_tokens']:,} loss tokens, {state['elapsed']:.0f}/{budget_seconds:.0f}s, "
                f"lr {opt.param_groups[0]['lr']:.2e}")
        done = state["elapsed"] >= budget_seconds
        if time.perf_counter() - last_eval > recipe.eval_seconds or done:
            evaluate()
            last_eval = time.perf_counter()
        if time.perf_counter() - last_ck > recipe.checkpoint_seconds or done:
            save_checkpoint(checkpoint, draft, opt, state, rng, best_weights)
            last_ck = time.perf_counter()
    if state["best"] is None:
        evaluate()
    if best_weights is not None:
        draft.load_state_dict(best_weights)
    draft.eval()
    draft.to("cpu")
    return state


def mal_str(ev: dict) -> str:
    return "/".join(f"{v:.3f}" for v in ev["mean_acceptance_length"].values())


def save_checkpoint(path: Path, draft, opt, state: dict, rng: random.Random, best_weights) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": draft.state_dict(), "optimizer": opt.state_dict(), "state": copy.deepcopy(state),
                "rng": rng.getstate(), "best_weights": best_weights}, tmp)
    tmp.replace(path)
