"""Built-in model pairs trained by the project (no downloads).

``gelato models build --pair gsm8k|code|tiny`` trains a byte-level BPE tokenizer, a Llama-style target and
a draft distilled from it, and writes standard Hugging Face directories plus ``report.json``. The gsm8k
pair ships with the package (``gelato/zoo_data/gsm8k``); :func:`default_pair_dirs` points to it.
"""

from __future__ import annotations

from pathlib import Path

from gelato.models.zoo.specs import PAIRS, ModelShape, PairSpec, get_spec

DEFAULT_PAIR = "gsm8k"
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


class ZooPairMissingError(FileNotFoundError):
    """The shipped pair's files are not in the installed package."""


def zoo_data_dir() -> Path:
    """``gelato/zoo_data`` inside the installed package."""
    return Path(__file__).resolve().parents[2] / "zoo_data"


def shipped_pairs() -> list[str]:
    d = zoo_data_dir()
    return sorted(p.name for p in d.iterdir() if (p / "target" / "config.json").is_file()) if d.is_dir() else []


def pair_dirs(name: str = DEFAULT_PAIR) -> tuple[Path, Path]:
    """(draft_dir, target_dir) of a pair shipped in the package; :class:`ZooPairMissingError` if absent."""
    base = zoo_data_dir() / name
    missing = [str(base / role / f) for role in ("draft", "target") for f in _REQUIRED
               if not (base / role / f).is_file()]
    if missing:
        raise ZooPairMissingError(
            f"the built-in {name!r} pair is not installed: missing {', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''}. Rebuild it with `gelato models build --pair {name} "
            f"--out {base}` (see BUILD.md there) or pass --draft/--target directories of another pair")
    return base / "draft", base / "target"


def default_pair_dirs() -> tuple[Path, Path]:
    """(draft_dir, target_dir) of the shipped default pair (gsm8k)."""
    return pair_dirs(DEFAULT_PAIR)


def build_pair(*args, **kwargs):
    """See :func:`gelato.models.zoo.build.build_pair` (imported lazily: training pulls in tqdm/tokenizers)."""
    from gelato.models.zoo.build import build_pair as _build

    return _build(*args, **kwargs)


__all__ = ["DEFAULT_PAIR", "PAIRS", "ModelShape", "PairSpec", "ZooPairMissingError", "build_pair",
           "default_pair_dirs", "get_spec", "pair_dirs", "shipped_pairs", "zoo_data_dir"]
