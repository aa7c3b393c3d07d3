"""The target's own answers to the new prompt families (:mod:`gelato.zoo.families`): batched, checkpointed,
resumable generation (``scripts/teacher_families.py``).

Every prompt gets a greedy answer; every ``sampled_every``-th prompt of each family also gets a
temperature-1 answer (top-p 1, top-k off). Answers stop at and include ``<|im_end|>`` or are cut at
``max_new_tokens``. Work goes in priority order (the i-th prompt of every family before the (i+1)-th of any),
so whatever is done when the run stops covers every family; ``translate_from`` prompts join the queue as
``translate_to`` answers finish.

Checkpoints: ``OUT/shard-NNNNN.npz`` (written atomically every ``checkpoint_s`` seconds), the teacher
layout (:mod:`gelato.zoo.teacher`) plus ``family``, ``key`` and ``sampled`` arrays. A re-run reads every
shard and skips what is done. :func:`export` joins the shards into ``greedy.npz`` and ``sampled_t1.npz``.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gelato.zoo.families import FAMILIES, FamilyPrompt, build_families, translate_from_prompts

MAX_NEW_TOKENS = 320


def default_out_dir() -> Path:
    from gelato.models.fetch import gelato_home

    return gelato_home() / "teacher-families"


def read_shards(out: Path) -> dict[str, np.ndarray]:
    """Every shard's rows joined (flat teacher layout), in shard order; empty arrays when there are none."""
    parts = [np.load(p) for p in sorted(out.glob("shard-*.npz"))]
    parts = [{k: z[k] for k in z.files} for z in parts]
    keys = ("prompt_ids", "prompt_len", "answer_ids", "answer_len", "source", "finished", "family", "key", "sampled")
    if not parts:
        return {k: np.array([], dtype=np.uint16 if k.endswith("_ids") else None) for k in keys}
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def _write_shard(out: Path, rows: list[dict]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    n = len(list(out.glob("shard-*.npz")))
    path = out / f"shard-{n:05d}.npz"
    tmp = out / f"shard-{n:05d}.tmp.npz"
    np.savez(tmp, **_flat(rows))
    tmp.replace(path)
    return path


def _flat(rows: list[dict]) -> dict[str, np.ndarray]:
    return {"prompt_ids": np.concatenate([r["prompt"] for r in rows]).astype(np.uint16),
            "prompt_len": np.array([len(r["prompt"]) for r in rows], dtype=np.int32),
            "answer_ids": np.concatenate([r["answer"] for r in rows]).astype(np.uint16),
            "answer_len": np.array([len(r["answer"]) for r in rows], dtype=np.int32),
            "source": np.array([r["source"] for r in rows]), "finished": np.array([r["finished"] for r in rows]),
            "family": np.array([r["family"] for r in rows]), "key": np.array([r["key"] for r in rows]),
            "sampled": np.array([r["sampled"] for r in rows])}


def export(out: Path) -> dict[str, int]:
    """``greedy.npz`` and ``sampled_t1.npz`` in ``out`` from its shards; returns the sequence counts."""
    z = read_shards(out)
    po = np.concatenate([[0], np.cumsum(z["prompt_len"])]).astype(np.int64)
    ao = np.concatenate([[0], np.cumsum(z["answer_len"])]).astype(np.int64)
    counts = {}
    for name, want in (("greedy.npz", False), ("sampled_t1.npz", True)):
        idx = [i for i in range(len(z["key"])) if bool(z["sampled"][i]) == want]
        rows = [{"prompt": z["prompt_ids"][po[i]:po[i + 1]], "answer": z["answer_ids"][ao[i]:ao[i + 1]],
                 **{k: z[k][i] for k in ("source", "finished", "family", "key", "sampled")}} for i in idx]
        if rows:
            flat = _flat(rows)
            tmp = out / (name[:-4] + ".tmp.npz")
            np.savez_compressed(tmp, **{k: v for k, v in flat.items() if k != "sampled"})
            tmp.replace(out / name)
        counts[name] = len(rows)
    return counts


def _queue(prompts: list[FamilyPrompt], sampled_every: int, done: set) -> list[tuple[tuple, FamilyPrompt, bool]]:
    """(priority, prompt, sampled) for every answer still to do."""
    order = {f: i for i, f in enumerate(FAMILIES)}
    rank: dict[str, int] = {}
    items = []
    for fp in prompts:
        r = rank[fp.family] = rank.get(fp.family, -1) + 1
        for sampled in (False, True):
            if sampled and r % sampled_every:
                continue
            if (fp.key, sampled) not in done:
                items.append(((r, order[fp.family], sampled), fp, sampled))
    return sorted(items, key=lambda t: t[0])


@torch.inference_mode()
def _generate(target, prompts: list[list[int]], sampled: bool, seed: int, stop: int, pad: int,
              max_new_tokens: int) -> list[list[int]]:
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, p in enumerate(prompts):  # left padding: every row's next position is the same
        ids[r, width - len(p):] = torch.tensor(p)
        mask[r, width - len(p):] = 1
    kw = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0) if sampled else dict(do_sample=False)
    if sampled:
        torch.manual_seed(seed)
    out = target.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, eos_token_id=stop,
                          pad_token_id=pad, **kw)[:, width:]
    answers = []
    for row in out.tolist():
        answers.append(row[: row.index(stop) + 1] if stop in row else row)
    return answers


def generate_families(target, tokenizer, out: Path, *, seed: int = 0, per_family: int = 1500, batch: int = 16,
                      sampled_every: int = 4, max_new_tokens: int = MAX_NEW_TOKENS, minutes: float | None = None,
                      checkpoint_s: float = 180.0, data_dir=None, log: Callable[[str], None] = print) -> dict:
    """Generate (or resume) the target's answers to the families; returns the totals of the shards."""
    from gelato.models.chat import decode_text, encode_messages, stop_token_id

    out = Path(out)
    stop = stop_token_id(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop
    static = build_families(tokenizer, seed, per_family, data_dir)
    by_key = {fp.key: fp for fp in static}
    z = read_shards(out)
    ao = np.concatenate([[0], np.cumsum(z["answer_len"])]).astype(np.int64)
    done = {(str(k), bool(s)) for k, s in zip(z["key"], z["sampled"])}
    translations = {str(k): z["answer_ids"][ao[i]:ao[i + 1]].tolist() for i, (k, s, f) in
                    enumerate(zip(z["key"], z["sampled"], z["family"])) if f == "translate_to" and not s}
    tokens = int(z["answer_len"].sum()) if len(z["answer_len"]) else 0
    log(f"{len(static)} static prompts ({per_family} per family), {len(done)} answers already in {out} "
        f"({tokens:,} tokens); batch {batch}, sampled every {sampled_every}, {torch.get_num_threads()} thread(s)")
    rows: list[dict] = []
    t0 = last_ckpt = time.perf_counter()
    cpu0 = time.process_time()
    new_tokens = 0
    while True:
        back = translate_from_prompts([(by_key[k], decode_text(tokenizer, a)) for k, a in translations.items()
                                       if k in by_key and a and a[-1] == stop], seed, tokenizer)
        all_prompts = static + back
        todo = _queue(all_prompts, sampled_every, done)
        if not todo or (minutes is not None and time.perf_counter() - t0 > minutes * 60):
            break
        window, total = todo[: 4 * batch], len(done) + len(todo)
        for sampled in (False, True):
            part = [(fp, encode_messages(tokenizer, fp.chat())) for _, fp, s in window if s == sampled]
            part.sort(key=lambda t: len(t[1]))
            for b in range(0, len(part), batch):
                chunk = part[b: b + batch]
                tb = time.perf_counter()
                answers = _generate(target, [p for _, p in chunk], sampled,
                                    seed * 1_000_003 + zlib.crc32(chunk[0][0].key.encode()), stop, pad, max_new_tokens)
                for (fp, p), a in zip(chunk, answers):
                    rows.append({"prompt": np.array(p), "answer": np.array(a), "source": fp.source,
                                 "finished": bool(a and a[-1] == stop), "family": fp.family, "key": fp.key,
                                 "sampled": sampled})
                    done.add((fp.key, sampled))
                    if fp.family == "translate_to" and not sampled:
                        translations[fp.key] = a
                n = sum(len(a) for a in answers)
                new_tokens += n
                tokens += n
                el = time.perf_counter() - t0
                log(f"{len(done)}/{total} answers, {tokens:,} answer tokens; batch of {len(chunk)} "
                    f"({'T=1' if sampled else 'greedy'}, prompts <= {len(chunk[-1][1])} tokens) {n} tokens in "
                    f"{time.perf_counter() - tb:.0f}s; this run {new_tokens / el:.1f} tok/s wall, "
                    f"{new_tokens / max(1e-9, time.process_time() - cpu0):.1f} tok/s of CPU time")
                if time.perf_counter() - last_ckpt >= checkpoint_s:
                    log(f"checkpoint {_write_shard(out, rows).name}: {len(rows)} answers")
                    rows, last_ckpt = [], time.perf_counter()
    if rows:
        log(f"checkpoint {_write_shard(out, rows).name}: {len(rows)} answers")
    counts = export(out)
    z = read_shards(out)
    fam = {f: int((z["family"] == f).sum()) for f in FAMILIES}
    log(f"done: {counts}, {int(z['answer_len'].sum()):,} answer tokens; per family {fam}")
    return {"counts": counts, "families": fam, "answer_tokens": int(z["answer_len"].sum())}
