"""Options and loading shared by CLI commands."""

from __future__ import annotations

from pathlib import Path

import typer

from gelato.decoding.sampling import SamplingParams


def resolve_pair_dirs(draft: Path | None, target: Path | None) -> tuple[Path, Path]:
    """Explicit --draft/--target, or the default pair when both are omitted (a CLI error otherwise)."""
    from gelato.models.pairs import PairArgumentError, resolve_pair_dirs as resolve

    try:
        return resolve(draft, target)
    except PairArgumentError as exc:
        raise typer.BadParameter(str(exc)) from None


def sampling_params(temperature: float, top_k: int, top_p: float) -> SamplingParams:
    try:
        return SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)
