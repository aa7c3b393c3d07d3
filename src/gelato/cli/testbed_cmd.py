"""``gelato testbed``: edge, link emulator and device as separate pinned processes; measured vs modelled."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from gelato.cli.common import fail
from gelato.constants import E_BAR_J
from gelato.testbed.run import FLEET_POLICIES


def testbed(
    preset: Optional[str] = typer.Option("lte", "--preset", help="link preset: paper, 5mhz, lte, wifi"),
    uplink_mbps: Optional[float] = typer.Option(None, "--uplink-mbps", help="fixed uplink rate (replaces the preset's)"),
    downlink_mbps: Optional[float] = typer.Option(None, "--downlink-mbps"),
    rtt_ms: Optional[float] = typer.Option(None, "--rtt-ms", help="round-trip propagation delay"),
    bandwidth_mhz: Optional[float] = typer.Option(None, "--bandwidth-mhz", help="channel-model bandwidth instead"),
    policies: Optional[str] = typer.Option(None, "--policies", help="comma-separated registry names (default: "
                                           "edge-only, static-3/5/7, dssd, gelato-paper, gelato-improved, the "
                                           "pipelined ones; planning ones plan with measured costs)"),
    workload: str = typer.Option("mixed", "--workload", help="mixed, chat, gsm8k or spec-bench"),
    prompts: int = typer.Option(3, "--prompts"),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens"),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy"),
    top_k: int = typer.Option(0, "--top-k"),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: int = typer.Option(0, "--seed"),
    e_bar: float = typer.Option(E_BAR_J, "--e-bar", help="device energy budget per round, J"),
    power: str = typer.Option("snapdragon-8-gen-3-phone", "--power-profile",
                              help="snapdragon-8-gen-3-phone, jetson-orin-nano-8gb-15w or paper-table-1"),
    edge: Optional[str] = typer.Option(None, "--edge", help="HOST:PORT of a running edge (default: start one)"),
    edge_cores: Optional[str] = typer.Option(None, "--edge-cores", help="e.g. 0 or 0-7 (default: first half)"),
    device_cores: Optional[str] = typer.Option(None, "--device-cores", help="default: the other half"),
    draft_dir: Optional[Path] = typer.Option(None, "--draft"),
    target_dir: Optional[Path] = typer.Option(None, "--target"),
    devices: Optional[str] = typer.Option(None, "--devices", help="also run N devices at once on one edge for each "
                                          "N listed, e.g. 1,2,4 (the fleet table; modelled up to 64)"),
    fleet_policies: str = typer.Option(",".join(FLEET_POLICIES), "--fleet-policies",
                                       help="policies of the fleet runs"),
    payload: Optional[str] = typer.Option(None, "--payload", help="what drafting policies without their own payload "
                                          "send: draws (the default), compact or paper_topp"),
    draft_top_k: Optional[int] = typer.Option(None, "--draft-top-k", min=0, help="with --payload compact: the top k "
                                              "of q the device samples and sends (0: the whole q; default 24)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write NAME.json, NAME.md and NAME.png here"),
) -> None:
    """Run the real edge, link and device as pinned processes; measured vs modelled per policy."""
    from gelato.policies.registry import policy_spec
    from gelato.testbed.presets import link_preset, power_profile
    from gelato.testbed.run import (
        DEFAULT_POLICIES,
        TestbedConfig,
        TestbedError,
        run_testbed,
        split_cores,
        workload_prompts,
    )

    try:
        link = link_preset(preset, uplink_mbps=uplink_mbps, downlink_mbps=downlink_mbps, rtt_ms=rtt_ms,
                           bandwidth_mhz=bandwidth_mhz)
        power_profile(power)
        from gelato.decoding.sampling import SamplingParams
        SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
        if max_new_tokens < 1 or e_bar <= 0:
            raise ValueError(f"--max-new-tokens must be >= 1 and --e-bar > 0, got {max_new_tokens} and {e_bar}")
        names = [p.strip() for p in policies.split(",") if p.strip()] if policies else list(DEFAULT_POLICIES)
        fleet_names = [p.strip() for p in fleet_policies.split(",") if p.strip()]
        for name in [*names, *fleet_names]:
            policy_spec(name)
        fleet_sizes = _devices(devices) if devices else []
        if payload is not None:
            from gelato.decoding.payload_modes import payload_mode
            payload_mode(payload)
        default_edge, default_device = split_cores()
        e_cores = _cores(edge_cores) if edge_cores else default_edge
        d_cores = _cores(device_cores) if device_cores else default_device
        if set(e_cores) & set(d_cores):
            raise ValueError(f"edge cores {e_cores} and device cores {d_cores} overlap")
    except (ValueError, TestbedError) as exc:
        fail(str(exc))
    from gelato.cli.common import resolve_pair_dirs
    from gelato.models.chat import stop_token_id
    from gelato.models.loading import ModelLoadError, load_tokenizer
    from gelato.wire.fingerprint import tokenizer_fingerprint

    draft, target = resolve_pair_dirs(draft_dir, target_dir) if edge is None or draft_dir is None else (draft_dir, None)
    try:
        tokenizer = load_tokenizer(draft)
        chosen = workload_prompts(tokenizer, workload, prompts)
    except (ModelLoadError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    cfg = TestbedConfig(link=link, draft_dir=Path(draft), target_dir=None if edge else Path(target), policies=names,
                        workload=workload, prompts=prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                        top_k=top_k, top_p=top_p, seed=seed, e_bar=e_bar, power_profile=power, edge=edge,
                        edge_cores=e_cores, device_cores=d_cores, devices=fleet_sizes, fleet_policies=fleet_names,
                        payload=payload, draft_top_k=draft_top_k)
    with _Progress(len(names)) as progress:
        try:
            result = run_testbed(cfg, chosen, tokenizer_fingerprint(tokenizer), stop_token_id(tokenizer),
                                 on_event=progress.event)
        except TestbedError as exc:
            fail(str(exc))
    if out is not None:
        from gelato.testbed.report import write_report
        written = write_report(result, out, f"testbed-{link.name}")
        typer.echo(f"wrote {', '.join(map(str, written))}", err=True)
    if json_out:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        from gelato.testbed.report import markdown_table
        typer.echo(markdown_table(result))


def _devices(text: str) -> list[int]:
    sizes = [part.strip() for part in text.split(",") if part.strip()]
    if not sizes or not all(s.isdigit() and 1 <= int(s) <= 64 for s in sizes):
        raise ValueError(f"--devices {text!r} is not a list of device counts 1-64 like 1,2,4")
    return sorted({int(s) for s in sizes})


def _cores(text: str) -> list[int]:
    cores: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if not lo.strip().isdigit() or (hi and not hi.strip().isdigit()):
            raise ValueError(f"cores {text!r} are not a list like 0,2 or 0-3")
        cores.extend(range(int(lo), int(hi or lo) + 1))
    return cores


class _Progress:
    """A rich progress bar over the policies on a terminal; plain lines on stderr when piped."""

    def __init__(self, total: int) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.total = total
        self.bar = None

    def __enter__(self) -> "_Progress":
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                console=self.console)
            self.bar.start()
            self.task = self.bar.add_task("testbed: starting edge and device", total=self.total)
        return self

    def event(self, kind: str, data: dict) -> None:
        if kind == "ready":
            line = f"testbed: edge {data['edge']} and device ready in {data['startup_s']:.0f} s"
        elif kind == "fleet":
            f = data["figures"]
            line = (f"testbed: fleet {data['name']} x {data['devices']} devices: {f['per_device_tokens_per_second']:.1f} "
                    f"tok/s per device, {f['edge_tokens_per_second']:.1f} at the edge, "
                    f"{f['forwards_per_token']:.2f} forwards/token")
        else:
            raw = data["raw"]
            tokens = sum(len(p["token_ids"]) for p in raw.get("prompts", []))
            wall = sum(p["generate_s"] for p in raw.get("prompts", []))
            line = (f"testbed: policy {data['index'] + 1}/{data['total']} {data['name']}: "
                    + (f"error {raw['error']}" if "error" in raw else
                       f"{tokens} tokens, {tokens / wall if wall else 0:.1f} tok/s measured"))
        if self.bar is not None:
            self.bar.update(self.task, description=line, advance=1 if kind == "policy" else 0)
        else:
            print(line, file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
