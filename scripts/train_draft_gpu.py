"""Train draft shapes side by side on one GPU from the teacher data, keep each one's best weights.

Used once on a lent H200 (the `device` tool) to build the shipped draft; CPU training of the same
recipe is `gelato models build --pair smollm2 --stage train`. Run from the repository root:

    python scripts/train_draft_gpu.py --teacher DIR --target-config CONFIG.json --out OUT \
        --seconds 300 --shapes h256-l4-f768,h256-l6-f768

Each shape trains in its own process (the GPU is mostly idle for a 25M model); OUT/<shape>.json holds its
evaluations and OUT/<shape>-part*.safetensors its best weights in bf16, split into files under 15 MB
(what the device tool can bring back). `--assemble OUT --shape S --dest DIR` rebuilds a draft directory
from those parts here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

PART_BYTES = 15 * 1024 * 1024


def train_one(args) -> None:
    from gelato.zoo.draft_distill import DraftRecipe, TargetFacts, make_draft, train_draft
    from gelato.zoo.teacher import load_teacher, output_support

    torch.backends.cuda.matmul.allow_tf32 = True
    recipe = DraftRecipe(lr=args.lr, eval_sequences=args.eval_sequences).with_shape(args.shape)
    train, held = load_teacher(args.teacher)
    facts = TargetFacts.of(json.loads(Path(args.target_config).read_text()))
    support = output_support(train, tuple(i for i in (facts.eos_token_id, facts.pad_token_id) if i is not None))
    draft = make_draft(recipe, facts, args.seed)
    out = Path(args.out)
    log_file = out / f"{args.shape}.log"

    def log(msg: str) -> None:
        print(f"[{args.shape}] {msg}", flush=True)
        with open(log_file, "a") as f:
            f.write(msg + "\n")

    log(f"{sum(p.numel() for p in draft.parameters()) / 1e6:.1f}M params, {len(train)} sequences, "
        f"{sum(len(s.answer) for s in train):,} answer tokens, support {len(support):,}, held out {len(held)}")
    t0 = time.time()
    state = train_draft(draft, train, held, support, recipe, args.seconds, args.seed,
                        Path("/tmp") / f"ckpt-{args.shape}.pt", device=args.device, log=log)
    tensors = {k: v.to(torch.bfloat16).contiguous() for k, v in draft.state_dict().items() if k != "lm_head.weight"}
    save_parts(tensors, out, args.shape)
    (out / f"{args.shape}.json").write_text(json.dumps({
        "shape": args.shape, "recipe": recipe.to_dict(), "support": support.tolist(), "steps": state["step"],
        "epochs": state["epoch"] + state["batch_in_epoch"] / 1e9, "seconds": round(state["elapsed"], 1),
        "wall_seconds": round(time.time() - t0, 1), "loss_tokens": state["loss_tokens"],
        "final_loss": sum(state["losses"][-50:]) / max(1, len(state["losses"][-50:])), "best": state["best"],
        "evals": state["evals"], "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu", "torch": torch.__version__,
        "seed": args.seed}))


def save_parts(tensors: dict[str, torch.Tensor], out: Path, name: str) -> None:
    """Split row-wise so that every file stays under :data:`PART_BYTES`."""
    from safetensors.torch import save_file

    parts, cur, size = [], {}, 0
    for key, t in tensors.items():
        rows_per = max(1, PART_BYTES // max(1, t[0].numel() * t.element_size())) if t.dim() else 1
        pieces = [t] if t.numel() * t.element_size() <= PART_BYTES else list(t.split(rows_per))
        for j, piece in enumerate(pieces):
            b = piece.numel() * piece.element_size()
            if cur and size + b > PART_BYTES:
                parts.append(cur)
                cur, size = {}, 0
            cur[f"{key}@{j}"] = piece.contiguous()
            size += b
    parts.append(cur)
    for i, p in enumerate(parts):
        save_file(p, str(out / f"{name}-part{i}.safetensors"))


def assemble(folder: Path, shape: str, dest: Path, tokenizer_dir: Path) -> None:
    """Rebuild ``dest`` (an HF draft directory with its output-token list) from the parts."""
    from safetensors.torch import load_file

    from gelato.models.output_subset import write_output_tokens
    from gelato.zoo.draft_distill import DraftRecipe, TargetFacts, make_draft
    from gelato.zoo.train import save_model

    single = folder / f"{shape}.json"
    meta = json.loads(single.read_text()) if single.is_file() else json.loads((folder / "summary.json").read_text())[shape]
    pieces: dict[str, list[tuple[int, torch.Tensor]]] = {}
    for f in sorted(folder.glob(f"{shape}-part*.safetensors")):
        for k, v in load_file(str(f)).items():
            name, j = k.rsplit("@", 1)
            pieces.setdefault(name, []).append((int(j), v))
    state = {k: torch.cat([v for _, v in sorted(vs, key=lambda x: x[0])]) for k, vs in pieces.items()}
    recipe = DraftRecipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["recipe"].items()})
    facts = TargetFacts.of(json.loads((tokenizer_dir / "config.json").read_text()))
    draft = make_draft(recipe, facts, meta["seed"])
    missing, unexpected = draft.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if unexpected or [m for m in missing if m != "lm_head.weight"]:
        raise RuntimeError(f"parts do not match the shape: missing {missing}, unexpected {unexpected}")
    draft.tie_weights()
    save_model(draft, dest, torch.bfloat16)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tokenizer_dir / name).is_file():
            (dest / name).write_bytes((tokenizer_dir / name).read_bytes())
    write_output_tokens(dest, meta["support"])
    write_training_json(meta, draft, dest.parent / "training.json")


def write_training_json(meta: dict, draft, path: Path) -> None:
    """training.json in the fields of ``gelato models build --stage train``, plus how the GPU run went."""
    from gelato.zoo.teacher import load_teacher, teacher_dir
    from gelato.zoo.train import n_params

    train, held = load_teacher(teacher_dir())
    info = {"recipe": meta["recipe"], "params": n_params(draft), "steps": meta["steps"], "epochs": int(meta["epochs"]),
            "seconds": meta["seconds"], "loss_tokens": meta["loss_tokens"], "final_loss": round(meta["final_loss"], 4),
            "best_held_out": meta["best"], "teacher_sequences": len(train),
            "teacher_answer_tokens": int(sum(len(s.answer) for s in train)), "held_out_queries": len(held),
            "output_support": len(meta["support"]), "seed": meta["seed"], "device": f"cuda ({meta['device']})",
            "torch": meta["torch"], "gpu_run": {
                "how": (f"Trained on one {meta['device']} (torch {meta['torch']}, bf16 autocast) with "
                        f"`scripts/train_draft_gpu.py`, four shapes side by side for {meta['seconds']:.0f} s each "
                        f"(h256-l4/l5/l6-f768 and h288-l4-f768); this one was chosen for its held-out acceptance "
                        f"within c <= 0.12. Parts brought back from the GPU and assembled here with `--assemble`."),
                "command": ("python scripts/train_draft_gpu.py --teacher ../shared/data/smollm2-teacher "
                            "--target-config ~/.cache/gelato/models/smollm2-135m-instruct/config.json --out OUT "
                            "--seconds 290 --shapes h256-l4-f768,h256-l5-f768,h256-l6-f768,h288-l4-f768\n"
                            f"python scripts/train_draft_gpu.py --assemble OUT --shape {meta['shape']} "
                            "--dest src/gelato/zoo_data/smollm2/draft "
                            "--tokenizer-dir ~/.cache/gelato/models/smollm2-135m-instruct")}}
    path.write_text(json.dumps(info, indent=1) + "\n")


def pick(folder: Path, dest: Path, shapes: list[str]) -> None:
    """Keep the first shape (the safe cost) and the best of the others by held-out K = 4 acceptance."""
    import shutil

    metas = {s: json.loads((folder / f"{s}.json").read_text()) for s in shapes if (folder / f"{s}.json").is_file()}
    score = {s: m["best"]["mean_acceptance_length"]["4"] for s, m in metas.items()}
    print({s: (score[s], metas[s]["steps"], round(metas[s]["final_loss"], 3)) for s in metas})
    keep = [s for s in shapes[:1] if s in metas]
    others = sorted((s for s in metas if s not in keep), key=lambda s: -score[s])
    keep += others[:1]
    summary = {s: {k: v for k, v in m.items() if k != "support" or s in keep} for s, m in metas.items()}
    (dest / "summary.json").write_text(json.dumps(summary))
    (dest / "logs.txt").write_text("".join((folder / f"{s}.log").read_text() for s in metas))
    for s in keep:
        for f in folder.glob(f"{s}-part*.safetensors"):
            shutil.copy(f, dest / f.name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher")
    ap.add_argument("--target-config")
    ap.add_argument("--out")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--shapes", default="h256-l4-f768")
    ap.add_argument("--shape")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--eval-sequences", type=int, default=307)
    ap.add_argument("--assemble")
    ap.add_argument("--dest")
    ap.add_argument("--tokenizer-dir")
    ap.add_argument("--pick", help="copy the parts of the first shape and of the best other into this folder")
    args = ap.parse_args()
    if args.pick:
        pick(Path(args.out), Path(args.pick), args.shapes.split(","))
        return
    if args.assemble:
        assemble(Path(args.assemble), args.shape, Path(args.dest), Path(args.tokenizer_dir))
        return
    if args.shape:
        train_one(args)
        return
    Path(args.out).mkdir(parents=True, exist_ok=True)
    procs = [subprocess.Popen([sys.executable, __file__, "--teacher", args.teacher, "--target-config",
                               args.target_config, "--out", args.out, "--seconds", str(args.seconds),
                               "--shape", spec.split(":")[0], "--lr", spec.split(":")[1] if ":" in spec else str(args.lr),
                               "--seed", str(args.seed), "--device", args.device,
                               "--eval-sequences", str(args.eval_sequences)]) for spec in args.shapes.split(",")]
    sys.exit(max(p.wait() for p in procs))


if __name__ == "__main__":
    main()
