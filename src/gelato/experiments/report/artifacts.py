"""Load and store the paper reproduction's artifacts: CSV files, ``meta_<src>.json``, ``fig2.json``.

Artifacts of one source (``synthetic``, ``trace-paper``, ``trace-own-pair``) in one directory:

- ``fig5ab_<src>.csv`` / ``fig5cd_<src>.csv``: median, min, max across seeds per (point, variant);
  ``..._seeds.csv``: one row per run; ``..._gains.csv``: GELATO's gain over every baseline per point;
  ``.png``: the figure; ``.md``: the report section.
- ``fig4_<src>.csv`` (per-round budget and queue, first seed), ``fig4_<src>_seeds.csv``, ``.png``, ``.md``.
- ``improved_vs_paper_<src>.csv``; ``meta_<src>.json`` (what ran, when, how long).
- ``fig2.csv`` (binned acceptance per fit), ``fig2.json`` (the fits), ``fig2.png``, ``fig2.md``.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gelato.experiments.acceptance import AcceptanceFit
from gelato.experiments.paper import SWEEPS, PaperSource
from gelato.experiments.sweep import read_csv

REPORT_NAME = "paper-reproduction.md"
ARTIFACT_DIR = "paper-reproduction"


def stamp() -> dict:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip()
    except Exception:  # noqa: BLE001 - git may be missing
        rev = ""
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "git": rev}


def update_meta(out: Path, source: PaperSource, **fields: Any) -> None:
    path = out / f"meta_{source.key}.json"
    meta = json.loads(path.read_text()) if path.exists() else {}
    meta.update({"source": source.key, "description": source.describe(), **stamp()})
    if source.trace is not None:
        meta["trace"] = str(source.trace_path) if source.trace_path else None
        meta["pair"] = source.trace.header.get("pair")
        meta["draft"] = str(source.draft_dir or source.trace.header.get("draft"))
    for k, v in fields.items():
        if k == "command":
            meta["command"] = v
        else:
            meta.setdefault("runs", {})[k] = v
    path.write_text(json.dumps(meta, indent=2, default=str))


def repo_root() -> str | None:
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip()
    except Exception:  # noqa: BLE001 - git may be missing
        return None
    return top or None


def load_fits(out: str | Path) -> list[AcceptanceFit]:
    """The acceptance fits of ``fig2.json`` with their bins from ``fig2.csv`` (empty when fig2 was not run)."""
    path = Path(out) / "fig2.json"
    if not path.exists():
        return []
    bins = read_csv(Path(out) / "fig2.csv") if (Path(out) / "fig2.csv").exists() else []
    fits = []
    for f in json.loads(path.read_text()):
        f.pop("h_th", None)
        fits.append(AcceptanceFit(**f, bins=[{k: b[k] for k in ("h_lo", "h_mean", "acceptance", "count")}
                                             for b in bins if b["fit"] == f["name"]]))
    return fits


def _read_if_exists(path: Path) -> list[dict]:
    return read_csv(path) if path.exists() else []


@dataclass
class SourceArtifacts:
    """What an artifact directory holds for one source key (whatever exists), as read from disk."""

    key: str
    meta: dict = field(default_factory=dict)
    summary: dict[str, list[dict]] = field(default_factory=dict)  # sweep name -> medians across seeds
    seeds: dict[str, list[dict] | None] = field(default_factory=dict)  # sweep name -> one row per run
    fig4_traj: list[dict] = field(default_factory=list)
    fig4_seeds: list[dict] = field(default_factory=list)

    @staticmethod
    def load(adir: str | Path, key: str) -> "SourceArtifacts":
        adir = Path(adir)
        meta_path = adir / f"meta_{key}.json"
        art = SourceArtifacts(key, json.loads(meta_path.read_text()) if meta_path.exists() else {})
        for name in SWEEPS:
            stem = adir / f"{name}_{key}"
            if Path(f"{stem}.csv").exists():
                art.summary[name] = read_csv(f"{stem}.csv")
                art.seeds[name] = read_csv(f"{stem}_seeds.csv") if Path(f"{stem}_seeds.csv").exists() else None
        art.fig4_traj = _read_if_exists(adir / f"fig4_{key}.csv")
        art.fig4_seeds = _read_if_exists(adir / f"fig4_{key}_seeds.csv")
        return art
