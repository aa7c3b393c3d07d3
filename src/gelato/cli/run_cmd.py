"""``gelato run`` (one configuration in the modelled clock) and ``gelato trace record``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from gelato.cli.common import fail, resolve_pair_dirs
from gelato.decoding.payload_modes import PayloadMode, choices_help

trace_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True)


def run(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML file with RunConfig fields.")] = None,
    source: Annotated[Optional[str], typer.Option(help="synthetic | trace | live")] = None,
    trace: Annotated[Optional[Path], typer.Option(help="Trace file for --source trace.")] = None,
    policy: Annotated[Optional[str], typer.Option(help="Policy name (see `gelato policies`).")] = None,
    rounds: Annotated[Optional[int], typer.Option(help="Rounds to run (default 1000).")] = None,
    bandwidth_mhz: Annotated[Optional[float], typer.Option(help="Uplink bandwidth, MHz.")] = None,
    t_verify_ms: Annotated[Optional[float], typer.Option(help="Verification time (paper system), ms.")] = None,
    system: Annotated[Optional[str], typer.Option(help="paper | generic")] = None,
    payload: Annotated[Optional[str], typer.Option(help=f"{choices_help()} (default: the policy's own, "
                                                        "else compact, as `gelato demo`; a --config file's "
                                                        "default is RunConfig's)")] = None,
    framing: Annotated[Optional[str], typer.Option(help="none | grpc: also charge each message's measured "
                                                        "gRPC framing (40 bytes) on the link")] = None,
    e_bar: Annotated[Optional[float], typer.Option(help="Device energy budget per round, J.")] = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output directory (default runs/<name>).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run one configuration in the modelled clock; write per-round JSONL and a summary."""
    from pydantic import ValidationError
    from rich.console import Console
    from rich.progress import Progress

    from gelato.experiments.config import RunConfig
    from gelato.experiments.execute import execute

    overrides = dict(source=source, trace=trace, policy=policy, rounds=rounds, bandwidth_mhz=bandwidth_mhz,
                     t_verify_ms=t_verify_ms, system=system, payload=payload, framing=framing, e_bar=e_bar, seed=seed,
                     out=out)
    try:
        cfg = RunConfig.from_yaml(config, **overrides) if config else RunConfig(
            **{k: v for k, v in overrides.items() if v is not None})
    except (ValidationError, ValueError, FileNotFoundError) as exc:
        fail(f"invalid run configuration: {exc}")
    from gelato.policies.registry import policy_spec
    try:
        own_payload = policy_spec(cfg.policy).payload_mode
    except ValueError as exc:
        fail(str(exc))
    if config is None and payload is None and own_payload is None:  # the same uplink as `gelato demo`
        cfg = cfg.model_copy(update={"payload": PayloadMode.COMPACT})
    console = Console(stderr=True)
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"{cfg.policy}", total=cfg.rounds)
            result = execute(cfg, on_round=lambda r: progress.advance(task))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        fail(str(exc))
    s = result.summary
    if as_json:
        typer.echo(json.dumps(s, indent=2, default=str))
        return
    from rich.table import Table

    table = Table(title=f"{cfg.name}: {cfg.policy}, {cfg.source}, {cfg.system} system, {cfg.bandwidth_mhz} MHz, "
                        f"{cfg.payload_mode().value} payload")
    table.add_column("metric")
    table.add_column("value", justify="right")
    split = s["joules_per_token_split"]
    for label, value in [("rounds", f"{s['rounds']}"), ("tokens", f"{s['tokens']}"),
                         ("tokens/s (modelled)", f"{s['tokens_per_second']:.2f}"),
                         ("J/token", f"{s['joules_per_token']:.4f}"),
                         ("  draft / uplink / downlink / idle",
                          " / ".join(f"{split[k]:.4f}" for k in ("draft", "uplink", "downlink", "idle"))),
                         ("mean acceptance length", f"{s['mean_acceptance_length']:.2f}"),
                         ("draft acceptance rate", f"{s['draft_acceptance_rate']:.3f}"),
                         ("uplink bytes/token", f"{s['uplink_bytes_per_token']:.1f}"),
                         ("downlink bytes/token", f"{s['downlink_bytes_per_token']:.1f}"),
                         ("mean energy per round / budget", f"{s['mean_round_energy']:.3f} / {s['e_bar']:.3f} J"),
                         ("energy constraint met", str(s["energy_constraint_met"]))]:
        table.add_row(label, value)
    Console().print(table)
    out_dir = cfg.out or Path("runs") / cfg.name
    console.print(f"wrote {out_dir}/{cfg.policy}.rounds.jsonl and {cfg.policy}.summary.json")


@trace_app.command("record")
def record(
    out: Annotated[Path, typer.Option(help="Trace file to write (.npz).")],
    pair: Annotated[str, typer.Option(help="Prompt format / built-in pair name.")] = "gsm8k",
    draft: Annotated[Optional[Path], typer.Option()] = None,
    target: Annotated[Optional[Path], typer.Option()] = None,
    workload: Annotated[str, typer.Option(help="gsm8k | spec-bench | humaneval")] = "gsm8k",
    prompts: Annotated[int, typer.Option(min=1)] = 12,
    k_max: Annotated[int, typer.Option("--k-max", min=1)] = 15,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 256,
    data_dir: Annotated[Optional[Path], typer.Option()] = None,
) -> None:
    """Record a greedy trace (draft rollouts + target continuation per position) for exact replay."""
    from rich.progress import track

    from gelato.experiments.config import RunConfig
    from gelato.experiments.execute import load_prompt_ids
    from gelato.experiments.trace_fast import record_trace_fast as record_trace
    from gelato.models import load_pair, shared_vocab_size

    draft_dir, target_dir = resolve_pair_dirs(draft, target)
    try:
        d, t, tok = load_pair(draft_dir, target_dir)
        cfg = RunConfig(source="live", pair=pair, workload=workload, prompts=prompts, data_dir=data_dir)
        prompt_ids = load_prompt_ids(cfg, tok)
    except Exception as exc:  # noqa: BLE001 - loader messages name the problem
        fail(str(exc))
    bar = iter(track(range(len(prompt_ids)), description="recording", transient=True))
    trace = record_trace(d, t, prompt_ids, k_max, max_new_tokens, tok.eos_token_id,
                         header={"pair": pair, "draft": str(draft_dir), "target": str(target_dir),
                                 "workload": workload},
                         vocab_size=shared_vocab_size(d, t), progress=lambda: next(bar, None))
    path = trace.save(out)
    typer.echo(f"wrote {path}: {len(trace.prompts)} prompts, "
               f"{sum(p.length for p in trace.prompts)} target tokens, k_max {k_max}")
