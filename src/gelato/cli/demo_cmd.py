"""``gelato demo``: the main job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gelato.cli.common import fail, resolve_pair_dirs
from gelato.constants import E_BAR_J
from gelato.decoding.payload_modes import PayloadMode, payload_mode

# what `gelato demo` may send up: the greedy ids or the paper's top-p payload (dssd is the dssd policy's own)
DEMO_PAYLOADS = (PayloadMode.COMPACT.value, PayloadMode.PAPER_TOPP.value)


def demo(
    prompts: Annotated[int, typer.Option(min=1, help="GSM8K test questions.")] = 2,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 96,
    bandwidth_mhz: Annotated[float, typer.Option(help="Uplink bandwidth, MHz.")] = 1.0,
    t_verify_ms: Annotated[float, typer.Option(help="Edge verification time, ms.")] = 100.0,
    e_bar: Annotated[float, typer.Option(help="Device energy budget per round, J.")] = E_BAR_J,
    draft: Annotated[Optional[str], typer.Option(help="Draft directory or hub id (default: the default pair).")] = None,
    target: Annotated[Optional[str], typer.Option(help="Target directory or hub id.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Directory with gsm8k_test.jsonl.")] = None,
    out: Annotated[Path, typer.Option(help="Where the CSV, JSONL and figure go.")] = Path("runs/demo"),
    seed: int = 0,
    payload: Annotated[str, typer.Option(help="Uplink of the policies without their own: compact (token ids, "
                                               "what gelato sends under greedy) or paper_topp (the paper's "
                                               "top-p probabilities).")] = PayloadMode.COMPACT.value,
    device_profile: Annotated[str, typer.Option(help="What the simulated phone is charged for drafting: "
                                                "phone-own-draft (the paper's phone running this draft) or paper "
                                                "(the paper's Qwen2.5-0.5B draft).")] = "phone-own-draft",
    measured: Annotated[bool, typer.Option(help="Also run one chat prompt through the real edge, link (lte) and "
                                                "device programs: gelato-improved against edge-streaming, wall "
                                                "clock (about a minute).")] = True,
) -> None:
    """GELATO vs fixed draft lengths vs no drafting on the default pair, with the paper's system model.

    One greedy generation is recorded as a trace and every policy is replayed from it (exact under
    greedy); two policies also run live and must produce the same tokens."""
    import sys
    import time

    from rich.console import Console
    from rich.panel import Panel
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from gelato.data.workloads import load_gsm8k
    from gelato.experiments.demo import DEMO_POLICIES, DEVICE_PROFILES, LIVE_CHECK_POLICIES, conclusion, run_demo
    from gelato.models import load_pair, shared_vocab_size
    from gelato.models.chat import decode_text, demo_prompt_ids
    from gelato.system.presets import PAPER

    console = Console(width=None if sys.stdout.isatty() else 120)  # piped: lines wide enough for the table
    try:
        payload = payload_mode(payload, DEMO_PAYLOADS)
    except ValueError as exc:
        fail(str(exc))
    if device_profile not in DEVICE_PROFILES:
        fail(f"--device-profile must be {' or '.join(DEVICE_PROFILES)}, got {device_profile!r}")
    draft_dir, target_dir = resolve_pair_dirs(draft, target)
    try:
        d, t, tok = load_pair(draft_dir, target_dir)
        questions = load_gsm8k("test", data_dir, prompts)
        prompt_ids = [(q.id, demo_prompt_ids(tok, q.text)) for q in questions]
    except Exception as exc:  # noqa: BLE001 - loader messages name the problem
        fail(str(exc))
    n_draft, n_target = (sum(p.numel() for p in m.parameters()) / 1e6 for m in (d, t))
    uplink = "token ids only" if payload is PayloadMode.COMPACT else "the paper's top-p probabilities"
    console.print(f"[bold]gelato demo[/]: {len(prompt_ids)} GSM8K questions x up to {max_new_tokens} tokens; a "
                  f"{n_draft:.1f}M-parameter draft on a phone proposes tokens, the {n_target:.0f}M target "
                  f"({Path(str(target_dir)).name}) on an edge server checks them.\n"
                  f"[bold]real[/] (measured): every token, from the real draft and target; the sizes of the real "
                  f"uplink messages ({uplink}).\n"
                  f"[bold]simulated[/] (modelled): the phone ({DEVICE_PROFILES[device_profile]}: "
                  f"{PAPER.flops_per_s / 1e9:.0f} GFLOP/s at {PAPER.compute_w:g} W), a {bandwidth_mhz:g} MHz "
                  f"radio uplink with fading, an edge that takes {t_verify_ms:g} ms per check, and a phone energy "
                  f"budget of {e_bar:g} J per round that GELATO keeps to.")
    stages = ["greedy trace (one generation)"] + [f"{n} (replay)" for n in DEMO_POLICIES] + \
             [f"{n} (live, lossless check)" for n in LIVE_CHECK_POLICIES]
    done = {"i": 0, "t": time.perf_counter()}
    piped = not console.is_terminal
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=piped) as progress:
        task = progress.add_task("starting", total=len(stages))

        def start(name: str) -> None:
            if done["i"]:
                progress.advance(task)
            done["i"] += 1
            progress.update(task, description=f"[{done['i']}/{len(stages)}] {name}")
            if piped:
                console.print(f"[{done['i']}/{len(stages)}] {name} ... ({time.perf_counter() - done['t']:.0f} s "
                              "so far)", highlight=False)

        outcome = run_demo(d, t, tok, prompt_ids, out, DEMO_POLICIES, bandwidth_mhz, t_verify_ms, e_bar,
                           max_new_tokens, seed, shared_vocab_size(d, t), on_policy=start, payload=payload,
                           device_profile=device_profile)
    first = outcome.results[DEMO_POLICIES[0]]
    answer = decode_text(tok, first.texts[0][1])
    console.print(Panel(f"{questions[0].text}\n\n[green]{answer}[/]", title="the first question and the target's own answer",
                        subtitle="every policy produces exactly this text (a 135M target can get sums wrong)",
                        expand=False))
    table = Table(title="one row per drafting policy (same text for all; time and energy simulated)")
    columns = {"policy": "policy", "tokens/s": "tokens/s", "J/token": "phone J/token",
               "tokens/round": "tokens/round", "J/round": "phone J/round", "budget": "within budget",
               "uplink": "uplink B/token"}
    for col in columns.values():
        table.add_column(col, justify="left" if col == "policy" else "right", no_wrap=col == "policy")
    for name, r in outcome.results.items():
        s = r.summary
        table.add_row(name, f"{s['tokens_per_second']:.2f}", f"{s['joules_per_token']:.3f}",
                      f"{s['mean_acceptance_length']:.2f}", f"{s['mean_round_energy']:.3f}",
                      "yes" if s["energy_constraint_met"] else "no", f"{s['uplink_bytes_per_token']:.0f}")
    console.print(table)
    console.print("[dim]policy: gelato-* pick each round's draft length (GELATO: an energy queue plus the draft's "
                  "confidence); static-K always drafts K tokens; dssd drafts 7 and gets the target's distribution "
                  "back at a rejection; edge-autoregressive drafts nothing, the edge generates every token.\n"
                  "tokens/s (modelled): answer tokens per simulated second. phone J/token, phone J/round "
                  "(modelled): simulated phone energy for drafting and sending. tokens/round (measured): tokens "
                  "each check commits, from the real models. within budget: mean phone J/round <= "
                  f"{e_bar:g} J. uplink B/token: bytes of the real messages per answer token.[/]")
    console.print(f"[bold]conclusion[/]: {conclusion(outcome.results, e_bar)}")
    console.print(f"lossless check ({' and '.join(outcome.live_checked)} run live on the models produced exactly "
                  f"the target's tokens): {'[green]passed[/]' if outcome.lossless else '[red]FAILED[/]'}; "
                  f"live rounds equal the replayed ones: {'yes' if outcome.replay_matches_live else 'no'}")
    console.print(f"figure: {outcome.figure}   table: {outcome.table_csv}   per-round logs: {out}/*.rounds.jsonl   "
                  f"trace: {out}/demo.trace.npz")
    if measured:
        console.print(measured_line(Path(str(draft_dir)), Path(str(target_dir))), highlight=False)
    if not outcome.lossless:
        raise typer.Exit(code=1)


def measured_line(draft_dir: Path, target_dir: Path, max_new_tokens: int = 48) -> str:
    """One measured line: a chat prompt through the real edge, link and device processes on the lte link,
    gelato-improved against the edge streaming its own answer, wall clock (the testbed's run)."""
    from gelato.models.chat import stop_token_id
    from gelato.models.loading import load_tokenizer
    from gelato.testbed.presets import link_preset
    from gelato.testbed.run import TestbedConfig, TestbedError, run_testbed, split_cores, workload_prompts
    from gelato.wire.fingerprint import tokenizer_fingerprint

    names = ("edge-streaming", "gelato-improved")
    try:
        edge_cores, device_cores = split_cores()
        tok = load_tokenizer(draft_dir)
        cfg = TestbedConfig(link=link_preset("lte"), draft_dir=draft_dir, target_dir=target_dir, policies=names,
                            workload="chat", prompts=1, max_new_tokens=max_new_tokens, edge_cores=edge_cores,
                            device_cores=device_cores)
        result = run_testbed(cfg, workload_prompts(tok, "chat", 1), tokenizer_fingerprint(tok), stop_token_id(tok))
    except TestbedError as exc:
        return f"measured: skipped ({exc})"
    pols = result["policies"]
    if any("measured" not in pols[n] for n in names):
        return f"measured: failed ({'; '.join(str(pols[n].get('error')) for n in names if 'error' in pols[n])})"
    rate = {n: pols[n]["measured"]["tokens_per_second"] for n in names}
    same = pols["gelato-improved"].get("same_output_as_reference")
    return (f"measured (the real edge, link and device programs on their own cores, lte link: 10 Mbit/s, 50 ms round "
            f"trip; one chat prompt, wall clock): gelato-improved {rate['gelato-improved']:.1f} tok/s, "
            f"edge-streaming {rate['edge-streaming']:.1f} tok/s: {rate['gelato-improved'] / rate['edge-streaming']:.2f}x"
            f" the edge streaming its own answer; same text: {'yes' if same else 'no'}")
