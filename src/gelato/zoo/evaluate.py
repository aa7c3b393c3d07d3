"""Evaluation of a built pair: losses, teacher-forced agreement, engine acceptance, entropy-acceptance.

Everything is measured on the directories as saved (loaded back through :func:`gelato.models.load_pair`),
so the report describes the weights that ship.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gelato.decoding.sampling import SamplingParams
from gelato.generation import generate, local_pair
from gelato.generation.loop import target_only_generate
from gelato.models.cached import CachedCausalLM
from gelato.policies.static import StaticPolicy

BIN_WIDTH = 0.1  # nats


# ------------------------------------------------------------------------------ teacher-forced metrics

@torch.inference_mode()
def teacher_forced(draft, target, windows: torch.Tensor, vocab: int, batch: int = 8) -> dict:
    """Validation loss of each model, greedy agreement and per-token (draft entropy, agreement) pairs."""
    d_nll = t_nll = 0.0
    n = agree = 0
    ents, hits = [], []
    for i in range(0, len(windows), batch):
        w = windows[i: i + batch]
        x, y = w[:, :-1], w[:, 1:]
        dl = draft(input_ids=x).logits[..., :vocab].float()
        tl = target(input_ids=x).logits[..., :vocab].float()
        d_nll += float(F.cross_entropy(dl.flatten(0, 1), y.flatten(), reduction="sum"))
        t_nll += float(F.cross_entropy(tl.flatten(0, 1), y.flatten(), reduction="sum"))
        same = dl.argmax(-1) == tl.argmax(-1)
        agree += int(same.sum())
        n += y.numel()
        logq = F.log_softmax(dl, -1)
        ents.append((-(logq.exp() * logq).sum(-1)).flatten())
        hits.append(same.flatten().float())
    return {"draft_val_loss": d_nll / n, "target_val_loss": t_nll / n, "greedy_agreement": agree / n,
            "tokens": n, "entropies": torch.cat(ents).numpy(), "accepted": torch.cat(hits).numpy()}


# --------------------------------------------------------------------------- entropy-acceptance table

def entropy_table(entropies: Sequence[float], accepted: Sequence[float], bin_width: float = BIN_WIDTH) -> dict:
    """Acceptance rate per draft-entropy bin and ``c`` of ``acceptance ~ exp(-c H)`` by least squares.

    The fit minimises the count-weighted squared error over bins, evaluated at each bin's mean entropy.
    """
    h = np.asarray(entropies, dtype=np.float64)
    a = np.asarray(accepted, dtype=np.float64)
    bins = []
    if len(h):
        idx = np.floor(h / bin_width + 1e-9).astype(int)
        for b in np.unique(idx):
            m = idx == b
            bins.append({"lo": round(b * bin_width, 4), "hi": round((b + 1) * bin_width, 4), "count": int(m.sum()),
                         "mean_entropy": float(h[m].mean()), "acceptance": float(a[m].mean())})
    c, rmse = fit_exp_decay([b["mean_entropy"] for b in bins], [b["acceptance"] for b in bins],
                            [b["count"] for b in bins])
    return {"bin_width_nats": bin_width, "observations": int(len(h)),
            "mean_acceptance": float(a.mean()) if len(a) else float("nan"),
            "c": c, "fit_rmse": rmse, "bins": bins}


def fit_exp_decay(h: Sequence[float], acc: Sequence[float], weights: Sequence[float]) -> tuple[float, float]:
    """Weighted least squares for ``acc = exp(-c h)``, c >= 0 (grid search then golden-section refinement)."""
    h, acc, w = (np.asarray(v, dtype=np.float64) for v in (h, acc, weights))
    if len(h) == 0 or w.sum() == 0:
        return float("nan"), float("nan")

    def sse(c: float) -> float:
        return float((w * (acc - np.exp(-c * h)) ** 2).sum())

    grid = np.concatenate([[0.0], np.geomspace(1e-3, 100.0, 400)])
    errs = [sse(c) for c in grid]
    k = int(np.argmin(errs))
    lo, hi = grid[max(0, k - 1)], grid[min(len(grid) - 1, k + 1)]
    g = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        c1, c2 = hi - g * (hi - lo), lo + g * (hi - lo)
        if sse(c1) < sse(c2):
            hi = c2
        else:
            lo = c1
    c = (lo + hi) / 2
    return float(c), math.sqrt(sse(c) / w.sum())


def round_observations(rounds) -> tuple[list[float], list[float]]:
    """Per drafted token of engine rounds: (draft entropy, accepted?) up to and including the first rejection."""
    ents, acc = [], []
    for r in rounds:
        for i in range(r.sent):
            ok = i < r.accepted
            ents.append(float(r.entropies[i]))
            acc.append(1.0 if ok else 0.0)
            if not ok:
                break
    return ents, acc


# ----------------------------------------------------------------------------------- engine metrics

def encode_prompts(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def engine_eval(draft, target, tokenizer, prompt_ids: Sequence[Sequence[int]], ks: Sequence[int],
                temperatures: Sequence[float], max_new_tokens: int, seed: int = 0, progress: bool = True) -> dict:
    """The round loop with StaticPolicy(K) for each (K, T); acceptance totals and entropy tables."""
    from tqdm.auto import tqdm

    vocab = min(int(draft.config.vocab_size), int(target.config.vocab_size))
    d_lm, t_lm = CachedCausalLM(draft, vocab), CachedCausalLM(target, vocab)
    eos = tokenizer.eos_token_id
    runs, obs = [], {}
    total = len(ks) * len(temperatures) * len(prompt_ids)
    with tqdm(total=total, desc="evaluate engine", disable=not progress,
              mininterval=1.0 if sys.stderr.isatty() else 30.0) as bar:
        for temp in temperatures:
            params = SamplingParams(temperature=temp)
            key = "greedy" if params.greedy else f"t{temp:g}"
            obs.setdefault(key, ([], []))
            for k in ks:
                proposer, verifier = local_pair(d_lm, t_lm, params, seed)  # one stream per party, per (T, K)
                generated = rounds = sent = accepted = 0
                t0 = time.perf_counter()
                for ids in prompt_ids:
                    d_lm.reset()
                    t_lm.reset()
                    res = generate(ids, proposer, verifier, StaticPolicy(k), max_new_tokens, eos_token_id=eos)
                    m = res.metrics
                    generated += m.generated_tokens
                    rounds += m.rounds
                    sent += m.sent
                    accepted += m.accepted
                    e, a = round_observations(res.rounds)
                    obs[key][0].extend(e)
                    obs[key][1].extend(a)
                    bar.update(1)
                runs.append({"k": k, "temperature": temp, "prompts": len(prompt_ids), "generated_tokens": generated,
                             "rounds": rounds, "mean_acceptance_length": generated / rounds if rounds else 0.0,
                             "draft_acceptance_rate": accepted / sent if sent else 0.0,
                             "seconds": round(time.perf_counter() - t0, 2)})
    tables = {key: entropy_table(e, a) for key, (e, a) in obs.items()}
    return {"runs": runs, "entropy_acceptance": tables}


def samples(draft, target, tokenizer, texts: Sequence[str], max_new_tokens: int) -> list[dict]:
    """Greedy target-only continuations, and whether greedy SD (K=4) reproduced them exactly."""
    vocab = min(int(draft.config.vocab_size), int(target.config.vocab_size))
    d_lm, t_lm = CachedCausalLM(draft, vocab), CachedCausalLM(target, vocab)
    params = SamplingParams()
    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        t_lm.reset()
        ref = target_only_generate(t_lm, ids, params, max_new_tokens, tokenizer.eos_token_id)
        d_lm.reset()
        t_lm.reset()
        sd = generate(ids, *local_pair(d_lm, t_lm, params, seed=None), StaticPolicy(4), max_new_tokens,
                      eos_token_id=tokenizer.eos_token_id)
        out.append({"prompt": text, "target_greedy": tokenizer.decode(ref.token_ids, skip_special_tokens=True),
                    "speculative_equals_target": sd.token_ids == ref.token_ids})
    return out


def evaluate_pair(draft_dir, target_dir, val_windows: torch.Tensor, prompt_texts: Sequence[str], *,
                  ks: Sequence[int] = (2, 4, 8), temperatures: Sequence[float] = (0.0, 1.0),
                  max_new_tokens: int = 64, n_samples: int = 3, seed: int = 0, progress: bool = True) -> dict:
    from gelato.models.loading import load_pair

    t0 = time.perf_counter()
    draft, target, tok = load_pair(draft_dir, target_dir)
    vocab = min(int(draft.config.vocab_size), int(target.config.vocab_size))
    tf = teacher_forced(draft, target, val_windows, vocab)
    tf_table = entropy_table(tf.pop("entropies"), tf.pop("accepted"))
    prompt_ids = encode_prompts(tok, prompt_texts)
    eng = engine_eval(draft, target, tok, prompt_ids, ks, temperatures, max_new_tokens, seed, progress)
    smp = samples(draft, target, tok, prompt_texts[:n_samples], max_new_tokens)
    by = {(r["k"], r["temperature"]): r for r in eng["runs"]}
    summary = {f"mean_acceptance_length_k{k}_{'greedy' if t == 0 else f't{t:g}'}": by[(k, t)]["mean_acceptance_length"]
               for k in ks for t in temperatures}
    return {
        "val_loss": {"draft": tf["draft_val_loss"], "target": tf["target_val_loss"]},
        "val_perplexity": {"draft": math.exp(tf["draft_val_loss"]), "target": math.exp(tf["target_val_loss"])},
        "val_tokens": tf["tokens"],
        "greedy_agreement": tf["greedy_agreement"],
        "acceptance": eng["runs"],
        "acceptance_summary": summary,
        "entropy_acceptance": {**eng["entropy_acceptance"], "teacher_forced": tf_table},
        "eval_prompts": len(prompt_texts),
        "max_new_tokens": max_new_tokens,
        "samples": smp,
        "seconds": round(time.perf_counter() - t0, 2),
    }
