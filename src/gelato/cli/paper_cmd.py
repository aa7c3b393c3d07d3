"""``gelato paper ...``: reproduce the GELATO paper's figures and write the report.

Each preset writes CSV + PNG + a markdown section into ``--out``; ``all`` runs every preset into
``OUT/paper-reproduction/`` and writes ``OUT/paper-reproduction.md`` (assembled from every source whose
artifacts are there, so ``all --source synthetic`` and ``all --source trace --trace FILE`` add up).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from gelato.cli.common import fail
from gelato.constants import E_BAR_J, G_MAX, V

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True, add_completion=False,
                  help="Reproduce the GELATO paper's figures (fig2, fig4, fig5ab, fig5cd) and write the report.")

SourceOpt = Annotated[str, typer.Option("--source", help="synthetic (the paper's regime) | trace (a recorded pair)")]
TraceOpt = Annotated[Optional[Path], typer.Option("--trace", help="Greedy trace (.npz) from `gelato trace record "
                                                  f"--k-max {G_MAX}`; needed for --source trace and fig2.")]
ChargingOpt = Annotated[str, typer.Option("--charging", help="trace only: paper (the paper's system) | own-pair "
                                          "(the pair's own draft FLOPs and vocabulary)")]
DraftOpt = Annotated[Optional[Path], typer.Option("--draft", help="Draft model dir for own-pair charging "
                                                  "(default: the one named in the trace header)")]
SeedsOpt = Annotated[int, typer.Option("--seeds", min=1, help="Seeds per point (0..N-1); medians are reported.")]
RoundsOpt = Annotated[int, typer.Option("--rounds", min=1, help="Rounds per run.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output directory.")]
EBarOpt = Annotated[float, typer.Option("--e-bar", min=0.001, help=f"Energy budget per round, J (the paper's {E_BAR_J:g}).")]
VOpt = Annotated[float, typer.Option("--v", help="V of gelato-paper and its ablations.")]
ExtraOpt = Annotated[bool, typer.Option("--extra/--no-extra", help="Also run every other registered baseline.")]


def _command() -> str:
    return "gelato paper " + " ".join(shlex.quote(a) for a in sys.argv[1:][sys.argv[1:].index("paper") + 1:]) \
        if "paper" in sys.argv[1:] else "gelato paper " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _source(source: str, trace: Path | None, charging: str = "paper", draft: Path | None = None):
    from gelato.experiments.paper import PaperSource

    if source not in ("synthetic", "trace"):
        fail(f"--source must be synthetic or trace, got {source!r}")
    if charging not in ("paper", "own-pair"):
        fail(f"--charging must be paper or own-pair, got {charging!r}")
    if source == "trace" and trace is None:
        fail(f"--source trace needs --trace FILE (record one: gelato trace record --out FILE --k-max {G_MAX})")
    try:
        return PaperSource(kind=source, charging=charging if source == "trace" else "paper",
                           trace_path=trace if source == "trace" else None, draft_dir=draft)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))


class _Bar:
    """A rich progress bar over a known number of runs."""

    def __init__(self, total: int, title: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                 transient=True)
        self.total = total
        self.title = title

    def __enter__(self) -> "_Bar":
        self.progress.start()
        self.task = self.progress.add_task(self.title, total=self.total)
        return self

    def __call__(self, what: str) -> None:
        self.progress.update(self.task, advance=1, description=f"{self.title}: {what}")

    def __exit__(self, *exc) -> None:
        self.progress.stop()


def _echo_paths(paths: dict) -> None:
    for p in paths.values():
        typer.echo(f"wrote {p}")


def _run_sweep(name: str, src, seeds: int, rounds: int, out: Path, e_bar: float, v: float, extra: bool,
               img_prefix: str = "") -> dict:
    from gelato.experiments.paper import SWEEPS, calibrated_paper_variant, default_variants
    from gelato.experiments.report import fig2_fits, produce_sweep

    variants = default_variants(v, extra)
    if src.kind == "trace":
        fit = fig2_fits(src, synthetic_samples=10)[0]
        variants.insert(1, calibrated_paper_variant(fit.mean_acceptance, fit.c, v))
    sweep = SWEEPS[name]
    total = len(sweep.points) * len(variants) * seeds
    with _Bar(total, f"{name} {src.key}") as bar:
        return produce_sweep(out, sweep, src, variants, list(range(seeds)), rounds, e_bar, bar, img_prefix,
                             command=_command())


def _sweep_command(name: str):
    def command(source: SourceOpt = "synthetic", trace: TraceOpt = None, charging: ChargingOpt = "paper",
                draft: DraftOpt = None, seeds: SeedsOpt = 5, rounds: RoundsOpt = 1000,
                out: OutOpt = Path("runs/paper"), e_bar: EBarOpt = E_BAR_J, v: VOpt = V,
                extra: ExtraOpt = True) -> None:
        src = _source(source, trace, charging, draft)
        _echo_paths(_run_sweep(name, src, seeds, rounds, out, e_bar, v, extra))

    return command


app.command("fig5ab", help="Throughput and J/token against bandwidth {1, 2, 4, 7, 10} MHz at T_V = 100 ms, every "
            "policy; with the gains over every baseline.")(_sweep_command("fig5ab"))
app.command("fig5cd", help="Throughput and J/token against T_V {60, 80, 100, 120, 140} ms at 5 MHz, every policy; "
            "with the gains over every baseline.")(_sweep_command("fig5cd"))


@app.command("fig4")
def fig4(source: SourceOpt = "synthetic", trace: TraceOpt = None, charging: ChargingOpt = "paper",
         draft: DraftOpt = None, seeds: SeedsOpt = 5, rounds: RoundsOpt = 1000, out: OutOpt = Path("runs/paper"),
         e_bar: EBarOpt = E_BAR_J,
         bandwidth_mhz: Annotated[float, typer.Option(help="Uplink bandwidth, MHz (10: the queue moves).")] = 10.0,
         t_verify_ms: Annotated[float, typer.Option(help="Verification time, ms.")] = 100.0) -> None:
    """Chosen budget and queue Q over the rounds for gelato-paper at V = 10 and V = 100 (and gelato-improved)."""
    from gelato.experiments.paper import V_VALUES
    from gelato.experiments.report import produce_fig4
    from gelato.experiments.sweep import Point

    src = _source(source, trace, charging, draft)
    with _Bar((len(V_VALUES) + 1) * seeds, f"fig4 {src.key}") as bar:
        _echo_paths(produce_fig4(out, src, Point(bandwidth_mhz, t_verify_ms), list(range(seeds)), rounds, e_bar, bar,
                                 command=_command()))


@app.command("fig2")
def fig2(trace: TraceOpt = None, out: OutOpt = Path("runs/paper")) -> None:
    """Acceptance against entropy for a real pair (a trace) with its least-squares exp(-c H), and the synthetic phi."""
    from gelato.experiments.report import produce_fig2

    src = _source("trace", trace) if trace is not None else None
    _echo_paths(produce_fig2(out, src))


@app.command("report")
def report(out: OutOpt = Path("docs/results"), e_bar: EBarOpt = E_BAR_J,
           redraw: Annotated[bool, typer.Option("--replot/--no-replot", help="Also redraw the figures and "
                                                "section files from the CSVs.")] = False) -> None:
    """Rebuild OUT/paper-reproduction.md from the artifacts already in OUT/paper-reproduction/ (no runs)."""
    from gelato.experiments.report import ARTIFACT_DIR, replot, write_report

    if not (out / ARTIFACT_DIR).is_dir():
        fail(f"no artifacts in {out / ARTIFACT_DIR}; run `gelato paper all --out {out}` first")
    if redraw:
        for p in replot(out / ARTIFACT_DIR, e_bar):
            typer.echo(f"wrote {p}")
    typer.echo(f"wrote {write_report(out, e_bar)}")


@app.command("all")
def run_all(
    source: Annotated[Optional[str], typer.Option("--source", help="synthetic | trace | both (default: both when "
                                                  "--trace is given, else synthetic)")] = None,
    trace: TraceOpt = None,
    charging: Annotated[str, typer.Option("--charging", help="trace charging modes, comma separated")] =
    "paper,own-pair",
    draft: DraftOpt = None, seeds: SeedsOpt = 5, rounds: RoundsOpt = 1000, out: OutOpt = Path("docs/results"),
    e_bar: EBarOpt = E_BAR_J, v: VOpt = V, extra: ExtraOpt = True,
    fig4_bandwidth_mhz: Annotated[float, typer.Option(help="Fig. 4 bandwidth, MHz.")] = 10.0,
) -> None:
    """Every preset (fig4, fig5ab, fig5cd, fig2, gains, gelato-improved vs gelato-paper) and the report."""
    from gelato.experiments.paper import V_VALUES
    from gelato.experiments.report import ARTIFACT_DIR, produce_fig2, produce_fig4, write_report
    from gelato.experiments.sweep import Point

    source = source or ("both" if trace is not None else "synthetic")
    if source not in ("synthetic", "trace", "both"):
        fail(f"--source must be synthetic, trace or both, got {source!r}")
    sources = []
    if source in ("synthetic", "both"):
        sources.append(_source("synthetic", None))
    if source in ("trace", "both"):
        modes = [c.strip() for c in charging.split(",") if c.strip()]
        sources += [_source("trace", trace, c, draft) for c in modes]
    adir = out / ARTIFACT_DIR
    prefix = ""
    for src in sources:
        for name in ("fig5ab", "fig5cd"):
            _echo_paths({"md": _run_sweep(name, src, seeds, rounds, adir, e_bar, v, extra, prefix)["md"]})
        with _Bar((len(V_VALUES) + 1) * seeds, f"fig4 {src.key}") as bar:
            _echo_paths({"md": produce_fig4(adir, src, Point(fig4_bandwidth_mhz, 100.0), list(range(seeds)), rounds,
                                            e_bar, bar, command=_command())["md"]})
    trace_src = next((s for s in sources if s.kind == "trace"), None)
    if trace_src is not None or not (adir / "fig2.json").exists():
        _echo_paths({"md": produce_fig2(adir, trace_src)["md"]})
    typer.echo(f"wrote {write_report(out, e_bar)}")
