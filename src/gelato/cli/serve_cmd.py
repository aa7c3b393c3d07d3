"""``gelato serve``: the edge server (the target model; batched verification, sessions, limits, metrics)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

# C-core's own log lines (TLS handshake failures, reconnects) would bury the one clear error line.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import typer  # noqa: E402

from gelato.cli.common import fail, resolve_fingerprint, setup_logging  # noqa: E402


def serve(
    target_dir: Optional[Path] = typer.Option(None, "--target", "--target-dir",
                                              help="Hugging Face model directory of the target "
                                                   "(default: the default pair's target, SmolLM2-135M-Instruct; "
                                                   "GELATO_PAIR=gsm8k: the fast test pair's)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (0.0.0.0 for every interface)"),
    port: int = typer.Option(50051, "--port", min=0, max=65535, help="port (0: let the OS pick; the bound port is "
                             "printed)"),
    max_batch: int = typer.Option(8, "--max-batch", help="verify up to this many sessions in one forward "
                                  "(1 = unbatched)"),
    batch_window_ms: float = typer.Option(8.0, "--batch-window-ms",
                                          help="how long a request waits for others (only while other sessions "
                                               "could still send)"),
    max_sessions: int = typer.Option(64, "--max-sessions"),
    max_sessions_per_device: int = typer.Option(16, "--max-sessions-per-device",
                                                help="per bearer token (with --tokens-file)"),
    prefill_chunk: int = typer.Option(128, "--prefill-chunk", help="prompt tokens per prefill step (at most); "
                                      "rounds of other sessions run between steps"),
    prefill_budget_ms: float = typer.Option(4.0, "--prefill-budget-ms", help="while other sessions are active, "
                                            "prefill steps are sized to take about this long"),
    kv_memory: Optional[str] = typer.Option(None, "--kv-memory", help="KV cache budget, e.g. 4GiB (default: half "
                                            "the memory free at start); opens that do not fit are refused "
                                            "with RESOURCE_EXHAUSTED, which devices retry"),
    metrics_port: Optional[int] = typer.Option(None, "--metrics-port", help="serve Prometheus metrics on "
                                               "http://HOST:PORT/metrics", min=1, max=65535),
    max_prompt_tokens: int = typer.Option(8192, "--max-prompt-tokens"),
    max_draft_tokens: int = typer.Option(32, "--max-draft-tokens", help="per round"),
    idle_timeout_s: float = typer.Option(600.0, "--idle-timeout-s", help="close sessions idle this long"),
    max_message_kb: int = typer.Option(4096, "--max-message-kb"),
    tokens_file: Optional[Path] = typer.Option(None, "--tokens-file", help="bearer tokens, one 'name:token' "
                                               "per line (default: $GELATO_TOKENS_FILE; none = no auth)"),
    tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="PEM certificate chain (enables TLS)"),
    tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="PEM private key"),
    tokenizer_dir: Optional[Path] = typer.Option(None, "--tokenizer-dir", help="default: the target directory"),
    fingerprint: Optional[str] = typer.Option(None, "--fingerprint", help="override the tokenizer fingerprint "
                                              "(synthetic:N for models without a tokenizer)"),
    vocab_size: Optional[int] = typer.Option(None, "--vocab-size", help="verify over the first N logits "
                                             "(drop embedding padding rows)"),
    dtype: str = typer.Option("float32", "--dtype"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads"),
    log_level: str = typer.Option("info", "--log-level"),
    static_verify: Optional[bool] = typer.Option(None, "--static-verify/--no-static-verify",
                                                 help="static-shape verify forwards, CUDA graphs on cuda "
                                                      "(default: on with a cuda device)"),
) -> None:
    """Serve a target model to devices (sessions, batched verification, Health and Metrics RPCs)."""
    setup_logging(log_level)
    import torch

    from gelato.cli.common import (
        check_device,
        check_kv_memory,
        check_model_dir,
        check_port_free,
        parse_bytes,
        read_pem_or_fail,
    )
    from gelato.edge.process import serve as run_server
    from gelato.wire.auth import check_key_pair, load_tokens
    # every flag is checked here, before the target loads (seconds to minutes)
    kv_bytes = parse_bytes(kv_memory, "--kv-memory") if kv_memory is not None else None
    check_device(device, dtype)
    check_kv_memory(kv_bytes, device)
    check_port_free(host, port)
    if metrics_port is not None:
        if metrics_port == port:
            fail(f"--metrics-port {metrics_port} is the gRPC --port too")
        check_port_free(host, metrics_port, "--metrics-port")
    check_model_dir(target_dir, "--target")
    check_model_dir(tokenizer_dir, "--tokenizer-dir")
    if (tls_cert is None) != (tls_key is None):
        fail("TLS needs both --tls-cert and --tls-key")
    cert, key = read_pem_or_fail(tls_cert, "--tls-cert"), read_pem_or_fail(tls_key, "--tls-key")
    try:
        if cert is not None:
            check_key_pair(cert, key)
        fingerprint = resolve_fingerprint(fingerprint)
    except ValueError as exc:
        fail(str(exc))
    if target_dir is None:
        from gelato.cli.common import resolve_pair_dirs
        target_dir = resolve_pair_dirs(None, None)[1]
    if threads:
        torch.set_num_threads(threads)
    tokens_file = tokens_file or (Path(os.environ["GELATO_TOKENS_FILE"]) if os.environ.get("GELATO_TOKENS_FILE")
                                  else None)
    try:
        tokens = load_tokens(tokens_file)
    except (OSError, ValueError) as exc:
        fail(str(exc))

    def started(bound: int) -> None:
        typer.echo(f"edge listening on {host}:{bound}", err=False)
        sys.stdout.flush()

    from gelato.models.kv_store import KVMemoryExhausted
    from gelato.models.loading import ModelLoadError
    try:
        run_server(target_dir, host, port, on_started=started, tokenizer_dir=tokenizer_dir, dtype=dtype,
                   device=device, vocab_size=vocab_size, fingerprint=fingerprint,
                   tokens=tokens, tls_cert=tls_cert, tls_key=tls_key, max_batch=max_batch,
                   batch_window_ms=batch_window_ms, max_sessions=max_sessions, max_prompt_tokens=max_prompt_tokens,
                   max_sessions_per_device=max_sessions_per_device, prefill_chunk=prefill_chunk,
                   prefill_budget_ms=prefill_budget_ms, kv_memory=kv_bytes, metrics_port=metrics_port,
                   max_draft_tokens=max_draft_tokens, idle_timeout_s=idle_timeout_s,
                   max_message_bytes=max_message_kb * 1024, static_verify=static_verify)
    except (OSError, ValueError, ModelLoadError, KVMemoryExhausted) as exc:
        fail(str(exc))
