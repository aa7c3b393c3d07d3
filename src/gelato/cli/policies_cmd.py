"""``gelato policies``: the registered draft-length policies."""

from __future__ import annotations


def policies() -> None:
    """List every draft-length policy by name (use the names with gelato run / device / paper)."""
    from rich.console import Console
    from rich.table import Table

    from gelato.policies.registry import POLICIES

    table = Table(title="draft-length policies")
    table.add_column("name", no_wrap=True)
    table.add_column("rule")
    table.add_column("needs a system model", justify="center")
    for name, spec in POLICIES.items():
        table.add_row(name, spec.summary, "yes" if spec.uses_predictor else "")
    Console().print(table)
