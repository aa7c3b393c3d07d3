"""Where model pairs live: the pairs shipped in the package and the default pair.

The built-in pairs are trained by :mod:`gelato.zoo` and shipped under ``gelato/zoo_data/<name>``.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_PAIR = "gsm8k"
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


class ZooPairMissingError(FileNotFoundError):
    """The shipped pair's files are not in the installed package."""


def zoo_data_dir() -> Path:
    """``gelato/zoo_data`` inside the installed package."""
    return Path(__file__).resolve().parents[1] / "zoo_data"


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


class PairArgumentError(ValueError):
    """--draft and --target were not given together."""


def resolve_pair_dirs(draft: Path | None, target: Path | None) -> tuple[Path, Path]:
    """Explicit draft/target directories, or the default pair when both are omitted."""
    if (draft is None) != (target is None):
        raise PairArgumentError("give both --draft and --target, or neither to use the default pair")
    if draft is not None:
        return draft, target
    return default_pair_dirs()
