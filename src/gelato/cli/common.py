"""Options and loading shared by CLI commands."""

from __future__ import annotations

import logging
import os
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

    for option, path in (("--draft", draft), ("--target", target)):  # a wrong path first, by its own name
        if path is not None:
            check_model_dir(path, option)
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


def check_port_free(host: str, port: int, option: str | None = None) -> None:
    """One ``error:`` line now if ``host:port`` cannot be bound, before any model loads (port 0 always can);
    ``option`` names the flag that chose the port."""
    import socket

    if port == 0:
        return
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is no conflict
            s.bind((host, port))
    except OSError as exc:
        fail(f"{option + ' ' if option else ''}could not bind {host}:{port}: {exc.strerror or exc}")


def check_model_dir(path, option: str) -> None:
    """One ``error:`` line naming ``option`` when ``path`` is neither a directory nor a hub id (owner/name)."""
    from gelato.models.loading import is_hub_id

    if path is not None and not Path(path).is_dir() and not is_hub_id(path):
        fail(f"{option}: model directory not found: {path}" if not Path(path).exists()
             else f"{option}: not a model directory: {path}")


def check_device(device: str, dtype: str | None = None) -> None:
    """One ``error:`` line now for a device this machine lacks (``cuda`` without CUDA), or a bad device or
    ``--dtype`` name: the checks :func:`gelato.models.loading.load_causal_lm` would make after seconds."""
    from gelato.models.loading import resolve_device, resolve_dtype

    try:
        resolve_device(device)
    except (ValueError, RuntimeError) as exc:
        fail(f"--device {device}: {str(exc).splitlines()[0] if str(exc) else exc}")
    if dtype is not None:
        try:
            resolve_dtype(dtype)
        except ValueError as exc:
            fail(f"--dtype: {exc}")


def check_prompt_text(prompt: str | None, raw: bool = False, system: str | None = None) -> None:
    """The prompt checks that need no tokenizer (:func:`gelato.models.chat.encode_prompt` makes them again)."""
    if prompt is not None and (not prompt.strip() or (system and raw)):
        encode_or_fail(None, prompt, raw=raw, system=system)  # fails before touching the tokenizer


def read_pem_or_fail(path: Path | None, option: str) -> bytes | None:
    """The PEM file of ``option`` (None without one); one ``error:`` line if it is missing or not PEM."""
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"{option} {path}: {exc.strerror or exc}")
    if b"-----BEGIN " not in data:
        fail(f"{option} {path}: not a PEM file for TLS (no '-----BEGIN' line)")
    return data


def check_kv_memory(kv_bytes: int | None, device: str) -> None:
    """One ``error:`` line when a KV budget is larger than the memory of the device the cache lives on."""
    if kv_bytes is None:
        return
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        total, where = torch.cuda.get_device_properties(index).total_memory, f"GPU {index}"
    else:
        total, where = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine"
    if kv_bytes > total:
        fail(f"--kv-memory {kv_bytes / 2**30:.1f} GiB is more than the {total / 2**30:.1f} GiB of {where}")


def context_window(model_dir) -> int | None:
    """The model's context length from its config.json (None when it has none or it is not a local dir)."""
    import json

    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return None
    value = config.get("max_position_embeddings") or config.get("n_positions")
    return int(value) if isinstance(value, int) and value > 0 else None


def check_max_new_tokens(max_new_tokens: int, model_dir, option: str = "--max-new-tokens") -> None:
    """One ``error:`` line when more new tokens are asked for than the model's context holds."""
    window = context_window(model_dir)
    if window is not None and max_new_tokens >= window:
        fail(f"{option} {max_new_tokens} does not fit the model's context of {window} tokens (prompt included)")


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
