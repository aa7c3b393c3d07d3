"""``gelato map``: where device drafting pays against the edge streaming its own answer (modelled, measured on top)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from gelato.cli.common import fail

DEFAULT_TRACE = Path("docs/results/smollm2-trace.npz")
DEFAULT_TESTBEDS = ("docs/results/testbed-lte.json", "docs/results/testbed-wifi.json")


def drafting_map_cmd(
    trace: Path = typer.Option(DEFAULT_TRACE, "--trace", help="a greedy trace of the pair (gelato trace record)"),
    testbed_json: Optional[list[Path]] = typer.Option(None, "--testbed", help="testbed JSON files whose measured "
                                                      "ratio is drawn on top (default: docs/results/testbed-*.json)"),
    devices: str = typer.Option("1,16", "--devices", help="devices per edge, one panel each"),
    saturation: Optional[float] = typer.Option(None, "--saturation-tokens", help="tokens at which an edge forward's "
                                               "time doubles (default: the first testbed's fitted edge profile; "
                                               "about 5 on one CPU core, hundreds on a GPU)"),
    link_mbps: float = typer.Option(10.0, "--link-mbps", help="fixed link rate each way"),
    rounds: int = typer.Option(150, "--rounds", help="rounds replayed per cell and policy"),
    out: Path = typer.Option(Path("docs/results"), "--out", help="writes NAME.{json,png} here"),
    name: str = typer.Option("drafting-map", "--name", help="the files' name"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON object on stdout"),
) -> None:
    """Draw gelato-improved's tok/s over edge-streaming's by link round trip and edge time per token."""
    from gelato.experiments.drafting_map import (
        DEVICES,
        EDGE_MS,
        RTT_MS,
        MapSetup,
        drafting_map,
        measured_points,
        plot_map,
        summary_lines,
    )
    from gelato.experiments.trace import Trace
    from gelato.system.compute import MeasuredProfile

    try:
        sizes = [int(x) for x in devices.split(",") if x.strip()] or list(DEVICES)
        if min(sizes) < 1 or rounds < 1 or link_mbps <= 0:
            raise ValueError(f"--devices, --rounds and --link-mbps must be positive, got {devices!r}, {rounds}, "
                             f"{link_mbps}")
        paths = [Path(p) for p in (testbed_json or DEFAULT_TESTBEDS) if Path(p).exists()]
        if not paths:
            raise ValueError("no testbed JSON found (run gelato testbed --out docs/results, or give --testbed)")
        first = json.loads(paths[0].read_text())
        v = first["verify_profile"]
        sat = saturation if saturation is not None else (v["a"] / v["b"] if v["b"] > 0 else 256.0)
        if not sat > 0:
            raise ValueError(f"--saturation-tokens must be > 0, got {sat}")
        loaded = Trace.load(trace)
    except (ValueError, OSError, KeyError) as exc:
        fail(f"gelato map: {exc}")
    setup = MapSetup(trace=loaded, draft_compute=MeasuredProfile.from_dict(first["draft_profile"]),
                     saturation_tokens=sat, link_mbps=link_mbps, rounds=rounds)
    total = len(sizes) * len(RTT_MS) * len(EDGE_MS)
    done = [0]

    def tick() -> None:
        done[0] += 1
        if done[0] % len(RTT_MS) == 0 or done[0] == total:
            print(f"map: {done[0]}/{total} cells", file=sys.stderr, flush=True)

    result = drafting_map(setup, devices=sizes, on_cell=tick)
    result["measured_points"] = points = measured_points(paths)
    result["draft_profile_from"] = str(paths[0])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    plot_map(result, points, out / f"{name}.png")
    for line in summary_lines(result):
        typer.echo(line, err=True)
    typer.echo(f"wrote {out / (name + '.json')}, {out / (name + '.png')}", err=True)
    if json_out:
        sys.stdout.write(json.dumps(result) + "\n")
