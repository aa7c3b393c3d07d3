"""The default target's own answers to the new prompt families (issue 30), on the CPU, resumable.

Run from the repository root (the same command resumes: prompts already answered are skipped):

    nohup nice -n 19 python scripts/teacher_families.py >> ~/.cache/gelato/teacher-families/generate.log 2>&1 &

Checkpoints go to ``$GELATO_HOME/teacher-families/shard-*.npz`` (default ``~/.cache/gelato``) every few
minutes; the run ends when every prompt is answered or after ``--minutes``, and then writes ``greedy.npz`` and
``sampled_t1.npz`` there (``--export`` does only that). See :mod:`gelato.zoo.family_answers`.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import torch


def main() -> None:
    from gelato.zoo.family_answers import MAX_NEW_TOKENS, default_out_dir, export, generate_families

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="checkpoint folder (default $GELATO_HOME/teacher-families)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-family", type=int, default=1500, help="prompts per static family")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--sampled-every", type=int, default=4, help="a T=1 answer for every N-th prompt of a family")
    ap.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS)
    ap.add_argument("--minutes", type=float, default=None, help="stop after this long (default: when all are done)")
    ap.add_argument("--checkpoint-s", type=float, default=180.0, help="seconds between shards")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=None, help="folder holding smollm2-teacher/")
    ap.add_argument("--export", action="store_true", help="only join the shards into greedy.npz / sampled_t1.npz")
    args = ap.parse_args()
    out = args.out or default_out_dir()
    log = functools.partial(print, flush=True)
    if args.export:
        log(export(out))
        return
    torch.set_num_threads(args.threads)
    from gelato.models import load_causal_lm, load_tokenizer
    from gelato.models.fetch import ensure_smollm2

    target_dir = ensure_smollm2()
    generate_families(load_causal_lm(target_dir), load_tokenizer(target_dir), out, seed=args.seed,
                      per_family=args.per_family, batch=args.batch, sampled_every=args.sampled_every,
                      max_new_tokens=args.max_new_tokens, minutes=args.minutes, checkpoint_s=args.checkpoint_s,
                      data_dir=args.data_dir, log=log)


if __name__ == "__main__":
    main()
