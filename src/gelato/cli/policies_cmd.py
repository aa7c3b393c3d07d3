"""``gelato policies``: the registered draft-length policies."""

from __future__ import annotations


def policies() -> None:
    """List every draft-length policy by name (use the names with gelato generate / device / api / run / paper)."""
    from rich.console import Console
    from rich.table import Table

    from gelato.policies.registry import POLICIES

    table = Table(title="draft-length policies")
    table.add_column("name", no_wrap=True)
    table.add_column("rule")
    table.add_column("needs a system model", justify="center")
    table.add_row("static-K", "static SD with any fixed K >= 1: static-1, static-4, static-12, ...", "")
    for name, spec in POLICIES.items():
        table.add_row(name, spec.summary, "yes" if spec.uses_predictor else "")
    console = Console()
    console.print(table)
    console.print("Any name above works with --policy of gelato generate, device, api and run; generate and api "
                  "also take -k / --num-draft-tokens, the largest draft per round (K of static-K, g_max of GELATO).",
                  markup=False, highlight=False)
