"""The ``draws`` payload against the sparse q~ and the whole q: uplink and downlink bytes per drafted token,
acceptance, and the fallback rate against M, along the target's own sampled answers on the default pair
(docs/results/sampling-payload.md).

Measured, not modelled: the target samples an answer per prompt at each temperature; along it (teacher forcing,
one forward of each model) p is the target's distribution and q the draft's at every position. Acceptance is the
exact sum_x min(p(x), q'(x)) for each proposal q' (the whole q, q rounded to 2^24, q~ = top-24 of q). At a
rejection one draw y ~ p is accepted with probability sum_y (p(y) - q(y))+ = 1 - acceptance (per position), so
the probability that all M draws fail, given a rejection there, is exactly (acceptance)^M; weighted by the
rejection probability it gives the fallback rate per rejection (no sampling noise). Bytes are the real messages
(``gelato.v1.DraftUp`` of 4-token rounds drafted from the rounded q, ``gelato.v1.VerdictDown`` with M draws of p
at the rejected position), without gRPC framing (40 bytes a message with it).

    python benchmarks/sampling_payload.py --out docs/results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from gelato.decoding.sampling import DRAFT_TOP_K, DRAWS_M, SamplingParams, processed_probs, proposal_probs
from gelato.decoding.types import Draft, SparseDist, Verdict
from gelato.generation.loop import target_only_generate
from gelato.models import load_pair, shared_vocab_size
from gelato.models.cached import CachedCausalLM
from gelato.models.chat import encode_prompt, stop_token_id
from gelato.models.pairs import resolve_pair_dirs
from gelato.wire.codec import encode_redraw
from gelato.wire.payload import PayloadConfig, build_draft_up, build_verdict_down

PROMPTS = ("Write a short story about a lighthouse keeper.", "Explain how rainbows form.",
           "Give three tips for learning a new language.")
TEMPERATURES = (1.0, 0.7)
MS = (1, 2, 4, 8, 16, 32)
ROUND = 4  # drafted tokens per uplink message


def _draft(tokens, q, token_probs, start) -> Draft:
    n = len(tokens)
    return Draft(tokens=tokens, q=q, entropies=[0.0] * n, token_probs=token_probs, max_probs=[0.0] * n, budget=n,
                 n_computed=n, start=start)


def measure_temperature(draft, target, tok, vocab: int, temperature: float, max_new_tokens: int, seed: int) -> dict:
    params = SamplingParams(temperature=temperature)
    gen = torch.Generator().manual_seed(seed)
    acc = {"whole": [], "rounded": [], "sparse": []}
    up = {"draws": [], "compact_k24": []}
    down_by_m = {m: [] for m in MS}  # bytes of a rejected round's verdict (M draws), per rejected position
    redraw_up = []
    draws_cfg = PayloadConfig(mode="draws", greedy=False, session=0)
    compact_cfg = PayloadConfig(mode="compact", greedy=False, session=0)
    for i, text in enumerate(PROMPTS):
        ids = encode_prompt(tok, text)
        answer = target_only_generate(CachedCausalLM(target, vocab), ids, params, max_new_tokens,
                                      stop_token_id(tok), torch.Generator().manual_seed(seed + i)).token_ids
        full = torch.tensor([ids + answer])
        with torch.inference_mode():
            p_rows = processed_probs(target(full).logits[0, len(ids) - 1:-1, :vocab], params)
            q_rows = processed_probs(draft(full).logits[0, len(ids) - 1:-1, :vocab], params)
        rounded = [proposal_probs(q, 0, quantized=True) for q in q_rows]
        sparse = [proposal_probs(q, DRAFT_TOP_K) for q in q_rows]
        here = [float(torch.minimum(p, qr).sum()) for p, qr in zip(p_rows, rounded)]  # the draws payload's
        acc["rounded"] += here
        acc["whole"] += [float(torch.minimum(p, q).sum()) for p, q in zip(p_rows, q_rows)]
        acc["sparse"] += [float(torch.minimum(p, qs).sum()) for p, qs in zip(p_rows, sparse)]
        # tokens as the device drafts them: x ~ rounded q (draws) and x ~ q~ (compact), along the answer's positions
        x_draws = [int(torch.multinomial(qr, 1, generator=gen)) for qr in rounded]
        x_sparse = [int(torch.multinomial(qs, 1, generator=gen)) for qs in sparse]
        for s in range(0, len(answer) - ROUND + 1, ROUND):
            span = range(s, s + ROUND)
            d = _draft([x_draws[t] for t in span], None, [float(rounded[t][x_draws[t]]) for t in span], len(ids) + s)
            up["draws"].append(build_draft_up(d, draws_cfg, round_index=s // ROUND).ByteSize() / ROUND)
            c = _draft([x_sparse[t] for t in span], [SparseDist.from_dense(sparse[t]) for t in span], [0.0] * ROUND,
                       len(ids) + s)
            up["compact_k24"].append(build_draft_up(c, compact_cfg, round_index=s // ROUND).ByteSize() / ROUND)
            for j, t in enumerate(span):  # a rejection at round position j: M draws of p_t go down
                for m in MS:
                    ys = torch.multinomial(p_rows[t], m, replacement=True, generator=gen).tolist()
                    verdict = Verdict(accepted=j, token=-1, draws=tuple((y, float(p_rows[t][y])) for y in ys))
                    down_by_m[m].append((1.0 - here[t], build_verdict_down(verdict, draws_cfg, s // ROUND).ByteSize(),
                                         here[t]))  # (P(rejection), bytes, P(one draw fails))
            redraw_up.append(encode_redraw(round_id=s // ROUND + 1, position=len(ids) + s).ByteSize())
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    rows = []
    for m in MS:
        weights = sum(w for w, _, _ in down_by_m[m])
        fallback = sum(w * a ** m for w, _, a in down_by_m[m]) / weights  # P(all M draws fail | a rejection)
        redraws = sum(w * a ** m / (1 - a ** m) for w, _, a in down_by_m[m] if a < 1) / weights  # expected redraws
        verdict_bytes = sum(w * b for w, b, _ in down_by_m[m]) / weights
        rows.append({"m": m, "fallback_per_rejection": fallback, "redraws_per_rejection": redraws,
                     "down_bytes_per_rejected_round": verdict_bytes * (1 + redraws),
                     "up_bytes_of_redraws_per_rejected_round": mean(redraw_up) * redraws})
    whole = mean(acc["whole"])
    return {"temperature": temperature, "positions": len(acc["whole"]),
            "acceptance": {k: mean(v) for k, v in acc.items()},
            "acceptance_vs_whole_q": {k: mean(v) / whole for k, v in acc.items()},
            "up_bytes_per_drafted_token": {k: mean(v) for k, v in up.items()},
            "rejection_rate": 1 - mean(acc["rounded"]), "rows": rows}


def measure(max_new_tokens: int, seed: int) -> dict:
    draft, target, tok = load_pair(*resolve_pair_dirs(None, None))
    vocab = shared_vocab_size(draft, target)
    return {"prompts": list(PROMPTS), "max_new_tokens": max_new_tokens, "round_tokens": ROUND, "default_m": DRAWS_M,
            "vocab": vocab, "results": [measure_temperature(draft, target, tok, vocab, t, max_new_tokens, seed)
                                        for t in TEMPERATURES]}


def table(result: dict) -> str:
    lines = []
    for r in result["results"]:
        t, a, up = r["temperature"], r["acceptance_vs_whole_q"], r["up_bytes_per_drafted_token"]
        lines += [f"Temperature {t:g}, {r['positions']} positions: acceptance whole q {r['acceptance']['whole']:.4f}, "
                  f"rounded q {r['acceptance']['rounded']:.4f} ({a['rounded']:.5f}x), q~ top-{DRAFT_TOP_K} "
                  f"{r['acceptance']['sparse']:.4f} ({a['sparse']:.4f}x); uplink bytes per drafted token: draws "
                  f"{up['draws']:.1f}, compact q~ {up['compact_k24']:.1f}", "",
                  "| M | fallback per rejection | redraws per rejection | downlink bytes per rejected round |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {row['m']} | {row['fallback_per_rejection']:.2%} | {row['redraws_per_rejection']:.4f} | "
                  f"{row['down_bytes_per_rejected_round']:.1f} |" for row in r["rows"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    result = measure(args.max_new_tokens, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sampling-payload.json").write_text(json.dumps(result, indent=1))
    print(table(result))


if __name__ == "__main__":
    main()
