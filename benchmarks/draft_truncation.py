"""Choose the draft-side proposal truncation (``DRAFT_TOP_K``): uplink bytes per drafted token and acceptance
against k, at temperature 1 on the default pair (docs/results/draft-truncation.md).

Measured, not modelled: the target samples a 128-token answer per prompt at temperature 1; along it (teacher
forcing, one forward of each model), at every position p is the target's distribution and q the draft's,
both at temperature 1. For each k the device would draw from q~ = top-k of q renormalised, and a token drawn
from q~ is accepted with probability sum_x min(p(x), q~(x)) (exact, no sampling noise). Bytes are those of
the real uplink message (``gelato.v1.DraftUp``, compact payload) for the drafted tokens of 4-token rounds
along the answer, without gRPC framing (``--framing grpc`` adds 40 bytes per message).

    python benchmarks/draft_truncation.py --out docs/results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from gelato.decoding.sampling import DRAFT_TOP_K, SamplingParams, entropy_nats, processed_probs, proposal_probs
from gelato.decoding.types import Draft, SparseDist
from gelato.generation.loop import target_only_generate
from gelato.models import load_pair, shared_vocab_size
from gelato.models.cached import CachedCausalLM
from gelato.models.chat import encode_prompt, stop_token_id
from gelato.models.pairs import resolve_pair_dirs
from gelato.wire.payload import PayloadConfig, build_draft_up

PROMPTS = ("Write a short story about a lighthouse keeper.", "Explain how rainbows form.",
           "Give three tips for learning a new language.", "Describe your ideal weekend.")
KS = (1, 2, 4, 8, 16, 24, 32, 64, 256, 0)  # 0: the whole q (today's proposal)
ROUND = 4  # drafted tokens per uplink message


def measure(max_new_tokens: int, seed: int) -> dict:
    draft, target, tok = load_pair(*resolve_pair_dirs(None, None))
    vocab = shared_vocab_size(draft, target)
    params = SamplingParams(temperature=1.0)
    cfg = PayloadConfig(mode="compact", greedy=False)
    acc = {k: [] for k in KS}
    up = {k: [] for k in KS}
    support = {k: [] for k in KS}
    entropy = {"p": [], "q": []}
    for i, text in enumerate(PROMPTS):
        ids = encode_prompt(tok, text)
        answer = target_only_generate(CachedCausalLM(target, vocab), ids, params, max_new_tokens,
                                      stop_token_id(tok), torch.Generator().manual_seed(seed + i)).token_ids
        full = torch.tensor([ids + answer])
        with torch.inference_mode():
            p_rows = processed_probs(target(full).logits[0, len(ids) - 1:-1, :vocab], params)
            q_rows = processed_probs(draft(full).logits[0, len(ids) - 1:-1, :vocab], params)
        for name, rows in (("p", p_rows), ("q", q_rows)):
            entropy[name] += entropy_nats(rows).tolist()
        for k in KS:
            q_tilde = [proposal_probs(q, k) for q in q_rows]
            acc[k] += [float(torch.minimum(p, qt).sum()) for p, qt in zip(p_rows, q_tilde)]
            support[k] += [int((qt > 0).sum()) for qt in q_tilde]
            for s in range(0, len(answer) - ROUND + 1, ROUND):
                d = Draft(tokens=answer[s:s + ROUND], q=[SparseDist.from_dense(qt) for qt in q_tilde[s:s + ROUND]],
                          entropies=[0.0] * ROUND, token_probs=[0.0] * ROUND, max_probs=[0.0] * ROUND, budget=ROUND,
                          n_computed=ROUND, start=len(ids) + s)
                up[k].append(len(build_draft_up(d, cfg, round_index=s // ROUND).SerializeToString()) / ROUND)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    rows = [{"k": k, "bytes_per_drafted_token": mean(up[k]), "acceptance": mean(acc[k]),
             "mean_support": mean(support[k])} for k in KS]
    return {"prompts": list(PROMPTS), "max_new_tokens": max_new_tokens, "positions": len(acc[0]),
            "round_tokens": ROUND, "default_k": DRAFT_TOP_K, "rows": rows,
            "mean_entropy_nats": {name: mean(xs) for name, xs in entropy.items()}}


def write(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "draft-truncation.json").write_text(json.dumps(result, indent=1))
    rows = [r for r in result["rows"] if r["k"]]
    whole = next(r for r in result["rows"] if not r["k"])
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot([r["k"] for r in rows], [r["bytes_per_drafted_token"] for r in rows], "o-", color="tab:blue")
    ax.axhline(200, color="tab:blue", ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("draft-side top-k of q~ (the whole q: %.0f entries on average)" % whole["mean_support"])
    ax.set_ylabel("uplink bytes per drafted token (measured)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot([r["k"] for r in rows], [r["acceptance"] for r in rows], "s-", color="tab:red")
    ax2.axhline(whole["acceptance"], color="tab:red", ls="--", lw=1, label="whole q")
    ax2.axhline(0.95 * whole["acceptance"], color="tab:red", ls=":", lw=1, label="95% of whole q")
    ax2.axvline(result["default_k"], color="grey", lw=0.8)
    ax2.set_ylabel("acceptance probability per drafted token", color="tab:red")
    ax2.legend(loc="lower right")
    ax.set_title(f"Sparse draft proposals, temperature 1, default pair (whole q: "
                 f"{whole['bytes_per_drafted_token'] / 1000:.0f} kB/token)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "draft-truncation.png", dpi=120)
    lines = ["| draft top-k | uplink bytes / drafted token | acceptance | vs whole q |", "| --- | --- | --- | --- |"]
    for r in result["rows"]:
        lines.append(f"| {r['k'] or 'whole q'} | {r['bytes_per_drafted_token']:.0f} | {r['acceptance']:.4f} | "
                     f"{r['acceptance'] / whole['acceptance'] - 1:+.1%} |")
    (out / "draft-truncation-table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    write(measure(args.max_new_tokens, args.seed), args.out)


if __name__ == "__main__":
    main()
