"""Build a pair end to end: tokenizer, target, distilled draft, evaluation, report.json and BUILD.md.

Output layout (``out``)::

    target/   config.json, generation_config.json, model.safetensors, tokenizer files
    draft/    the same, with the identical tokenizer
    report.json
    BUILD.md
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

from gelato.zoo.corpus import load_corpus
from gelato.zoo.specs import PairSpec, get_spec
from gelato.zoo.tokenizer import save_tokenizer, train_bpe_tokenizer
from gelato.zoo.train import TokenStream, make_model, n_params, round_weights_, save_model, train_lm

SAVE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def build_pair(pair: str | PairSpec, out: str | Path, *, minutes: float | None = None, seed: int = 0,
               data_dir: str | Path | None = None, text_file: str | Path | None = None,
               threads: int | None = 2, save_dtype: str = "bf16", progress: bool = True,
               eval_prompts: int | None = None, max_new_tokens: int | None = None,
               command: str | None = None, log: Callable[[str], None] | None = print) -> dict:
    """Train and evaluate a pair; returns the report (also written to ``out/report.json``)."""
    spec = pair if isinstance(pair, PairSpec) else get_spec(pair)
    spec = spec.with_overrides(eval_prompts=eval_prompts, eval_max_new_tokens=max_new_tokens)
    minutes = spec.default_minutes if minutes is None else float(minutes)
    if not minutes > 0:
        raise ValueError(f"--minutes must be > 0, got {minutes}")
    if save_dtype not in SAVE_DTYPES:
        raise ValueError(f"save dtype must be one of {sorted(SAVE_DTYPES)}, got {save_dtype!r}")
    dtype = SAVE_DTYPES[save_dtype]
    say = log or (lambda s: None)
    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    t_start = time.perf_counter()

    # 1. text and tokenizer (not counted in the training budget)
    corpus = load_corpus(spec.name, data_dir, text_file, spec.eval_prompts)
    say(f"[{spec.name}] corpus: {len(corpus.train)} training documents, {corpus.n_chars:,} characters from "
        f"{corpus.source}")
    t0 = time.perf_counter()
    tokenizer = train_bpe_tokenizer(corpus.tokenizer_texts(), spec.vocab_size, spec.split_digits,
                                    show_progress=progress and sys.stderr.isatty())
    vocab = len(tokenizer)
    train_stream = TokenStream.from_docs(corpus.train, tokenizer, spec.context)
    val_stream = TokenStream.from_docs(corpus.val, tokenizer, spec.context)
    tok_seconds = time.perf_counter() - t0
    say(f"[{spec.name}] tokenizer: {vocab} tokens; {train_stream.n_tokens:,} training tokens, "
        f"{val_stream.n_tokens:,} validation tokens ({tok_seconds:.1f}s)")

    # 2. target
    budget = minutes * 60.0
    target = make_model(spec.target, vocab, spec.context, tokenizer, seed)
    draft = make_model(spec.draft, vocab, spec.context, tokenizer, seed + 1)
    say(f"[{spec.name}] target {n_params(target):,} params, draft {n_params(draft):,} params; "
        f"budget {minutes:g} min ({spec.target_fraction:.0%} target)")
    t_res = train_lm(target, train_stream, role="target", budget_seconds=budget * spec.target_fraction, seed=seed,
                     batch_size=spec.batch_size, context=spec.context, lr=spec.target_lr,
                     weight_decay=spec.weight_decay, warmup_steps=spec.warmup_steps, progress=progress, log=say)
    target_dir, draft_dir = out / "target", out / "draft"
    save_model(target, target_dir, dtype)
    save_tokenizer(tokenizer, target_dir)
    round_weights_(target, dtype)  # distil from the weights that ship
    say(f"[{spec.name}] target: {t_res.steps} steps, {t_res.tokens:,} tokens, {t_res.tokens_per_second:.0f} tok/s, "
        f"train CE {t_res.final_train_loss:.3f}")

    # 3. draft, distilled from the target
    d_res = train_lm(draft, train_stream, role="draft", budget_seconds=budget * (1 - spec.target_fraction),
                     seed=seed + 1, batch_size=spec.draft_batch_size or spec.batch_size, context=spec.context,
                     lr=spec.draft_lr, weight_decay=spec.weight_decay, warmup_steps=spec.warmup_steps,
                     teacher=target, kd_alpha=spec.kd_alpha, kd_temperature=spec.kd_temperature,
                     progress=progress, log=say)
    save_model(draft, draft_dir, dtype)
    save_tokenizer(tokenizer, draft_dir)
    say(f"[{spec.name}] draft: {d_res.steps} steps, {d_res.tokens:,} tokens, {d_res.tokens_per_second:.0f} tok/s, "
        f"train CE {d_res.final_train_loss:.3f}")
    train_seconds = t_res.seconds + d_res.seconds
    del target, draft

    # 4. evaluation on the saved directories
    from gelato.zoo.evaluate import evaluate_pair

    windows = val_stream.windows(spec.val_windows, spec.context, seed=12345)
    ev = evaluate_pair(draft_dir, target_dir, windows, corpus.prompt_texts, ks=spec.eval_ks,
                       temperatures=spec.eval_temperatures, max_new_tokens=spec.eval_max_new_tokens,
                       seed=seed, progress=progress)

    report = {
        "pair": spec.name,
        "description": spec.description,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "seed": seed,
        "minutes": minutes,
        "data": {"source": corpus.source, "text_file": str(text_file) if text_file else None,
                 "train_documents": len(corpus.train), "train_tokens": train_stream.n_tokens,
                 "val_tokens": val_stream.n_tokens, "eval_prompt_ids": [p.id for p in corpus.prompts],
                 **{k: v for k, v in corpus.meta.items() if k != "eval_prompt_ids"}},
        "tokenizer": {"type": "byte-level BPE", "vocab_size": vocab, "split_digits": spec.split_digits,
                      "eos_token_id": tokenizer.eos_token_id, "bos_token_id": tokenizer.bos_token_id,
                      "pad_token_id": tokenizer.pad_token_id, "seconds": round(tok_seconds, 2)},
        "models": {
            "target": {"params": t_res.params, "shape": spec.target.to_dict(), "dir": "target",
                       "bytes": _dir_bytes(target_dir)},
            "draft": {"params": d_res.params, "shape": spec.draft.to_dict(), "dir": "draft",
                      "bytes": _dir_bytes(draft_dir)},
            "param_ratio": d_res.params / t_res.params,
            "saved_dtype": save_dtype,
        },
        "training": {"target": t_res.to_dict(), "draft": d_res.to_dict(), "seconds": round(train_seconds, 1),
                     "spec": spec.to_dict(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "platform": platform.platform()},
        **ev,
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
    (out / "BUILD.md").write_text(build_md(report))
    s = report["acceptance_summary"]
    say(f"[{spec.name}] val loss target {ev['val_loss']['target']:.3f} draft {ev['val_loss']['draft']:.3f}; "
        f"greedy agreement {ev['greedy_agreement']:.3f}; "
        + ", ".join(f"{k.removeprefix('mean_acceptance_length_')}={v:.2f}" for k, v in s.items()))
    say(f"[{spec.name}] wrote {out}/ (report.json, BUILD.md) in {report['total_seconds']:.0f}s")
    return report


def build_md(report: dict) -> str:
    s = report["acceptance_summary"]
    lines = [
        f"# Built-in pair `{report['pair']}`",
        "",
        report["description"] + ".",
        "",
        "Rebuild (from the repository root, CPU):",
        "",
        "```bash",
        report.get("command") or f"gelato models build --pair {report['pair']} --minutes {report['minutes']:g} "
                                 f"--seed {report['seed']}",
        "```",
        "",
        f"Training is time-boxed ({report['minutes']:g} minutes split target/draft), so a rebuild on a different "
        "machine sees a different number of tokens; the seed fixes initialisation and batch order.",
        "",
        "| | target | draft |",
        "|---|---|---|",
        f"| parameters | {report['models']['target']['params']:,} | {report['models']['draft']['params']:,} |",
        f"| training tokens | {report['training']['target']['tokens']:,} | {report['training']['draft']['tokens']:,} |",
        f"| training seconds | {report['training']['target']['seconds']:.0f} | "
        f"{report['training']['draft']['seconds']:.0f} |",
        f"| validation loss (nats/token) | {report['val_loss']['target']:.3f} | {report['val_loss']['draft']:.3f} |",
        "",
        f"Greedy teacher-forced agreement: {report['greedy_agreement']:.3f}.",
        "",
        "Mean acceptance length (tokens per round, StaticPolicy K):",
        "",
    ]
    lines += [f"- {k.removeprefix('mean_acceptance_length_')}: {v:.2f}" for k, v in s.items()]
    ea = report["entropy_acceptance"]
    lines += ["", "Fitted acceptance ~ exp(-c H) (H: draft entropy, nats): "
              + ", ".join(f"{k} c={v['c']:.3f}" for k, v in ea.items()), "",
              f"Built {report['created']} with torch {report['training']['torch']} on "
              f"{report['training']['threads']} threads ({report['training']['platform']}).", ""]
    return "\n".join(lines)


def command_line() -> str:
    """The command that is running, for the report (``gelato models build ...``)."""
    argv = list(sys.argv)
    prog = Path(argv[0]).name if argv else "gelato"
    if prog in ("gelato", "__main__.py"):
        prog = "gelato"
    elif prog in ("models_cmd.py", "models_cmd"):  # python -m gelato.cli.models_cmd == gelato models
        prog = "gelato models"
    return " ".join([prog] + [shlex.quote(a) for a in argv[1:]])
