"""``gelato generate``: speculative decoding (or the target alone) on a local draft/target pair."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from gelato.cli.common import encode_or_fail, fail, resolve_pair_dirs, sampling_params


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
    num_draft_tokens: Annotated[int, typer.Option("--num-draft-tokens", "-k", help="Draft length K.")] = 4,
    seed: int = 0,
    target_only: Annotated[bool, typer.Option(help="Decode with the target alone (the reference).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    dtype: str = "float32",
    device: Annotated[str, typer.Option(help="cpu, cuda, or auto.")] = "cpu",
) -> None:
    """Generate text with speculative decoding; the output equals the target's own."""
    from gelato.models import ModelLoadError, VocabularyMismatchError, load_pair, shared_vocab_size
    from gelato.policies import StaticPolicy
    from gelato.decoding.pipeline import generate_speculative, generate_target_only

    params = sampling_params(temperature, top_k, top_p)
    if num_draft_tokens < 1:
        fail(f"--num-draft-tokens must be >= 1, got {num_draft_tokens}")
    draft_dir, target_dir = resolve_pair_dirs(draft, target)
    try:
        draft_model, target_model, tokenizer = load_pair(draft_dir, target_dir, dtype, device)
    except (ModelLoadError, VocabularyMismatchError, ValueError) as exc:
        fail(str(exc))
    from gelato.models.chat import decode_text, stop_token_id

    prompt_ids = encode_or_fail(tokenizer, prompt, raw=raw, system=system)
    stop = stop_token_id(tokenizer, raw=raw)
    vocab = shared_vocab_size(draft_model, target_model)
    if target_only:
        result = generate_target_only(target_model, prompt_ids, params, max_new_tokens, stop, seed, vocab)
    else:
        result = generate_speculative(draft_model, target_model, prompt_ids, params,
                                      StaticPolicy(num_draft_tokens), max_new_tokens, stop, seed, vocab_size=vocab)
    text = decode_text(tokenizer, result.token_ids)
    if as_json:
        typer.echo(json.dumps({"text": text, "token_ids": result.token_ids, "stop_reason": result.stop_reason,
                               "metrics": result.metrics.to_dict()}))
        return
    typer.echo(text if not raw else prompt + text)
    m = result.metrics
    typer.secho(f"\n[{m.generated_tokens} tokens, {m.rounds} rounds, mean acceptance length "
                f"{m.mean_acceptance_length:.2f}, {m.tokens_per_second:.1f} tok/s]", fg=typer.colors.BLUE, err=True)
