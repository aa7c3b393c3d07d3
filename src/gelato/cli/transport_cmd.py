"""``gelato serve`` / ``gelato device`` / ``gelato link``: the real device-edge deployment over gRPC.

The lead's ``gelato.cli.main`` mounts the three functions at top level::

    from gelato.cli.transport_cmd import device, link, serve
    app.command("serve")(serve); app.command("device")(device); app.command("link")(link)

``app`` below is the same three commands as a stand-alone typer app (``python -m gelato.cli.transport_cmd``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

# C-core's own log lines (TLS handshake failures, reconnects) would bury the one clear error line.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import typer  # noqa: E402

from gelato.decoding.payload_modes import PayloadMode, choices_help  # noqa: E402

app = typer.Typer(help="Device-edge speculative decoding over gRPC: edge server, device client, link emulator.",
                  no_args_is_help=True)


def fail(message: str) -> None:
    """One clear line and exit status 2 (no torch import: ``gelato link`` stays light)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _setup_logging(level: str) -> None:
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
    _setup_logging(log_level)
    import torch

    from gelato.cli.common import check_port_free, parse_bytes
    from gelato.edge.process import serve as run_server
    kv_bytes = parse_bytes(kv_memory, "--kv-memory") if kv_memory is not None else None
    check_port_free(host, port)
    if target_dir is None:
        from gelato.cli.common import resolve_pair_dirs
        target_dir = resolve_pair_dirs(None, None)[1]
    if threads:
        torch.set_num_threads(threads)
    tokens_file = tokens_file or (Path(os.environ["GELATO_TOKENS_FILE"]) if os.environ.get("GELATO_TOKENS_FILE")
                                  else None)

    def started(bound: int) -> None:
        typer.echo(f"edge listening on {host}:{bound}", err=False)
        sys.stdout.flush()

    from gelato.models.kv_store import KVMemoryExhausted
    from gelato.models.loading import ModelLoadError
    try:
        run_server(target_dir, host, port, on_started=started, tokenizer_dir=tokenizer_dir, dtype=dtype,
                   device=device, vocab_size=vocab_size, fingerprint=resolve_fingerprint(fingerprint),
                   tokens=tokens_file, tls_cert=tls_cert, tls_key=tls_key, max_batch=max_batch,
                   batch_window_ms=batch_window_ms, max_sessions=max_sessions, max_prompt_tokens=max_prompt_tokens,
                   max_sessions_per_device=max_sessions_per_device, prefill_chunk=prefill_chunk,
                   prefill_budget_ms=prefill_budget_ms, kv_memory=kv_bytes, metrics_port=metrics_port,
                   max_draft_tokens=max_draft_tokens, idle_timeout_s=idle_timeout_s,
                   max_message_bytes=max_message_kb * 1024, static_verify=static_verify)
    except (OSError, ValueError, ModelLoadError, KVMemoryExhausted) as exc:
        fail(str(exc))


def device(
    edge: str = typer.Option("127.0.0.1:50051", "--edge", help="HOST:PORT of the edge (or of a link emulator)"),
    draft_dir: Optional[Path] = typer.Option(None, "--draft", "--draft-dir",
                                             help="Hugging Face model directory of the draft "
                                                  "(default: the default pair's draft)"),
    policy: Optional[str] = typer.Option(None, "--policy", help="draft-length policy: gelato-improved (the "
                                         "default), gelato-paper, static-K, ... (`gelato policies`)"),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="prompt text (needs a tokenizer)"),
    prompt_ids: Optional[str] = typer.Option(None, "--prompt-ids", help="comma-separated token ids instead"),
    raw: bool = typer.Option(False, "--raw", help="send --prompt as is (no chat template)"),
    system: Optional[str] = typer.Option(None, "--system", help="system turn of the chat template"),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy"),
    top_k: int = typer.Option(0, "--top-k"),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: int = typer.Option(0, "--seed", min=0, max=2**63 - 2, help="seeds the draft's sampling and the edge's "
                             "verification"),
    payload: str = typer.Option(PayloadMode.COMPACT.value, "--payload", help=choices_help()),
    token: Optional[str] = typer.Option(None, "--token", envvar="GELATO_TOKEN", help="bearer token"),
    tls: bool = typer.Option(False, "--tls", help="use TLS with the system roots"),
    tls_ca: Optional[Path] = typer.Option(None, "--tls-ca", help="PEM CA certificate of the edge (enables TLS)"),
    server_name: Optional[str] = typer.Option(None, "--server-name", help="TLS name to verify, if not the host"),
    rpc_timeout: float = typer.Option(10.0, "--rpc-timeout", min=0.001, help="deadline of each Verify call (s)"),
    unreachable_after: float = typer.Option(30.0, "--unreachable-after", min=0.0, help="give up after the edge has been "
                                            "unreachable this long (s)"),
    tokenizer_dir: Optional[Path] = typer.Option(None, "--tokenizer-dir", help="default: the draft directory"),
    fingerprint: Optional[str] = typer.Option(None, "--fingerprint", help="override the tokenizer fingerprint "
                                              "(synthetic:N for models without a tokenizer)"),
    dtype: str = typer.Option("float32", "--dtype"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the result and timings here"),
    log_level: str = typer.Option("warning", "--log-level"),
) -> None:
    """Generate on this device with a remote edge verifying every round; prints text and per-phase times."""
    _setup_logging(log_level)
    import torch
    from rich.console import Console
    from rich.table import Table

    from gelato.cli.common import policy_by_name
    from gelato.decoding.sampling import SamplingParams
    from gelato.device.client import RemoteVerifier
    from gelato.device.edge_client import EdgeClient
    from gelato.generation import draft_proposer, generate
    from gelato.models.loading import ModelLoadError, load_causal_lm, load_tokenizer
    from gelato.policies.cap import capped
    from gelato.policies.registry import DEFAULT_POLICY, policy_spec
    from gelato.wire.errors import TransportError
    from gelato.wire.fingerprint import tokenizer_fingerprint

    policy = policy or DEFAULT_POLICY

    console = Console(stderr=False, soft_wrap=True)  # piped output is not hard-wrapped at 80 columns
    if threads:
        torch.set_num_threads(threads)
    if draft_dir is None:
        from gelato.models.pairs import default_draft_dir
        draft_dir = default_draft_dir()
    if (prompt is None) == (prompt_ids is None):
        fail("give exactly one of --prompt or --prompt-ids")
    if json_out is not None:  # checked now, not after the whole generation
        try:
            with json_out.open("a"):
                pass
        except OSError as exc:
            fail(f"cannot write --json {json_out}: {exc.strerror or exc}")
    from gelato.transport.auth import read_pem
    from gelato.wire.codec import payload_config
    try:
        fingerprint = resolve_fingerprint(fingerprint)
        params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
        payload_cfg = payload_config(payload, params)
        chosen = policy_by_name(policy)
        root_ca = read_pem(tls_ca)
        ids = parse_prompt_ids(prompt_ids) if prompt_ids is not None else None
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    tokenizer = None
    if prompt is not None or fingerprint is None:
        try:
            tokenizer = load_tokenizer(tokenizer_dir or draft_dir)
        except ModelLoadError as exc:
            fail(f"{exc} (pass --prompt-ids and --fingerprint for models without one)")
    from gelato.cli.common import encode_or_fail
    from gelato.models.chat import decode_text, stop_token_id
    if ids is None:
        ids = encode_or_fail(tokenizer, prompt, raw=raw, system=system)
    if not ids:
        fail("the prompt is empty")
    fingerprint = fingerprint or tokenizer_fingerprint(tokenizer)
    try:
        draft_model = load_causal_lm(draft_dir, dtype)
    except ModelLoadError as exc:
        fail(str(exc))
    client = EdgeClient(edge, token=token, tls=tls, root_ca=root_ca, server_name=server_name)
    verifier = RemoteVerifier(client, params, fingerprint=fingerprint, seed=seed, payload=payload_cfg,
                              device_name=os.uname().nodename, max_new_tokens=max_new_tokens,
                              rpc_timeout=rpc_timeout, unreachable_after=unreachable_after)
    eos = stop_token_id(tokenizer, raw=raw or prompt is None) if tokenizer is not None else None
    try:
        reply = verifier.open(ids)
        cap = int(reply.max_draft_tokens) or None  # never draft more than the edge accepts (it would refuse)
        chosen = capped(chosen, cap)
        vocab = min(int(draft_model.config.vocab_size), int(reply.vocab_size))
        proposer = draft_proposer(draft_model, params, seed, vocab)
        plain = None
        unpipelined = policy_spec(policy).drafts_ahead_of
        if unpipelined is not None:  # draft ahead while the request is out; compare with the same policy without
            plain = generate(ids, proposer, verifier, capped(policy_by_name(unpipelined), cap), max_new_tokens,
                             eos_token_id=eos)
            verifier.open(ids)
            proposer.model.reset()
        result = generate(ids, proposer, verifier, chosen, max_new_tokens, eos_token_id=eos, background_verify=True)
    except TransportError as exc:
        console.print(f"[red]error:[/red] {exc}")
        if exc.generated_ids:
            text = decode_text(tokenizer, exc.generated_ids) if tokenizer is not None else exc.generated_ids
            console.print(f"committed before the failure ({len(exc.generated_ids)} tokens): {text}")
        raise typer.Exit(1) from None
    finally:
        verifier.close()
        client.close()

    m = result.metrics
    net = verifier.stats.summary()
    rounds = max(1, m.rounds)
    text = decode_text(tokenizer, result.token_ids) if tokenizer is not None else " ".join(map(str, result.token_ids))
    console.print(text, markup=False, highlight=False)
    table = Table(title=f"device -> {edge} ({reply.model_name}), policy {chosen.name}")
    table.add_column("per round")
    table.add_column("ms", justify="right")
    table.add_row("draft (device compute)", f"{m.draft_seconds / rounds * 1e3:.2f}")
    table.add_row("verify call (total, incl. retries)", f"{m.verify_seconds / rounds * 1e3:.2f}")
    table.add_row("  edge: queue", f"{net['queue_ms_mean']:.2f}")
    table.add_row("  edge: forward (batch)", f"{net['forward_ms_mean']:.2f}")
    table.add_row("  edge: handler total", f"{net['server_ms_mean']:.2f}")
    table.add_row("  network + gRPC", f"{net['network_ms_mean']:.2f}")
    table.add_row("controller + bookkeeping", f"{m.other_seconds / rounds * 1e3:.2f}")
    console.print(table)
    console.print(f"{m.generated_tokens} tokens in {m.rounds} rounds ({m.mean_acceptance_length:.2f} per round, "
                  f"draft acceptance {m.draft_acceptance_rate:.2f}), {m.tokens_per_second:.1f} tokens/s; "
                  f"uplink {net['up_bytes']} B, downlink {net['down_bytes']} B; retries {net['retries']}, "
                  f"reopens {net['reopens']}; stop: {result.stop_reason}")
    extra = {}
    if plain is not None:
        pm = plain.metrics
        gain = m.tokens_per_second / pm.tokens_per_second - 1 if pm.tokens_per_second else 0.0
        console.print(f"pipelined: {m.tokens_per_second:.1f} tokens/s in {m.wall_seconds:.3f} s; the same policy "
                      f"unpipelined: {pm.tokens_per_second:.1f} tokens/s in {pm.wall_seconds:.3f} s; measured "
                      f"wall-clock gain {100 * gain:+.1f}% (same output: {plain.token_ids == result.token_ids}; "
                      f"pre-drafts reused in {sum(1 for r in result.rounds if r.carried)} of {m.rounds} rounds; "
                      f"network figures above cover both runs)")
        extra = {"unpipelined_metrics": pm.to_dict(), "wall_clock_gain": gain}
    if json_out is not None:
        try:
            json_out.write_text(json.dumps({"token_ids": result.token_ids, "text": text, "metrics": m.to_dict(),
                                            "network": net, "stop_reason": result.stop_reason, "policy": policy,
                                            **extra}, indent=2))
        except OSError as exc:
            fail(f"cannot write --json {json_out}: {exc.strerror or exc}")


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
    _setup_logging(log_level)
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


app.command("serve")(serve)
app.command("device")(device)
app.command("link")(link)

if __name__ == "__main__":
    app()
