"""``gelato generate``: speculative decoding (or the target alone) on a local draft/target pair.

Text is printed as each round commits it; then time to first token, tok/s and acceptance (measured on this
machine, in process: no link is modelled here). ``--json`` prints one JSON object at the end instead.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Optional

import typer

from gelato.cli.common import (
    check_device,
    check_max_new_tokens,
    check_prompt_text,
    encode_or_fail,
    fail,
    make_policy_or_fail,
    resolve_pair_dirs,
    sampling_params,
)


def generate(
    prompt: Annotated[str, typer.Option(help="Prompt text: one user turn of the target's chat template "
                                        "(when it has one), or sent as is with --raw.")],
    draft: Annotated[Optional[str], typer.Option(help="Draft model: directory (HF format) or hub id.")] = None,
    target: Annotated[Optional[str], typer.Option(help="Target model: directory (HF format) or hub id.")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Send the prompt text as is (no chat template).")] = False,
    system: Annotated[Optional[str], typer.Option("--system", help="System turn of the chat template.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=0)] = 64,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    top_k: Annotated[int, typer.Option(help="0 = off.")] = 0,
    top_p: Annotated[float, typer.Option(help="1 = off.")] = 1.0,
    policy: Annotated[Optional[str], typer.Option(help="Draft-length policy (`gelato policies`): gelato-improved "
                                                  "(the default), static-4, ...")] = None,
    num_draft_tokens: Annotated[Optional[int], typer.Option("--num-draft-tokens", "-k",
                                                            help="Largest draft per round (default: the "
                                                                 "policy's own).")] = None,
    seed: int = 0,
    target_only: Annotated[bool, typer.Option(help="Decode with the target alone (the reference).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    dtype: str = "float32",
    device: Annotated[str, typer.Option(help="cpu, cuda, or auto.")] = "cpu",
) -> None:
    """Generate text with speculative decoding; the output equals the target's own."""
    from gelato.generation import generate_speculative, generate_target_only
    from gelato.models import ModelLoadError, VocabularyMismatchError, load_pair, shared_vocab_size
    from gelato.policies.registry import DEFAULT_POLICY

    params = sampling_params(temperature, top_k, top_p)
    policy = policy or DEFAULT_POLICY
    if num_draft_tokens is not None and num_draft_tokens < 1:  # named as the user typed it
        fail(f"--num-draft-tokens must be >= 1, got {num_draft_tokens}")
    chosen = make_policy_or_fail(policy, num_draft_tokens)
    check_prompt_text(prompt, raw, system)  # every flag before the models load
    check_device(device, dtype)
    draft_dir, target_dir = resolve_pair_dirs(draft, target)
    check_max_new_tokens(max_new_tokens, target_dir)
    try:
        draft_model, target_model, tokenizer = load_pair(draft_dir, target_dir, dtype, device)
    except (ModelLoadError, VocabularyMismatchError, ValueError) as exc:
        fail(str(exc))
    from gelato.api.text import IncrementalDetokenizer
    from gelato.models.chat import decode_text, stop_token_id

    prompt_ids = encode_or_fail(tokenizer, prompt, raw=raw, system=system)
    stop = stop_token_id(tokenizer, raw=raw)
    vocab = shared_vocab_size(draft_model, target_model)
    if target_only:
        result = generate_target_only(target_model, prompt_ids, params, max_new_tokens, stop, seed, vocab)
    else:
        stream = not as_json
        detok = IncrementalDetokenizer(tokenizer, prompt_ids)
        first: list[float] = []
        t0 = time.perf_counter()
        if stream and raw:
            typer.echo(prompt, nl=False)

        def show(tokens) -> None:
            if not first:
                first.append(time.perf_counter() - t0)
            if stream:
                sys.stdout.write("".join(detok.add(t) for t in tokens))
                sys.stdout.flush()

        def on_round(record) -> None:
            if not record.streamed:  # a burst's tokens were shown as they arrived
                show(record.tokens)

        result = generate_speculative(draft_model, target_model, prompt_ids, params, chosen, max_new_tokens, stop,
                                      seed, vocab_size=vocab, on_round=on_round, on_token=lambda t: show([t]))
    text = decode_text(tokenizer, result.token_ids)
    if as_json:
        typer.echo(json.dumps({"text": text, "token_ids": result.token_ids, "stop_reason": result.stop_reason,
                               "metrics": result.metrics.to_dict()}))
        return
    m = result.metrics
    if target_only:
        typer.echo(text if not raw else prompt + text)
        typer.secho(f"\n[target only: {m.generated_tokens} tokens, {m.tokens_per_second:.1f} tok/s (measured, "
                    f"in process)]", fg=typer.colors.BLUE, err=True)
        return
    typer.echo("")
    ttft = f"{first[0] * 1e3:.0f} ms" if first else "-"
    typer.secho(f"[{policy}: {m.generated_tokens} tokens in {m.rounds} rounds; time to first token {ttft}, "
                f"{m.tokens_per_second:.1f} tok/s, acceptance {m.draft_acceptance_rate:.2f} ({m.accepted} of "
                f"{m.sent} drafted tokens), {m.mean_acceptance_length:.2f} tokens/round; measured in process, no "
                f"link]", fg=typer.colors.BLUE, err=True)
