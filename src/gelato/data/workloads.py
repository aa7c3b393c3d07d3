"""Workloads: prompt sets from shared/data, and the prompt format each built-in pair expects.

Every loader returns a list of :class:`Prompt`. The files are the verbatim upstream copies listed in
``shared/data/SOURCES.md``; a missing file raises :class:`DataFileNotFoundError` naming where it was
expected and what it is.

The data directory is resolved, in order, from the ``data_dir`` argument, the ``GELATO_DATA_DIR``
environment variable, then ``../shared/data`` or ``shared/data`` relative to the current directory and
to the repository root (see :func:`resolve_data_dir`).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DATA_DIR_ENV = "GELATO_DATA_DIR"

SPEC_BENCH_CATEGORIES: tuple[str, ...] = (
    "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities",
    "translation", "summarization", "qa", "math_reasoning", "rag",
)

# What each file is, for error messages: file name -> (description, upstream)
DATA_FILES: dict[str, tuple[str, str]] = {
    "gsm8k_train.jsonl": ("GSM8K training split", "openai/grade-school-math grade_school_math/data/train.jsonl"),
    "gsm8k_test.jsonl": ("GSM8K test split", "openai/grade-school-math grade_school_math/data/test.jsonl"),
    "spec_bench_question.jsonl": ("Spec-Bench questions", "hemingkx/Spec-Bench data/spec_bench/question.jsonl"),
    "HumanEval.jsonl.gz": ("HumanEval problems", "openai/human-eval data/HumanEval.jsonl.gz"),
}


class DataFileNotFoundError(FileNotFoundError):
    """A data file of shared/data is missing; the message says where it was expected and what it is."""


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    reference: str | None = None
    category: str = "default"
    meta: dict = field(default_factory=dict, compare=False, hash=False)


# --------------------------------------------------------------------------------------------- paths

def _repo_root() -> Path:
    # src/gelato/data/workloads.py -> repository root (meaningful for a source checkout)
    return Path(__file__).resolve().parents[3]


def data_dir_candidates() -> list[Path]:
    cands = []
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        cands.append(Path(env))
    cwd = Path.cwd()
    root = _repo_root()
    for base in (cwd, root):
        cands += [base / ".." / "shared" / "data", base / "shared" / "data"]
    return cands


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: ``data_dir`` if given, else $GELATO_DATA_DIR, else the first existing default.

    When nothing exists, the first candidate is returned so that the file error names a real path.
    """
    if data_dir is not None:
        return Path(data_dir)
    cands = data_dir_candidates()
    for c in cands:
        if c.is_dir():
            return c.resolve()
    return cands[0]


def data_file(name: str, data_dir: str | Path | None = None) -> Path:
    """Path of a shared/data file, or :class:`DataFileNotFoundError` with a helpful message."""
    d = resolve_data_dir(data_dir)
    path = d / name
    if not path.is_file():
        what, upstream = DATA_FILES.get(name, ("data file", "unknown upstream"))
        hint = "" if data_dir is not None or os.environ.get(DATA_DIR_ENV) else (
            f" (no --data-dir given and ${DATA_DIR_ENV} unset; searched "
            + ", ".join(str(c) for c in data_dir_candidates()) + ")")
        raise DataFileNotFoundError(
            f"{what} not found at {path}: expected {name} from {upstream}, see shared/data/SOURCES.md; "
            f"pass --data-dir or set ${DATA_DIR_ENV}{hint}")
    return path


def _read_jsonl(path: Path) -> Iterable[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                yield json.loads(line)


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")


# ------------------------------------------------------------------------------------------- loaders

_CALC = re.compile(r"<<[^<>]*>>")


def clean_gsm8k_answer(answer: str) -> str:
    """Drop the calculator annotations ``<<48/2=24>>`` from a GSM8K worked answer."""
    return _CALC.sub("", answer)


def gsm8k_final_answer(answer: str) -> str | None:
    """The number after ``####`` in a GSM8K answer (commas removed), or None."""
    m = re.search(r"####\s*([-\d.,]+)", answer)
    return m.group(1).replace(",", "").rstrip(".") if m else None


def load_gsm8k(split: str = "test", data_dir: str | Path | None = None, limit: int | None = None) -> list[Prompt]:
    """GSM8K questions; ``reference`` is the worked answer (with calculator annotations removed)."""
    if split not in ("train", "test"):
        raise ValueError(f"GSM8K split must be 'train' or 'test', got {split!r}")
    _check_limit(limit)
    path = data_file(f"gsm8k_{split}.jsonl", data_dir)
    out = []
    for i, row in enumerate(_read_jsonl(path)):
        if limit is not None and len(out) >= limit:
            break
        out.append(Prompt(id=f"gsm8k-{split}-{i}", text=row["question"].strip(),
                          reference=clean_gsm8k_answer(row["answer"]).strip(), category="gsm8k",
                          meta={"final_answer": gsm8k_final_answer(row["answer"])}))
    return out


def load_spec_bench(data_dir: str | Path | None = None, categories: Sequence[str] | None = None,
                    limit: int | None = None) -> list[Prompt]:
    """Spec-Bench questions (first turn), in file order. ``limit`` applies per category."""
    _check_limit(limit)
    if categories is not None:
        unknown = sorted(set(categories) - set(SPEC_BENCH_CATEGORIES))
        if unknown:
            raise ValueError(f"unknown Spec-Bench categories {unknown}; choose from {list(SPEC_BENCH_CATEGORIES)}")
    wanted = set(categories) if categories is not None else set(SPEC_BENCH_CATEGORIES)
    path = data_file("spec_bench_question.jsonl", data_dir)
    counts: dict[str, int] = {}
    out = []
    for row in _read_jsonl(path):
        cat = row["category"]
        if cat not in wanted:
            continue
        if limit is not None and counts.get(cat, 0) >= limit:
            continue
        counts[cat] = counts.get(cat, 0) + 1
        ref = row.get("reference")
        ref = ref[0] if isinstance(ref, list) and ref else (ref if isinstance(ref, str) else None)
        out.append(Prompt(id=f"spec_bench-{row['question_id']}", text=row["turns"][0], reference=ref,
                          category=cat, meta={"question_id": row["question_id"]}))
    return out


def load_humaneval(data_dir: str | Path | None = None, limit: int | None = None) -> list[Prompt]:
    """HumanEval problems: ``text`` is the function signature + docstring, ``reference`` the canonical body."""
    _check_limit(limit)
    path = data_file("HumanEval.jsonl.gz", data_dir)
    out = []
    for row in _read_jsonl(path):
        if limit is not None and len(out) >= limit:
            break
        out.append(Prompt(id=row["task_id"], text=row["prompt"], reference=row["canonical_solution"],
                          category="humaneval", meta={"entry_point": row["entry_point"], "test": row["test"]}))
    return out


# ----------------------------------------------------------------------------------- prompt formats

GSM8K_QUESTION_PREFIX = "Question: "
GSM8K_ANSWER_PREFIX = "\nAnswer:"


def gsm8k_prompt_text(question: str) -> str:
    return f"{GSM8K_QUESTION_PREFIX}{question.strip()}{GSM8K_ANSWER_PREFIX}"


def gsm8k_document(question: str, answer: str) -> str:
    """One training document of the gsm8k pair: exactly the prompt format followed by the answer."""
    return f"{gsm8k_prompt_text(question)} {clean_gsm8k_answer(answer).strip()}"


def format_for_pair(prompt: Prompt, pair_name: str | None) -> str:
    """The text a pair expects for ``prompt``.

    * ``gsm8k``: ``"Question: <text>\\nAnswer:"`` (the training format; the model continues with " ...").
    * ``code``: Python source; HumanEval prompts are used verbatim, other prompts become a docstring.
    * anything else (``tiny``, real Hugging Face pairs): the text unchanged.
    """
    if pair_name == "gsm8k":
        return gsm8k_prompt_text(prompt.text)
    if pair_name == "code":
        if prompt.category in ("humaneval", "code"):
            return prompt.text
        body = prompt.text.strip().replace('"""', "'''")
        return f'"""{body}"""\n'
    return prompt.text
