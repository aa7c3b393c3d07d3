"""``gelato models ...``: build the project's own draft/target pairs (mounted by ``gelato.cli.main``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Build and inspect the built-in model pairs (trained here, no downloads).",
                  no_args_is_help=True)


@app.callback()
def _models() -> None:
    """Built-in model pairs."""


@app.command()
def build(
    pair: str = typer.Option(..., "--pair", help="pair to build: gsm8k, code or tiny (micro pair for tests)"),
    out: Optional[Path] = typer.Option(None, "--out", help="output directory (default: ./models/<pair>)"),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="total training budget, split 70/30 between "
                                            "target and draft (default: the pair's own)"),
    seed: int = typer.Option(0, "--seed", help="seed for initialisation and batch order"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="directory with gsm8k_*.jsonl etc. "
                                            "(default: $GELATO_DATA_DIR, else ../shared/data)"),
    text_file: Optional[Path] = typer.Option(None, "--text-file", help="train on this UTF-8 text instead "
                                             "(blank-line separated documents)"),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads"),
    save_dtype: str = typer.Option("bf16", "--save-dtype", help="weights on disk: bf16, fp16 or fp32"),
    eval_prompts: Optional[int] = typer.Option(None, "--eval-prompts", help="held-out prompts for the report"),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="tokens per evaluation prompt"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
) -> None:
    """Train a tokenizer, a target and a distilled draft; evaluate; write report.json."""
    from gelato.experiments.workloads import DataFileNotFoundError
    from gelato.zoo.build import build_pair, command_line
    from gelato.zoo.specs import PAIRS

    if pair not in PAIRS:
        raise typer.BadParameter(f"unknown pair {pair!r}; choose one of {sorted(PAIRS)}", param_hint="--pair")
    out = out or Path("models") / pair
    try:
        build_pair(pair, out, minutes=minutes, seed=seed, data_dir=data_dir, text_file=text_file, threads=threads,
                   save_dtype=save_dtype, progress=progress, eval_prompts=eval_prompts,
                   max_new_tokens=max_new_tokens, command=command_line(), log=typer.echo)
    except (DataFileNotFoundError, FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command("list")
def list_pairs() -> None:
    """List the built-in pair specifications and which ones ship with the package."""
    from gelato.models.pairs import shipped_pairs, zoo_data_dir
    from gelato.zoo import PAIRS

    shipped = set(shipped_pairs())
    for name, spec in PAIRS.items():
        where = f"shipped in {zoo_data_dir() / name}" if name in shipped else "build with `gelato models build`"
        typer.echo(f"{name:6s} {spec.description} [{where}]")


if __name__ == "__main__":  # pragma: no cover
    app()
