"""Options and loading shared by CLI commands."""

from __future__ import annotations

from pathlib import Path

import typer

from gelato.decoding.sampling import SamplingParams


def resolve_pair_dirs(draft: Path | None, target: Path | None) -> tuple[Path, Path]:
    """Explicit --draft/--target, or the shipped default pair when both are omitted."""
    if (draft is None) != (target is None):
        raise typer.BadParameter("give both --draft and --target, or neither to use the built-in gsm8k pair")
    if draft is not None:
        return draft, target
    from gelato.models.zoo import default_pair_dirs

    return default_pair_dirs()


def sampling_params(temperature: float, top_k: int, top_p: float) -> SamplingParams:
    try:
        return SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)
