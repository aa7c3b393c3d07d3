"""``gelato demo``: the main job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gelato.cli.common import fail, resolve_pair_dirs


def demo(
    prompts: Annotated[int, typer.Option(min=1, help="GSM8K test questions.")] = 4,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 128,
    bandwidth_mhz: Annotated[float, typer.Option(help="Uplink bandwidth, MHz.")] = 1.0,
    t_verify_ms: Annotated[float, typer.Option(help="Edge verification time, ms.")] = 100.0,
    e_bar: Annotated[float, typer.Option(help="Device energy budget per round, J.")] = 1.2,
    draft: Annotated[Optional[Path], typer.Option()] = None,
    target: Annotated[Optional[Path], typer.Option()] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Directory with gsm8k_test.jsonl.")] = None,
    out: Annotated[Path, typer.Option(help="Where the CSV, JSONL and figure go.")] = Path("runs/demo"),
    seed: int = 0,
) -> None:
    """GELATO vs static SD vs edge-only decoding on the built-in pair, with the paper's system model."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from gelato.experiments.config import RunConfig
    from gelato.experiments.demo import DEMO_POLICIES, run_demo
    from gelato.experiments.execute import load_prompt_ids
    from gelato.models import load_pair, shared_vocab_size

    console = Console()
    draft_dir, target_dir = resolve_pair_dirs(draft, target)
    try:
        d, t, tok = load_pair(draft_dir, target_dir)
        prompt_ids = load_prompt_ids(RunConfig(source="live", prompts=prompts, data_dir=data_dir), tok)
    except Exception as exc:  # noqa: BLE001 - loader messages name the problem
        fail(str(exc))
    console.print(f"[bold]gelato demo[/]: pair {target_dir.parent.name} (draft {sum(p.numel() for p in d.parameters())/1e6:.1f}M, "
                  f"target {sum(p.numel() for p in t.parameters())/1e6:.1f}M params), {len(prompt_ids)} GSM8K "
                  f"questions x {max_new_tokens} tokens, paper system model at {bandwidth_mhz:g} MHz, "
                  f"T_V {t_verify_ms:g} ms, E_bar {e_bar:g} J/round")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} rounds"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("", total=None)

        def start(name: str) -> None:
            progress.reset(task, description=f"running {name}")

        outcome = run_demo(d, t, tok, prompt_ids, out, DEMO_POLICIES, bandwidth_mhz, t_verify_ms, e_bar,
                           max_new_tokens, seed, shared_vocab_size(d, t),
                           on_round=lambda r: progress.advance(task), on_policy=start)
    first = outcome.results[DEMO_POLICIES[0]]
    question = tok.decode(prompt_ids[0][1], skip_special_tokens=True)
    answer = tok.decode(first.texts[0][1], skip_special_tokens=True)
    console.print(Panel(f"{question}[green]{answer}[/]", title="first prompt and the generated answer "
                        "(identical for every policy)", expand=False))
    table = Table(title="modelled device-edge decoding (paper system model)")
    for col in ("policy", "tok/s", "J/tok", "accept len", "E/round J", "E<=E_bar", "up B/tok"):
        table.add_column(col, justify="left" if col == "policy" else "right", no_wrap=col == "policy")
    for name, r in outcome.results.items():
        s = r.summary
        table.add_row(name, f"{s['tokens_per_second']:.2f}", f"{s['joules_per_token']:.3f}",
                      f"{s['mean_acceptance_length']:.2f}", f"{s['mean_round_energy']:.3f}",
                      "yes" if s["energy_constraint_met"] else "no", f"{s['uplink_bytes_per_token']:.0f}")
    console.print(table)
    console.print(f"lossless check (all policies produced the same tokens): "
                  f"{'[green]passed[/]' if outcome.lossless else '[red]FAILED[/]'}")
    console.print(f"figure: {outcome.figure}   table: {outcome.table_csv}   per-round logs: {out}/*.rounds.jsonl")
    if not outcome.lossless:
        raise typer.Exit(code=1)
