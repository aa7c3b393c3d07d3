"""Load any Hugging Face causal LM and its tokenizer: a local directory (offline), or a hub id.

A local directory is read with ``local_files_only=True``: nothing reaches a hub. A string that is not an
existing path and looks like ``owner/name`` is a Hugging Face hub id, loaded through the hub's own cache
(it needs the network the first time; nothing in gelato requires it).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from gelato.models.output_subset import apply_output_subset, read_output_tokens

hf_logging.disable_progress_bar()  # "Loading weights" bars on every load; gelato shows its own progress
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


class ModelLoadError(RuntimeError):
    """A model or tokenizer directory is missing or unusable."""


class VocabularyMismatchError(ValueError):
    """Draft and target do not share a vocabulary; the message names what differs."""


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(_DTYPES)}") from None


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    return torch.device(device)


def is_hub_id(path: str | Path) -> bool:
    """``owner/name`` that is not an existing local path."""
    return not Path(path).exists() and bool(_HUB_ID.match(str(path)))


def _check_dir(path: str | Path, what: str) -> Path | str:
    if is_hub_id(path):
        return str(path)
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{what} directory not found: {path}")
    if not path.is_dir():
        raise ModelLoadError(f"{what} path is not a directory: {path}")
    if not (path / "config.json").exists() and what.endswith("model"):
        raise ModelLoadError(f"{what} directory {path} has no config.json (expected a Hugging Face model directory)")
    return path


def load_causal_lm(path: str | Path, dtype: str | torch.dtype = "float32", device: str = "cpu") -> torch.nn.Module:
    """``AutoModelForCausalLM.from_pretrained`` on a local directory, in eval mode."""
    path = _check_dir(path, "model")
    local = isinstance(path, Path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype), local_files_only=local)
    except Exception as exc:  # transformers raises many types; keep the path in the message
        where = "" if local else " (a hub id: is the machine online?)"
        raise ModelLoadError(f"could not load a causal LM from {path}{where}: {_first_line(exc)}") from exc
    subset = read_output_tokens(path) if local else None
    if subset is not None:
        apply_output_subset(model, subset)
    return model.to(resolve_device(device)).eval()


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    path = _check_dir(path, "tokenizer")
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=isinstance(path, Path))
    except Exception as exc:
        raise ModelLoadError(f"could not load a tokenizer from {path}: {_first_line(exc)}") from exc


def check_same_vocabulary(draft_tok, target_tok, draft_vocab_size: int | None = None,
                          target_vocab_size: int | None = None, max_listed: int = 5) -> None:
    """Raise :class:`VocabularyMismatchError` unless draft and target map the same strings to the same ids.

    The model embedding sizes may differ only by padding rows beyond the tokenizer's vocabulary, as
    public pairs (e.g. Qwen2.5 0.5B and 7B) do; ids the tokenizer can produce must agree.
    """
    dv, tv = draft_tok.get_vocab(), target_tok.get_vocab()
    problems = []
    if len(dv) != len(tv):
        problems.append(f"tokenizer sizes differ: draft {len(dv)} vs target {len(tv)}")
    differing = sorted(
        ((tok, dv.get(tok), tv.get(tok)) for tok in set(dv) | set(tv) if dv.get(tok) != tv.get(tok)),
        key=lambda t: min(i for i in t[1:] if i is not None),
    )
    if differing:
        listed = ", ".join(f"{tok!r}: draft id {d} vs target id {t}" for tok, d, t in differing[:max_listed])
        more = f" (and {len(differing) - max_listed} more)" if len(differing) > max_listed else ""
        problems.append(f"{len(differing)} tokens map to different ids: {listed}{more}")
    vocab_ids = max(max(dv.values(), default=-1), max(tv.values(), default=-1)) + 1
    for name, size in (("draft", draft_vocab_size), ("target", target_vocab_size)):
        if size is not None and size < vocab_ids:
            problems.append(f"{name} model has {size} output rows but the tokenizer uses ids up to {vocab_ids - 1}")
    if draft_tok.eos_token_id != target_tok.eos_token_id:
        problems.append(f"eos ids differ: draft {draft_tok.eos_token_id} vs target {target_tok.eos_token_id}")
    if problems:
        raise VocabularyMismatchError("draft and target vocabularies differ: " + "; ".join(problems))


def load_pair(draft_dir: str | Path, target_dir: str | Path, dtype: str = "float32", device: str = "cpu"):
    """Load (draft, target, tokenizer) and check that the pair shares a vocabulary."""
    draft_tok, target_tok = load_tokenizer(draft_dir), load_tokenizer(target_dir)
    check_same_vocabulary(draft_tok, target_tok)  # before the (slow) model loads
    draft = load_causal_lm(draft_dir, dtype, device)
    target = load_causal_lm(target_dir, dtype, device)
    check_same_vocabulary(draft_tok, target_tok, draft.config.vocab_size, target.config.vocab_size)
    return draft, target, target_tok


def shared_vocab_size(draft: torch.nn.Module, target: torch.nn.Module) -> int:
    """Width of the distributions p and q: output rows beyond the smaller model's are padding."""
    return min(int(draft.config.vocab_size), int(target.config.vocab_size))
