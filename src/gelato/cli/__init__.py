"""The ``gelato`` command (typer)."""
