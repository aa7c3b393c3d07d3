"""Options and loading shared by CLI commands."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:  # the module stays torch-free at import: `gelato link` is light
    from gelato.decoding.sampling import SamplingParams


def resolve_pair_dirs(draft: Path | None, target: Path | None) -> tuple[Path, Path]:
    """Explicit --draft/--target, or the default pair when both are omitted (fetching its target on first use).

    A missing shipped pair or a failed fetch is one ``error:`` line and exit code 2.
    """
    from gelato.models.fetch import FetchError
    from gelato.models.pairs import PairArgumentError, ZooPairMissingError
    from gelato.models.pairs import resolve_pair_dirs as resolve

    try:
        return resolve(draft, target)
    except PairArgumentError as exc:
        raise typer.BadParameter(str(exc)) from None
    except (FetchError, ZooPairMissingError) as exc:
        fail(str(exc))


def encode_or_fail(tokenizer, prompt: str, raw: bool = False, system: str | None = None) -> list[int]:
    """Prompt ids through the chat template (see :func:`gelato.models.chat.encode_prompt`), or an error line."""
    from gelato.models.chat import encode_prompt

    try:
        return encode_prompt(tokenizer, prompt, raw=raw, system=system)
    except ValueError as exc:
        fail(str(exc))


def sampling_params(temperature: float, top_k: int, top_p: float) -> "SamplingParams":
    from gelato.decoding.sampling import SamplingParams

    try:
        return SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def make_policy_or_fail(name: str, draft_length: int | None = None, measured: bool = False):
    """The registry's policy ``name`` (:func:`gelato.policies.registry.make_policy`); where it plans, it plans
    with the paper's modelled device and link, or (``measured``: a live run over an edge) with a
    :class:`~gelato.system.measured.MeasuredPlanner` fitted from the run's own rounds (the paper's system its
    prior). A bad name or draft length is one ``error:`` line."""
    from gelato.policies.registry import make_policy
    from gelato.system.config import SystemConfig
    from gelato.system.measured import MeasuredPlanner

    clock = SystemConfig.paper().build_clock()
    try:
        return make_policy(name, predictor=MeasuredPlanner(clock) if measured else clock, draft_length=draft_length)
    except (TypeError, ValueError) as exc:
        fail(str(exc))


def check_port_free(host: str, port: int) -> None:
    """One ``error:`` line now if ``host:port`` cannot be bound, before any model loads (port 0 always can)."""
    import socket

    if port == 0:
        return
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is no conflict
            s.bind((host, port))
    except OSError as exc:
        fail(f"could not bind {host}:{port}: {exc.strerror or exc}")


def fail(message: str) -> None:
    """One clear ``error:`` line and exit status 2."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
               "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


def parse_bytes(text: str, option: str) -> int:
    """``"2GiB"``, ``"512MiB"``, ``"1.5G"``, ``"800000000"`` -> bytes (> 0); else one BadParameter line."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text or "")
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS or float(match.group(1)) * _SIZE_UNITS[unit] < 1:
        raise typer.BadParameter(f"{option} takes a size such as 4GiB, 512MiB or 2G, not {text!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def resolve_fingerprint(value: str | None) -> str | None:
    """``synthetic:N`` -> the fingerprint of N anonymous ids (models without a tokenizer); else as given."""
    if value and value.startswith("synthetic:"):
        from gelato.wire.fingerprint import synthetic_fingerprint
        n = value.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"--fingerprint {value!r}: synthetic:N needs a vocabulary size N >= 1")
        return synthetic_fingerprint(int(n))
    return value


def parse_prompt_ids(text: str) -> list[int]:
    """``"1,2,3"`` -> [1, 2, 3]; ValueError naming the bad entry."""
    ids = []
    for i, part in enumerate(x for x in text.replace(" ", "").split(",") if x):
        if not part.isdigit():
            raise ValueError(f"--prompt-ids entry {i} is {part!r}: give comma-separated token ids >= 0")
        ids.append(int(part))
    return ids
