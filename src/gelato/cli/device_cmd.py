"""``gelato device``: the device client (the draft model) talking to an edge over gRPC."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

# C-core's own log lines (TLS handshake failures, reconnects) would bury the one clear error line.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import typer  # noqa: E402

from gelato.cli.common import fail, parse_prompt_ids, resolve_fingerprint, setup_logging  # noqa: E402
from gelato.decoding.payload_modes import DEFAULT_PAYLOAD, choices_help  # noqa: E402


def device(
    edge: str = typer.Option("127.0.0.1:50051", "--edge", help="HOST:PORT of the edge (or of a link emulator)"),
    draft_dir: Optional[Path] = typer.Option(None, "--draft", "--draft-dir",
                                             help="Hugging Face model directory of the draft "
                                                  "(default: the default pair's draft)"),
    policy: Optional[str] = typer.Option(None, "--policy", help="draft-length policy: gelato-improved (the "
                                         "default), gelato-paper, static-K, ... (`gelato policies`); it "
                                         "plans with the costs this run measures"),
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
    payload: str = typer.Option(DEFAULT_PAYLOAD.value, "--payload", help=choices_help()),
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
    setup_logging(log_level)
    import torch
    from rich.console import Console
    from rich.table import Table

    from gelato.cli.common import make_policy_or_fail
    from gelato.decoding.sampling import SamplingParams
    from gelato.device.edge_client import EdgeClient
    from gelato.device.pair import remote_pair
    from gelato.generation import generate
    from gelato.models.loading import ModelLoadError, load_causal_lm, load_tokenizer
    from gelato.policies.registry import DEFAULT_POLICY, policy_spec
    from gelato.wire.errors import TransportError
    from gelato.wire.fingerprint import tokenizer_fingerprint

    policy = policy or DEFAULT_POLICY
    chosen = make_policy_or_fail(policy, measured=True)  # a bad name is one error line before anything loads
    unpipelined = policy_spec(policy).drafts_ahead_of

    console = Console(stderr=False, soft_wrap=True)  # piped output is not hard-wrapped at 80 columns
    if threads:
        torch.set_num_threads(threads)
    from gelato.cli.common import check_device, check_model_dir, read_pem_or_fail
    check_model_dir(draft_dir, "--draft")
    check_model_dir(tokenizer_dir, "--tokenizer-dir")
    check_device("cpu", dtype)
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
    from gelato.wire.codec import payload_config
    root_ca = read_pem_or_fail(tls_ca, "--tls-ca")
    try:
        fingerprint = resolve_fingerprint(fingerprint)
        params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
        payload_cfg = payload_config(payload, params)
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
    eos = stop_token_id(tokenizer, raw=raw or prompt is None) if tokenizer is not None else None
    verifier = None
    try:
        # the edge's largest draft per round (its open reply) is the round loop's ceiling: never more is sent
        proposer, verifier = remote_pair(draft_model, client, params, ids, fingerprint=fingerprint, seed=seed,
                                         payload=payload_cfg, device_name=os.uname().nodename,
                                         max_new_tokens=max_new_tokens, rpc_timeout=rpc_timeout,
                                         unreachable_after=unreachable_after, stop_ids=[] if eos is None else [eos])
        plain = None
        if unpipelined is not None:  # draft ahead while the request is out; compare with the same policy without
            plain = generate(ids, proposer, verifier, make_policy_or_fail(unpipelined, measured=True),
                             max_new_tokens, eos_token_id=eos)
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
        if verifier is not None:
            verifier.close()
        client.close()

    m = result.metrics
    net = verifier.stats.summary()
    rounds = max(1, m.rounds)
    text = decode_text(tokenizer, result.token_ids) if tokenizer is not None else " ".join(map(str, result.token_ids))
    console.print(text, markup=False, highlight=False)
    table = Table(title=f"device -> {edge} ({verifier.model_name}), policy {chosen.name}")
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
    planner = getattr(chosen, "predictor", None)  # a planning policy's measured planner: what it fitted
    if callable(getattr(planner, "parameters", None)):
        extra["planner"] = planner.parameters()
    if json_out is not None:
        try:
            json_out.write_text(json.dumps({"token_ids": result.token_ids, "text": text, "metrics": m.to_dict(),
                                            "network": net, "stop_reason": result.stop_reason, "policy": policy,
                                            **extra}, indent=2))
        except OSError as exc:
            fail(f"cannot write --json {json_out}: {exc.strerror or exc}")
