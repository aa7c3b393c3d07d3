"""Distillation data for a pretrained target: its own greedy answers to chat-formatted GSM8K train questions.

Each question goes through the target tokenizer's chat template (one user turn, the template's default
system turn, the assistant header); the target answers greedily (batched, left-padded) until its
end-of-turn token or ``max_new_tokens``. Answers are written in shards ``answers-NNNNN.npz`` holding

- ``index``: int, the question's line in ``gsm8k_train.jsonl``;
- ``prompt``, ``answer``: object arrays of int32 id arrays (the answer includes the final end-of-turn id);
- ``top_ids`` (int32) and ``top_lp`` (float16): per answer token, the target's ``top_k`` ids and log-probs.

A shard is written to a temporary name and renamed, so a stopped run leaves only whole shards; a rerun
skips every question already answered (resumable across sessions).
"""

from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gelato.models.chat import chat_text, stop_token_id

SHARD_GLOB = "answers-*.npz"


@dataclass
class AnswerSet:
    index: np.ndarray  # (n,)
    prompts: list[np.ndarray]
    answers: list[np.ndarray]
    top_ids: list[np.ndarray]  # each (len(answer), top_k)
    top_lp: list[np.ndarray]

    @property
    def n_tokens(self) -> int:
        return int(sum(len(a) for a in self.answers))


def chat_prompt_ids(tokenizer, questions: list[str]) -> list[list[int]]:
    return [tokenizer(chat_text(tokenizer, q), add_special_tokens=False)["input_ids"] for q in questions]


def done_indices(out_dir: Path) -> set[int]:
    done: set[int] = set()
    for f in glob.glob(str(Path(out_dir) / SHARD_GLOB)):
        if ".tmp." not in f:
            done.update(int(i) for i in np.load(f, allow_pickle=True)["index"])
    return done


def load_answers(out_dir: Path) -> AnswerSet:
    """Every whole shard under ``out_dir``, in question order."""
    rows = []
    for f in sorted(glob.glob(str(Path(out_dir) / SHARD_GLOB))):
        if ".tmp." in f:
            continue
        z = np.load(f, allow_pickle=True)
        rows.extend(zip(z["index"].tolist(), z["prompt"], z["answer"], z["top_ids"], z["top_lp"]))
    rows.sort(key=lambda r: r[0])
    return AnswerSet(np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows], [r[2] for r in rows],
                     [r[3] for r in rows], [r[4] for r in rows])


def _write_shard(out_dir: Path, shard: int, rec: dict) -> None:
    tmp = out_dir / f"answers-{shard:05d}.tmp.npz"
    np.savez(tmp, index=np.array(rec["index"]), **{k: np.array(v, dtype=object) for k, v in rec.items()
                                                  if k != "index"})
    os.replace(tmp, out_dir / f"answers-{shard:05d}.npz")


@torch.inference_mode()
def generate_answers(target, tokenizer, questions: list[str], out_dir: Path, *, batch_size: int = 16,
                     max_new_tokens: int = 256, top_k: int = 20, deadline: float | None = None,
                     log: Callable[[str], None] = print) -> int:
    """Answer every question not yet in ``out_dir`` (shortest prompts first); returns answers written.

    ``deadline``: a ``time.time()`` after which no new batch starts.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = chat_prompt_ids(tokenizer, questions)
    stop = stop_token_id(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop
    done = done_indices(out_dir)
    todo = [i for i in sorted(range(len(ids)), key=lambda i: len(ids[i])) if i not in done]
    shard = len(glob.glob(str(out_dir / SHARD_GLOB)))
    log(f"{len(done)} answers already in {out_dir}, {len(todo)} to do")
    t0, n_tok, written = time.time(), 0, 0
    for s in range(0, len(todo), batch_size):
        if deadline is not None and time.time() > deadline:
            break
        batch = todo[s:s + batch_size]
        width = max(len(ids[i]) for i in batch)
        inp = torch.tensor([[pad] * (width - len(ids[i])) + ids[i] for i in batch])
        att = torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in batch])
        g = target.generate(input_ids=inp, attention_mask=att, max_new_tokens=max_new_tokens, do_sample=False,
                            output_logits=True, return_dict_in_generate=True, pad_token_id=pad, eos_token_id=stop)
        top = torch.log_softmax(torch.stack(g.logits, 1).float(), -1).topk(top_k, -1)
        rec: dict = {"index": [], "prompt": [], "answer": [], "top_ids": [], "top_lp": []}
        for b, i in enumerate(batch):
            a = g.sequences[b, width:].tolist()
            n = a.index(stop) + 1 if stop in a else len(a)
            rec["index"].append(i)
            rec["prompt"].append(np.array(ids[i], np.int32))
            rec["answer"].append(np.array(a[:n], np.int32))
            rec["top_ids"].append(top.indices[b, :n].numpy().astype(np.int32))
            rec["top_lp"].append(top.values[b, :n].numpy().astype(np.float16))
            n_tok += n
        _write_shard(out_dir, shard, rec)
        shard += 1
        written += len(batch)
        log(f"{len(done) + written} answers, {n_tok} new tokens, {n_tok / (time.time() - t0):.1f} tok/s")
    return written


def gsm8k_questions(data_dir=None) -> list[str]:
    from gelato.experiments.workloads import data_file

    with open(data_file("gsm8k_train.jsonl", data_dir)) as f:
        return [json.loads(line)["question"] for line in f if line.strip()]
