"""Where model pairs live: the default pair (a real pretrained target), the fast test pair, the pair lookup.

- ``smollm2`` (the default): target SmolLM2-135M-Instruct, fetched once into ``$GELATO_HOME`` by
  :mod:`gelato.models.fetch`; draft distilled from it here and shipped under ``gelato/zoo_data/smollm2``.
- ``gsm8k`` (the fast test pair): a 7M target and its 0.8M draft, both trained here and shipped under
  ``gelato/zoo_data/gsm8k``; tests use it for speed.

``$GELATO_PAIR`` names the pair used when ``--draft``/``--target`` are omitted (default ``smollm2``).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PAIR = "smollm2"
FAST_PAIR = "gsm8k"
PAIR_ENV = "GELATO_PAIR"
FETCHED_TARGETS = {"smollm2": "smollm2"}  # pairs whose target is fetched into the cache, not shipped
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


class ZooPairMissingError(FileNotFoundError):
    """The shipped pair's files are not in the installed package."""


def zoo_data_dir() -> Path:
    """``gelato/zoo_data`` inside the installed package."""
    return Path(__file__).resolve().parents[1] / "zoo_data"


def shipped_pairs() -> list[str]:
    d = zoo_data_dir()
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir()
                  if (p / "draft" / "config.json").is_file()
                  and ((p / "target" / "config.json").is_file() or p.name in FETCHED_TARGETS))


def _missing(base: Path, roles: tuple[str, ...]) -> list[str]:
    return [str(base / role / f) for role in roles for f in _REQUIRED if not (base / role / f).is_file()]


def pair_dirs(name: str = DEFAULT_PAIR) -> tuple[Path, Path]:
    """(draft_dir, target_dir) of a named pair; the default pair's target is fetched on first use.

    Raises :class:`ZooPairMissingError` if shipped files are absent and
    :class:`gelato.models.fetch.FetchError` if the target cannot be fetched.
    """
    base = zoo_data_dir() / name
    fetched = name in FETCHED_TARGETS
    missing = _missing(base, ("draft",) if fetched else ("draft", "target"))
    if missing:
        raise ZooPairMissingError(
            f"the built-in {name!r} pair is not installed: missing {', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''}. Rebuild it with `gelato models build --pair {name} "
            f"--out {base}` (see BUILD.md there) or pass --draft/--target directories of another pair")
    if fetched:
        from gelato.models.fetch import ensure_smollm2

        return base / "draft", ensure_smollm2()
    return base / "draft", base / "target"


def default_pair_name() -> str:
    """``$GELATO_PAIR`` or ``smollm2``."""
    return os.environ.get(PAIR_ENV) or DEFAULT_PAIR


def default_pair_dirs() -> tuple[Path, Path]:
    """(draft_dir, target_dir) of the default pair (``$GELATO_PAIR``, else smollm2)."""
    return pair_dirs(default_pair_name())


def fast_pair_dirs() -> tuple[Path, Path]:
    """(draft_dir, target_dir) of the fast test pair (7M gsm8k target, shipped)."""
    return pair_dirs(FAST_PAIR)


class PairArgumentError(ValueError):
    """--draft and --target were not given together."""


def resolve_pair_dirs(draft: Path | str | None, target: Path | str | None) -> tuple[Path | str, Path | str]:
    """Explicit draft/target (directories or hub ids), or the default pair when both are omitted."""
    if (draft is None) != (target is None):
        raise PairArgumentError("give both --draft and --target, or neither to use the default pair")
    if draft is not None:
        return draft, target
    return default_pair_dirs()


def default_draft_dir() -> Path:
    """The default pair's draft directory (shipped; never fetches the target)."""
    name = default_pair_name()
    base = zoo_data_dir() / name
    missing = _missing(base, ("draft",))
    if missing:
        raise ZooPairMissingError(f"the built-in {name!r} pair's draft is not installed: missing {missing[0]}")
    return base / "draft"
