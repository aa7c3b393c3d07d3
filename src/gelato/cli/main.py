"""Entry point of the ``gelato`` command."""

from __future__ import annotations

import typer

from gelato.cli.api_cmd import api
from gelato.cli.bench_cmd import app as bench_app
from gelato.cli.cluster_cmd import app as cluster_app
from gelato.cli.demo_cmd import demo
from gelato.cli.device_cmd import device
from gelato.cli.generate_cmd import generate
from gelato.cli.link_cmd import link
from gelato.cli.map_cmd import drafting_map_cmd
from gelato.cli.models_cmd import app as models_app
from gelato.cli.paper_cmd import app as paper_app
from gelato.cli.policies_cmd import policies
from gelato.cli.run_cmd import run, trace_app
from gelato.cli.serve_cmd import serve
from gelato.cli.system_cmd import app as system_app
from gelato.cli.testbed_cmd import testbed

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True, add_completion=False,
                  help="gelato: device-edge speculative decoding with energy-aware draft-length control.")


def _print_version(value: bool) -> None:
    if value:
        from gelato import __version__

        typer.echo(f"gelato {__version__}")
        raise typer.Exit()


@app.callback()
def main(threads: int = typer.Option(
        1, "--threads", envvar="GELATO_THREADS", min=1,
        help="torch CPU threads (env GELATO_THREADS). 1 is best for these small models, and robust when other "
             "processes share the cores (multi-threaded matmuls slow down badly under contention)."),
         version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    import torch

    torch.set_num_threads(threads)

app.command()(demo)
app.command()(generate)
app.add_typer(models_app, name="models", help="Build and inspect the built-in model pairs.")
app.add_typer(system_app, name="system", help="The device-edge system model (channel, compute, energy).")
app.add_typer(bench_app, name="bench", help="Benchmarks that print figures.")
app.command()(run)
app.command()(policies)
app.add_typer(paper_app, name="paper", help="Reproduce the GELATO paper's figures (CSV + PNG + report).")
app.add_typer(trace_app, name="trace", help="Record greedy traces for exact replay.")
app.command()(serve)
app.command()(device)
app.command()(link)
app.command()(api)
app.command()(testbed)
app.command(name="map")(drafting_map_cmd)
app.add_typer(cluster_app, name="cluster", help="Many edge replicas behind one gRPC ingress (Ray Serve; extra .[cluster]).")

if __name__ == "__main__":
    app()
