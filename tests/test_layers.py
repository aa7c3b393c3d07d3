"""The layers contract in pyproject.toml is the real import graph's floors, not a wish.

A package's floor is the length of the longest import chain below it (a package that imports no other gelato
package is on floor 0). The contract lists the floors top down, siblings on one floor joined by ``|``; so every
adjacent pair of layers has an import between them, and a package that stops importing its way up moves down.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def import_graph() -> dict[str, set[str]]:
    """Top-level package -> the top-level packages it imports (function-level imports included)."""
    graph = grimp.build_graph("gelato", include_external_packages=False)
    packages = {m.split(".")[1] for m in graph.modules if m.count(".") >= 1} - {"zoo_data"}
    return {a: {b for b in packages - {a}
                if graph.direct_import_exists(importer=f"gelato.{a}", imported=f"gelato.{b}", as_packages=True)}
            for a in packages}


def floors(graph: dict[str, set[str]]) -> list[set[str]]:
    """The packages by floor, highest first."""
    @functools.cache
    def height(package: str) -> int:
        return 1 + max((height(b) for b in graph[package]), default=-1)

    by_floor: dict[int, set[str]] = {}
    for package in graph:
        by_floor.setdefault(height(package), set()).add(package)
    return [by_floor[k] for k in sorted(by_floor, reverse=True)]


def contract_layers() -> list[set[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    return [{name.strip() for name in layer.split("|")} for layer in config["layers"]]


def test_the_contract_is_the_real_floors():
    real = floors(import_graph())
    assert contract_layers() == real, "pyproject's layers should read: " + ", ".join(
        '"' + " | ".join(sorted(f)) + '"' for f in real)


def test_floors_of_a_small_graph():
    graph = {"cli": {"api", "models"}, "api": {"models"}, "link": set(), "models": set()}
    assert floors(graph) == [{"cli"}, {"api"}, {"link", "models"}]
