"""Training text and held-out evaluation prompts for each built-in pair.

A corpus is a list of documents; each document is a list of chunks whose concatenation is the document
text. Training windows start at chunk boundaries (for GSM8K one chunk per question, for Python source
one chunk per top-level definition), so a model sees text from the start of a unit as it will at
inference. Every document ends with the end-of-text token.
"""

from __future__ import annotations

import os
import random
import re
import sysconfig
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from gelato.data.workloads import Prompt, data_file, format_for_pair, gsm8k_document, gsm8k_prompt_text, load_gsm8k


@dataclass
class Corpus:
    name: str
    train: list[list[str]]  # documents as chunk lists
    val: list[list[str]]
    prompts: list[Prompt]  # held-out prompts; ``prompt_texts`` holds the formatted text
    prompt_texts: list[str]
    source: str  # where the text came from (for the report)
    meta: dict = field(default_factory=dict)

    @property
    def n_chars(self) -> int:
        return sum(len(c) for d in self.train for c in d)

    def tokenizer_texts(self):
        for d in self.train:
            yield "".join(d)


# ------------------------------------------------------------------------------------------ gsm8k

def gsm8k_corpus(data_dir=None, eval_prompts: int = 24, val_docs: int = 256) -> Corpus:
    train_path = data_file("gsm8k_train.jsonl", data_dir)
    data_file("gsm8k_test.jsonl", data_dir)
    train = [[gsm8k_document(p.text, p.reference or "")] for p in load_gsm8k("train", data_dir)]
    test = load_gsm8k("test", data_dir)
    # Validation text: the first ``val_docs`` test questions; evaluation prompts: the next ones.
    val = [[gsm8k_document(p.text, p.reference or "")] for p in test[:val_docs]]
    prompts = test[val_docs: val_docs + eval_prompts]
    return Corpus("gsm8k", train, val, prompts, [format_for_pair(p, "gsm8k") for p in prompts],
                  source=str(train_path.resolve()),
                  meta={"train_questions": len(train), "val_questions": len(val),
                        "eval_prompt_ids": [p.id for p in prompts]})


# ------------------------------------------------------------------------------------------- code

_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlesave", "__pycache__", "lib2to3",
              "turtledemo", "ensurepip", "idle_test", "config-3", "pydoc_data"}
# chunk starts: top-level and method-level definitions (and their decorators)
_TOP_LEVEL = re.compile(r"^(?:    )?(?:def |class |async def |@)|^if __name__", re.M)


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def python_files(root: Path, max_chars: int) -> list[tuple[str, str]]:
    files = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(("config-", "test")))
        for fn in sorted(filenames):
            if not fn.endswith(".py"):
                continue
            path = Path(dirpath) / fn
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if not text.strip() or len(text) > 400_000:
                continue
            files.append((str(path.relative_to(root)), text))
            total += len(text)
            if total >= max_chars:
                return files
    return files


def split_top_level(text: str) -> list[str]:
    """Chunks of a source file, each starting at a definition (first chunk: the header)."""
    cuts = [m.start() for m in _TOP_LEVEL.finditer(text)]
    # keep decorators with their definition: drop a cut whose previous line is a decorator
    starts = [0]
    for c in cuts:
        if c == 0:
            continue
        prev_line_start = text.rfind("\n", 0, c - 1) + 1
        if text[prev_line_start:c].lstrip().startswith("@"):
            continue
        starts.append(c)
    starts = sorted(set(starts))
    return [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)]) if text[a:b]]


def code_corpus(eval_prompts: int = 24, max_chars: int = 24_000_000, val_every: int = 40) -> Corpus:
    root = stdlib_dir()
    if not root.is_dir():
        raise FileNotFoundError(f"the Python standard library was not found at {root} "
                                "(sysconfig.get_paths()['stdlib']); the code pair trains on its source")
    files = python_files(root, max_chars)
    if not files:
        raise FileNotFoundError(f"no Python source files found under {root}")
    train, val, val_defs = [], [], []
    for rel, text in files:
        chunks = split_top_level(text)
        if zlib.crc32(rel.encode()) % val_every == 0:
            val.append(chunks)
            val_defs += [(rel, c) for c in chunks if c.startswith("def ")]
        else:
            train.append(chunks)
    rng = random.Random(0)
    rng.shuffle(val_defs)
    prompts = []
    for rel, chunk in val_defs:
        lines = chunk.splitlines(keepends=True)
        text = ""
        for line in lines:
            if len(text) + len(line) > 240 and text:
                break
            text += line
        if len(text) < 40:
            continue
        prompts.append(Prompt(id=f"stdlib-{rel}-{len(prompts)}", text=text, category="code"))
        if len(prompts) >= eval_prompts:
            break
    return Corpus("code", train, val, prompts, [format_for_pair(p, "code") for p in prompts],
                  source=str(root), meta={"train_files": len(train), "val_files": len(val)})


# ------------------------------------------------------------------------------------------- tiny

_NAMES = ["Tom", "Ann", "Lee", "Mia", "Sam", "Ivy", "Max", "Zoe"]
_ITEMS = ["apple", "pen", "book", "card", "shell", "coin"]


def _tiny_doc(rng: random.Random) -> tuple[str, str]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    a, b = rng.randint(2, 30), rng.randint(2, 30)
    kind = rng.randrange(3)
    if kind == 0:
        q = f"{name} has {a} {item}s and buys {b} more. How many {item}s does {name} have?"
        ans = f"{name} has {a} + {b} = {a + b} {item}s.\n#### {a + b}"
    elif kind == 1:
        a, b = max(a, b), min(a, b)
        q = f"{name} has {a} {item}s and gives away {b}. How many {item}s are left?"
        ans = f"{name} has {a} - {b} = {a - b} {item}s left.\n#### {a - b}"
    else:
        b = b % 9 + 2
        q = f"{name} has {b} bags with {a} {item}s each. How many {item}s are there?"
        ans = f"There are {b} * {a} = {a * b} {item}s.\n#### {a * b}"
    return q, ans


def tiny_corpus(n_train: int = 600, n_val: int = 40, eval_prompts: int = 4) -> Corpus:
    """A built-in synthetic arithmetic corpus in the gsm8k format (no files needed)."""
    rng = random.Random(1234)
    train = [[gsm8k_document(*_tiny_doc(rng))] for _ in range(n_train)]
    val_rng = random.Random(99)
    val = [[gsm8k_document(*_tiny_doc(val_rng))] for _ in range(n_val)]
    prompts = []
    for i in range(eval_prompts):
        q, ans = _tiny_doc(val_rng)
        prompts.append(Prompt(id=f"tiny-{i}", text=q, reference=ans, category="tiny"))
    return Corpus("tiny", train, val, prompts, [gsm8k_prompt_text(p.text) for p in prompts],
                  source="built-in synthetic arithmetic corpus")


# -------------------------------------------------------------------------------------- text file

def text_file_corpus(path: str | Path, eval_prompts: int = 8, pair_name: str | None = None) -> Corpus:
    """Any UTF-8 text: documents are blank-line separated paragraphs; the last 5% are held out."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training text file not found: {path}")
    paras = [p.strip() for p in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")) if p.strip()]
    if len(paras) < 4:
        raise ValueError(f"{path} has {len(paras)} paragraphs; at least 4 (blank-line separated) are needed")
    n_val = max(2, len(paras) // 20)
    train = [[p] for p in paras[:-n_val]]
    val = [[p] for p in paras[-n_val:]]
    prompts = []
    for i, p in enumerate(paras[-n_val:][:eval_prompts]):
        cut = p[: max(8, min(len(p) // 2, 120))]
        prompts.append(Prompt(id=f"text-{i}", text=cut, category="text"))
    return Corpus("text", train, val, prompts, [p.text for p in prompts], source=str(path.resolve()))


def load_corpus(pair: str, data_dir=None, text_file=None, eval_prompts: int = 24) -> Corpus:
    if text_file is not None:
        return text_file_corpus(text_file, eval_prompts, pair)
    if pair == "gsm8k":
        return gsm8k_corpus(data_dir, eval_prompts)
    if pair == "code":
        return code_corpus(eval_prompts)
    if pair == "tiny":
        return tiny_corpus(eval_prompts=eval_prompts)
    raise ValueError(f"no corpus for pair {pair!r}")
