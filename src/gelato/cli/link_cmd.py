"""``gelato link``: the link-shaping proxy between device and edge (airtime, fading, delay, loss)."""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

# C-core's own log lines (TLS handshake failures, reconnects) would bury the one clear error line.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import typer  # noqa: E402

from gelato.cli.common import fail, setup_logging  # noqa: E402


def link(
    listen: int = typer.Option(..., "--listen", min=0, max=65535, help="port the devices connect to (0: the OS picks)"),
    upstream: str = typer.Option(..., "--upstream", help="HOST:PORT of the edge"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    bandwidth_mhz: Optional[float] = typer.Option(1.0, "--bandwidth-mhz", help="channel bandwidth (rate from "
                                                  "path loss + Rayleigh fading + Shannon)"),
    downlink_bandwidth_mhz: Optional[float] = typer.Option(None, "--downlink-bandwidth-mhz"),
    distance_km: float = typer.Option(0.175, "--distance-km"),
    uplink_power_dbm: float = typer.Option(23.0, "--uplink-power-dbm"),
    downlink_power_dbm: float = typer.Option(30.0, "--downlink-power-dbm"),
    fading: str = typer.Option("rayleigh", "--fading", help="rayleigh or none"),
    uplink_kbps: Optional[float] = typer.Option(None, "--uplink-kbps", help="fixed uplink rate (overrides the "
                                                "channel model)"),
    downlink_kbps: Optional[float] = typer.Option(None, "--downlink-kbps"),
    delay_ms: float = typer.Option(0.0, "--delay-ms", help="one-way propagation delay"),
    loss: float = typer.Option(0.0, "--loss", help="probability a burst is lost (drops the connection)"),
    seed: int = typer.Option(0, "--seed", help="seeds fading and loss"),
    report_every: float = typer.Option(5.0, "--report-every", min=0.01, help="seconds between stats lines"),
    json_stats: bool = typer.Option(False, "--json-stats", help="stats lines as JSON objects (gelato testbed)"),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Emulate the wireless link: a TCP proxy that delays bytes by airtime (per-burst fading) and delay."""
    setup_logging(log_level)
    from gelato.link.proxy import LinkConfig, run_link

    fixed = uplink_kbps is not None and downlink_kbps is not None
    try:
        cfg = LinkConfig(bandwidth_mhz=None if fixed else bandwidth_mhz, downlink_bandwidth_mhz=downlink_bandwidth_mhz,
                         distance_km=distance_km, uplink_power_dbm=uplink_power_dbm,
                         downlink_power_dbm=downlink_power_dbm, fading=fading,
                         uplink_bps=None if uplink_kbps is None else uplink_kbps * 1e3,
                         downlink_bps=None if downlink_kbps is None else downlink_kbps * 1e3,
                         delay_s=delay_ms / 1e3, loss=loss, seed=seed)
    except ValueError as exc:
        fail(str(exc))

    def report(stats: dict) -> None:
        if json_stats:
            typer.echo(json.dumps(stats))
            sys.stdout.flush()
            return
        up, down = stats["up"], stats["down"]
        typer.echo(f"link: up {up['bytes']} B / {up['airtime_s'] * 1e3:.1f} ms airtime / {up['bursts']} bursts; "
                   f"down {down['bytes']} B / {down['airtime_s'] * 1e3:.1f} ms; connections {stats['connections']}, "
                   f"drops {stats['drops']}, last rate {stats['last_uplink_bps'] / 1e6:.2f}/"
                   f"{stats['last_downlink_bps'] / 1e6:.2f} Mbit/s")
        sys.stdout.flush()

    def started(port: int) -> None:  # printed only once the port is bound
        typer.echo(f"link listening on {host}:{port} -> {upstream}")
        sys.stdout.flush()

    try:
        run_link(listen, upstream, cfg, host=host, report_every_s=report_every, report=report, on_started=started)
    except (OSError, ValueError) as exc:
        fail(f"link: {exc}")
