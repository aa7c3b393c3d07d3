"""``gelato api``: an OpenAI-compatible HTTP server answering by device-edge speculative decoding."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from gelato.cli.common import check_device, check_model_dir, check_port_free, fail, read_pem_or_fail, resolve_pair_dirs
from gelato.decoding.payload_modes import DEFAULT_PAYLOAD, choices_help, payload_mode
from gelato.policies.registry import DEFAULT_POLICY


def _read_keys(path: Path | None, keys: list[str]) -> frozenset[str]:
    found = set(k for k in keys if k)
    if path is not None:
        try:
            found |= {line.strip() for line in path.read_text().splitlines() if line.strip()
                      and not line.startswith("#")}
        except OSError as exc:
            fail(f"cannot read the API keys file {path}: {exc}")
    return frozenset(found)


def _check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        fail(f"--edge takes HOST:PORT of a `gelato serve` edge (port 1-65535), not {address!r}")


def api(
    port: Annotated[int, typer.Option(min=0, max=65535, help="HTTP port.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 for every interface).")] = "127.0.0.1",
    edge: Annotated[Optional[str], typer.Option(help="HOST:PORT of a `gelato serve` edge; without it the "
                                                "target runs in this process.")] = None,
    draft: Annotated[Optional[Path], typer.Option(help="Draft model directory (default: the default pair).")] = None,
    target: Annotated[Optional[Path], typer.Option(help="Target model directory (default: the default pair; "
                                                   "unused with --edge).")] = None,
    model_name: Annotated[Optional[str], typer.Option(help="The model id clients ask for (default: the pair's "
                                                      "name).")] = None,
    policy: Annotated[str, typer.Option(help="Default draft-length policy (`gelato policies`), e.g. static-4.")
                      ] = DEFAULT_POLICY,
    num_draft_tokens: Annotated[Optional[int], typer.Option("--num-draft-tokens", "-k", min=1, max=64,
                                                            help="Largest draft per round (default: the policy's "
                                                                 "own: K of static-K, 15 for GELATO).")] = None,
    e_bar: Annotated[Optional[float], typer.Option(help="Default device energy budget per round, J (GELATO "
                                                   "policies).")] = None,
    payload: Annotated[str, typer.Option(help=f"Default payload: {choices_help()}.")] = DEFAULT_PAYLOAD.value,
    system: Annotated[Optional[str], typer.Option(help="System model for modelled device joules: paper or "
                                                  "generic (default: none).")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Largest max_tokens a request may ask for.")] = 1024,
    default_max_tokens: Annotated[int, typer.Option(min=1, help="max_tokens when a request gives none.")] = 256,
    max_concurrent: Annotated[int, typer.Option(min=1, help="Requests in flight before 429.")] = 8,
    max_body_kb: Annotated[int, typer.Option(min=1, help="Largest request body (413 beyond).")] = 1024,
    api_key: Annotated[Optional[list[str]], typer.Option(help="Accepted bearer key (repeatable; env "
                                                         "GELATO_API_KEY).")] = None,
    api_keys_file: Annotated[Optional[Path], typer.Option(help="Accepted bearer keys, one per line.")] = None,
    edge_token: Annotated[Optional[str], typer.Option(envvar="GELATO_TOKEN", help="Bearer token for the edge.")] = None,
    edge_timeout: Annotated[float, typer.Option(min=0.001, help="Give up on an unreachable edge after this many s."
                                                )] = 30.0,
    edge_tls: Annotated[bool, typer.Option(help="Reach the edge over TLS (system roots, or --edge-tls-ca).")] = False,
    edge_tls_ca: Annotated[Optional[Path], typer.Option(help="PEM CA certificate of the edge (enables TLS).")] = None,
    edge_server_name: Annotated[Optional[str], typer.Option(help="TLS name of the edge to verify, if not its "
                                                            "host.")] = None,
    dtype: str = "float32",
    device: Annotated[str, typer.Option(help="cpu, cuda, or auto.")] = "cpu",
    log_level: str = "info",
) -> None:
    """Serve /v1/completions, /v1/chat/completions, /v1/models, /health and /metrics."""
    from gelato.api.backend import SYSTEMS, EdgeSettings, load_backend
    from gelato.api.respond import Limits
    from gelato.api.server import serve
    from gelato.api.speculative import Speculation
    from gelato.models.loading import ModelLoadError, VocabularyMismatchError
    from gelato.policies.registry import draft_length_setting

    try:  # the registry's rule: a known name, a draft length only where the policy has one
        draft_length_setting(policy, num_draft_tokens)
    except ValueError as exc:
        fail(str(exc))
    try:
        payload = payload_mode(payload)
    except ValueError as exc:
        fail(str(exc))
    if system is not None and system not in SYSTEMS:
        fail(f"unknown system model {system!r}; choose {' or '.join(SYSTEMS)}")
    if e_bar is not None and e_bar <= 0:
        fail(f"--e-bar must be > 0, got {e_bar}")
    check_device(device, dtype)
    check_port_free(host, port)
    keys = _read_keys(api_keys_file, list(api_key or []) + [os.environ.get("GELATO_API_KEY", "")])
    edge_settings = None
    if edge is not None:  # the target lives on the edge
        _check_address(edge)
        ca = read_pem_or_fail(edge_tls_ca, "--edge-tls-ca")
        edge_settings = EdgeSettings(edge, edge_token, unreachable_after=edge_timeout,
                                     tls=edge_tls or ca is not None, tls_ca=ca, server_name=edge_server_name)
        check_model_dir(draft, "--draft")
        draft_dir, target_dir = (draft, None) if draft is not None else (resolve_pair_dirs(None, None)[0], None)
    else:
        if edge_tls or edge_tls_ca or edge_server_name:
            fail("--edge-tls, --edge-tls-ca and --edge-server-name need --edge")
        draft_dir, target_dir = resolve_pair_dirs(draft, target)
    try:
        backend = load_backend(draft_dir, target_dir, edge_settings, system, dtype, device,
                               model_name)
    except (ModelLoadError, VocabularyMismatchError, ValueError) as exc:
        fail(str(exc))
    limits = Limits(max_tokens=max_tokens, default_max_tokens=min(default_max_tokens, max_tokens),
                    max_concurrent=max_concurrent, max_body_bytes=max_body_kb * 1024, api_keys=keys)
    typer.echo(f"gelato api: model {backend.model_name!r}, verifier {edge or 'in process'}, "
               f"policy {policy}{f' K<={num_draft_tokens}' if num_draft_tokens else ''}, on http://{host}:{port}/v1", err=True)
    serve(backend, Speculation(policy, num_draft_tokens, e_bar, payload), limits, host, port, log_level)
