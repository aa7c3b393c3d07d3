"""Options and loading shared by CLI commands."""

from __future__ import annotations

from pathlib import Path

import typer

from gelato.decoding.sampling import SamplingParams


def resolve_pair_dirs(draft: Path | None, target: Path | None) -> tuple[Path, Path]:
    """Explicit --draft/--target, or the default pair when both are omitted (fetching its target on first use).

    A missing shipped pair or a failed fetch is one ``error:`` line and exit code 2.
    """
    from gelato.models.fetch import FetchError
    from gelato.models.pairs import PairArgumentError, ZooPairMissingError, resolve_pair_dirs as resolve

    try:
        return resolve(draft, target)
    except PairArgumentError as exc:
        raise typer.BadParameter(str(exc)) from None
    except (FetchError, ZooPairMissingError) as exc:
        fail(str(exc))


def encode_or_fail(tokenizer, prompt: str, raw: bool = False, system: str | None = None) -> list[int]:
    """Prompt ids through the chat template (see :func:`gelato.models.chat.encode_prompt`), or an error line."""
    from gelato.models.chat import encode_prompt

    try:
        return encode_prompt(tokenizer, prompt, raw=raw, system=system)
    except ValueError as exc:
        fail(str(exc))


def sampling_params(temperature: float, top_k: int, top_p: float) -> SamplingParams:
    try:
        return SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
               "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


def parse_bytes(text: str, option: str) -> int:
    """``"2GiB"``, ``"512MiB"``, ``"1.5G"``, ``"800000000"`` -> bytes (> 0); else one BadParameter line."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text or "")
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS or float(match.group(1)) * _SIZE_UNITS[unit] < 1:
        raise typer.BadParameter(f"{option} takes a size such as 4GiB, 512MiB or 2G, not {text!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])
