"""The default target's own answers (``../shared/data/smollm2-teacher``): the draft's training data.

The folder (see its README) holds ``greedy.npz`` (greedy answers to GSM8K train questions and to queries
the target wrote itself) and ``sampled_t1.npz`` (temperature-1 answers). Every prompt is already one chat
turn in the default pair's exact template. This module reads them, holds a fixed part of the queries out
for evaluation (chosen by a hash of the prompt's ids, so the split never depends on file order), and
lists the output support: every token id the training data contains.

Evaluation sets (GSM8K test, Spec-Bench, HumanEval) are not in this folder and never enter training.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TEACHER_FOLDER = "smollm2-teacher"
GREEDY_FILE = "greedy.npz"
SAMPLED_FILE = "sampled_t1.npz"
HOLDOUT_MODULUS = 25  # a query whose prompt hash is 0 modulo this is held out (~4% of the queries)


@dataclass(frozen=True)
class TeacherSequence:
    prompt: np.ndarray  # (P,) int64 chat prompt ids, ending with the assistant header
    answer: np.ndarray  # (A,) int64 the target's answer ids
    source: str  # "gsm8k_train" or "queries"
    sampled: bool  # True for a temperature-1 answer, False for a greedy one


def teacher_dir(data_dir: str | Path | None = None) -> Path:
    """The teacher folder: ``DATA_DIR/smollm2-teacher`` (``$GELATO_DATA_DIR``, else ``../shared/data``)."""
    from gelato.data.workloads import resolve_data_dir

    base = resolve_data_dir(data_dir)
    path = base / TEACHER_FOLDER
    if not (path / GREEDY_FILE).is_file():
        raise FileNotFoundError(f"no teacher data at {path} (expected {GREEDY_FILE} and {SAMPLED_FILE}; "
                                f"pass --data-dir or set GELATO_DATA_DIR)")
    return path


def read_npz(path: Path, sampled: bool) -> list[TeacherSequence]:
    z = np.load(path)
    z = {k: z[k] for k in z.files}  # decompress each array once
    po = np.concatenate([[0], np.cumsum(z["prompt_len"])])
    ao = np.concatenate([[0], np.cumsum(z["answer_len"])])
    return [TeacherSequence(z["prompt_ids"][po[i]:po[i + 1]].astype(np.int64),
                            z["answer_ids"][ao[i]:ao[i + 1]].astype(np.int64), str(z["source"][i]), sampled)
            for i in range(len(z["prompt_len"]))]


def is_held_out(seq: TeacherSequence) -> bool:
    """Queries whose prompt hashes to 0 modulo :data:`HOLDOUT_MODULUS` are evaluation data."""
    return seq.source == "queries" and zlib.crc32(seq.prompt.astype(np.uint16).tobytes()) % HOLDOUT_MODULUS == 0


def load_teacher(folder: str | Path) -> tuple[list[TeacherSequence], list[TeacherSequence]]:
    """(training sequences, held-out greedy query sequences) from a teacher folder.

    A sampled answer to a held-out prompt is left out of training as well."""
    folder = Path(folder)
    greedy = read_npz(folder / GREEDY_FILE, sampled=False)
    sampled = read_npz(folder / SAMPLED_FILE, sampled=True) if (folder / SAMPLED_FILE).is_file() else []
    held = [s for s in greedy if is_held_out(s)]
    train = [s for s in greedy + sampled if not is_held_out(s) and len(s.answer)]
    return train, held


def output_support(train: list[TeacherSequence], always: tuple[int, ...] = ()) -> np.ndarray:
    """Sorted ids of every token in the training prompts and answers, plus ``always``."""
    ids = np.unique(np.concatenate([np.concatenate([s.prompt, s.answer]) for s in train] + [np.array(always)]))
    return ids.astype(np.int64)


def acceptance_lengths(matches: np.ndarray, ks=(2, 4, 8)) -> dict[str, tuple[int, int]]:
    """(tokens, rounds) of static-K greedy speculative decoding along one target greedy path.

    ``matches[j]`` says whether the draft's argmax after the path's first j tokens equals token j. Along
    the target's own greedy path the target's choice is the path itself, and the draft's rollout equals
    its teacher-forced argmax for as long as it matches, so this count is exact. A round that starts at
    position s accepts the run of matches from s (at most K, leaving the last token to the target) and
    appends one more token."""
    n = len(matches)
    out = {}
    for k in ks:
        tokens = rounds = s = 0
        while s < n:
            acc = 0
            while acc < k and s + acc < n - 1 and matches[s + acc]:
                acc += 1
            s += acc + 1
            tokens += acc + 1
            rounds += 1
        out[str(k)] = (tokens, rounds)
    return out
