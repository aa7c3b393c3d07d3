"""``gelato demo``: the main job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gelato.cli.common import fail, resolve_pair_dirs


def demo(
    prompts: Annotated[int, typer.Option(min=1, help="GSM8K test questions.")] = 2,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 96,
    bandwidth_mhz: Annotated[float, typer.Option(help="Uplink bandwidth, MHz.")] = 1.0,
    t_verify_ms: Annotated[float, typer.Option(help="Edge verification time, ms.")] = 100.0,
    e_bar: Annotated[float, typer.Option(help="Device energy budget per round, J.")] = 1.2,
    draft: Annotated[Optional[str], typer.Option(help="Draft directory or hub id (default: the default pair).")] = None,
    target: Annotated[Optional[str], typer.Option(help="Target directory or hub id.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Directory with gsm8k_test.jsonl.")] = None,
    out: Annotated[Path, typer.Option(help="Where the CSV, JSONL and figure go.")] = Path("runs/demo"),
    seed: int = 0,
    payload: Annotated[str, typer.Option(help="Uplink of the policies without their own: compact (token ids, "
                                               "what gelato sends under greedy) or paper_topp (the paper's "
                                               "top-p probabilities).")] = "compact",
) -> None:
    """GELATO vs static SD vs edge-only decoding on the default pair, with the paper's system model.

    One greedy generation is recorded as a trace and every policy is replayed from it (exact under
    greedy); two policies also run live and must produce the same tokens."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from gelato.experiments.demo import DEMO_POLICIES, run_demo
    from gelato.experiments.workloads import load_gsm8k
    from gelato.models import load_pair, shared_vocab_size
    from gelato.models.chat import decode_text, demo_prompt_ids

    console = Console()
    if payload not in ("compact", "paper_topp"):
        fail(f"--payload must be compact or paper_topp, got {payload!r}")
    draft_dir, target_dir = resolve_pair_dirs(draft, target)
    try:
        d, t, tok = load_pair(draft_dir, target_dir)
        questions = load_gsm8k("test", data_dir, prompts)
        prompt_ids = [(q.id, demo_prompt_ids(tok, q.text)) for q in questions]
    except Exception as exc:  # noqa: BLE001 - loader messages name the problem
        fail(str(exc))
    console.print(f"[bold]gelato demo[/]: target {Path(str(target_dir)).name} (draft {sum(p.numel() for p in d.parameters())/1e6:.1f}M, "
                  f"target {sum(p.numel() for p in t.parameters())/1e6:.1f}M params), {len(prompt_ids)} GSM8K "
                  f"questions x {max_new_tokens} tokens, paper system model at {bandwidth_mhz:g} MHz, "
                  f"T_V {t_verify_ms:g} ms, E_bar {e_bar:g} J/round, {payload} uplink")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} steps"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("", total=None)

        def start(name: str) -> None:
            progress.reset(task, description=f"running {name}")

        outcome = run_demo(d, t, tok, prompt_ids, out, DEMO_POLICIES, bandwidth_mhz, t_verify_ms, e_bar,
                           max_new_tokens, seed, shared_vocab_size(d, t),
                           on_round=lambda r: progress.advance(task), on_policy=start, payload=payload)
    first = outcome.results[DEMO_POLICIES[0]]
    answer = decode_text(tok, first.texts[0][1])
    console.print(Panel(f"{questions[0].text}\n\n[green]{answer}[/]", title="first question and the target's "
                        "answer (identical for every policy)", expand=False))
    table = Table(title="modelled device-edge decoding (paper system model)")
    for col in ("policy", "tok/s", "J/tok", "accept len", "E/round J", "E<=E_bar", "up B/tok"):
        table.add_column(col, justify="left" if col == "policy" else "right", no_wrap=col == "policy")
    for name, r in outcome.results.items():
        s = r.summary
        table.add_row(name, f"{s['tokens_per_second']:.2f}", f"{s['joules_per_token']:.3f}",
                      f"{s['mean_acceptance_length']:.2f}", f"{s['mean_round_energy']:.3f}",
                      "yes" if s["energy_constraint_met"] else "no", f"{s['uplink_bytes_per_token']:.0f}")
    console.print(table)
    console.print(f"lossless check ({' and '.join(outcome.live_checked)} run live on the models produced exactly "
                  f"the target's tokens): {'[green]passed[/]' if outcome.lossless else '[red]FAILED[/]'}; "
                  f"live rounds equal the replayed ones: {'yes' if outcome.replay_matches_live else 'no'}")
    console.print(f"figure: {outcome.figure}   table: {outcome.table_csv}   per-round logs: {out}/*.rounds.jsonl   "
                  f"trace: {out}/demo.trace.npz")
    if not outcome.lossless:
        raise typer.Exit(code=1)
