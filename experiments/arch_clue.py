"""GAU-α vs RoFormerV2 at equal compute: MLM dev accuracy against train FLOPs, then every local
CLUE task fine-tuned from each trunk (configs/arch_clue.py: the pair, the recipes, the cost).

    python -m experiments.arch_clue --config configs/arch_clue.py:full --workdir runs/arch_clue \
        --config.data_dir=../shared/data/clue

1. Corpus, once: People's Daily 1998 + every text of the corpus_tasks' train rows, a character
   vocabulary of it, prepared into WORKDIR/corpus-<hash>/ (duplicates dropped, dev_fraction held
   out as the MLM dev split).
2. Trunks, once the pair is checked (parameters and train matmul FLOPs per token at the
   pretraining shape, gau_jax/models/costs.py, within pair_tolerance): configs/pretrain.py with
   each `models` entry and the shared `pretrain` fields → WORKDIR/trunk-<arch>-<hash>, resumed
   from its checkpoints on a rerun; each piece's wall time: WORKDIR/pretrain_wall.jsonl (a
   piece killed before it wrote its end counts its train time from the trunk's train log).
3. Per task, trunk and seed, clue_results' run (configs/finetune.py, method full, the task's
   `recipes` entry) scored by `experiments.evaluate` on the first dev_rows dev rows, beside the
   task's baseline; a finished run is a line of WORKDIR/runs.jsonl (a rerun skips it).
Results (arch_clue_report.py): results_dir (default WORKDIR)/arch_clue.md and .png (dev MLM
accuracy against cumulative train FLOPs = step x FLOPs a step).

GAU: Hua et al. 2022, "Transformer Quality in Linear Time" (arXiv:2202.10447). GAU-α and its
CLUE table: Su, kexue.fm/archives/9052 (github.com/ZhuiyiTechnology/GAU-alpha); RoFormerV2:
Su, kexue.fm/archives/8998.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import ml_collections

from configs import pretrain
from configs.arch_clue import ARCHS, trunk_pair
from experiments import cli, clue_results, lst_clue
from experiments.arch_clue_report import plot, report
from gau_jax.data import corpus_prepare
from gau_jax.data.corpus_format import is_prepared
from gau_jax.data.prepare_corpus import build_vocab, prepare
from gau_jax.data.readers import DataError
from gau_jax.data.tasks import get_task
from gau_jax.data.tokenizer import load_tokenizer
from gau_jax.models.costs import param_count, train_matmul_flops
from gau_jax.tasks import submission
from gau_jax.tasks.evaluation import baseline
from gau_jax.train.loop import Trainer
from gau_jax.train.metrics import read_jsonl
from gau_jax.train.runlog import RunLog, run_key


def pair_costs(c: ml_collections.ConfigDict, vocab_size: int | None = None) -> dict[str, dict]:
    """Per trunk: parameters, train matmul FLOPs a pretraining step and a token (batch x
    max_length tokens, max_predictions scored a row), both as a ratio to RoFormerV2's."""
    p, out = c.pretrain, {}
    for arch, m in trunk_pair(c, vocab_size).items():
        step = train_matmul_flops(m, p.batch_size, p.max_length, p.max_predictions or None)
        out[arch] = {"params": param_count(m), "flops_per_step": step,
                     "flops_per_token": step / (p.batch_size * p.max_length)}
    for v in out.values():
        v["params_ratio"] = v["params"] / out["roformer_v2"]["params"]
        v["flops_ratio"] = v["flops_per_token"] / out["roformer_v2"]["flops_per_token"]
    return out


def check_pair(c: ml_collections.ConfigDict, costs: dict[str, dict]) -> None:
    """ValueError naming config.models unless GAU-α has 2 layers per RoFormerV2 block and the
    pair's parameters and FLOPs per token agree within config.pair_tolerance (0: unchecked)."""
    layers = {a: int(c.models[a].overrides.num_layers) for a in ARCHS}
    if layers["gau_alpha"] != 2 * layers["roformer_v2"]:
        raise ValueError(f"config.models: GAU-α needs two GAU layers per RoFormerV2 block; "
                         f"num_layers are {layers}")
    g = costs["gau_alpha"]
    if c.pair_tolerance and max(abs(g["params_ratio"] - 1),
                                abs(g["flops_ratio"] - 1)) > c.pair_tolerance:
        raise ValueError(f"config.models: GAU-α / RoFormerV2 parameters {g['params_ratio']:.4f}"
                         f", FLOPs per token {g['flops_ratio']:.4f}: more than "
                         f"config.pair_tolerance={c.pair_tolerance} apart")


def prepare_pretraining_corpus(c: ml_collections.ConfigDict, workdir: Path) -> Path:
    """WORKDIR/corpus-<hash>/, the prepared corpus both trunks read (built once, resumable)."""
    name = run_key("corpus", {"data_dir": c.data_dir, "tasks": cli.names(c.corpus_tasks),
                              "max_lines": c.corpus_max_lines, "vocab_size": c.vocab_size,
                              "max_length": c.pretrain.max_length,
                              "dev_fraction": c.dev_fraction})
    out, raw, vocab = workdir / name, workdir / f"{name}.txt", workdir / f"{name}-vocab.txt"
    if is_prepared(out):
        return out
    if not raw.exists():
        n = lst_clue.write_corpus(lst_clue.corpus_texts(c.data_dir, cli.names(c.corpus_tasks),
                                                        c.corpus_max_lines), raw)
        print(f"corpus: {n} lines → {raw}", flush=True)
    if not vocab.exists():
        build_vocab([raw], c.vocab_size, vocab)
    settings = corpus_prepare.Settings(max_length=c.pretrain.max_length,
                                       dev_fraction=c.dev_fraction)
    prepare([raw], out, vocab, settings, workers=0, command="experiments.arch_clue")
    return out


def pretrain_trunk(c: ml_collections.ConfigDict, arch: str, corpus: Path,
                   workdir: Path) -> Path:
    """WORKDIR/trunk-<arch>-<hash> (configs/pretrain.py:<preset>: RoFormerV2 ramps its
    residuals in), trained or resumed up to pretrain_stop_at (0: to the end)."""
    out = workdir / run_key(f"trunk-{arch}", {"model": c.models[arch].to_dict(),
                                              "pretrain": c.pretrain.to_dict(),
                                              "corpus": corpus.name})
    if (out / "summary.json").exists():
        return out
    p = pretrain.get_config(c.models[arch].preset)
    p.model = trunk_pair(c, load_tokenizer(corpus / "vocab.txt").vocab_size)[arch]
    p.update_from_flattened_dict({**c.pretrain.to_dict(), "data_dir": str(corpus),
                                  "log_every_steps": c.pretrain.eval_every_steps,
                                  "progress_bar": False, "tensorboard": False})
    trainer = Trainer(p, out)
    piece = {"trunk": out.name, "from_step": trainer.step(), "started": time.time()}
    try:
        if piece["from_step"] < (c.pretrain_stop_at or p.total_steps):
            _log_piece(workdir, piece)  # a piece killed before its end line: trunk_record
            trainer.run(stop_at=c.pretrain_stop_at or None)
    finally:
        if trainer.step() > piece["from_step"]:
            _log_piece(workdir, {**piece, "to_step": trainer.step(), "load": os.getloadavg(),
                                 "wall_time_s": time.time() - piece["started"]})
        trainer.close()
    return out


def _log_piece(workdir: Path, record: dict) -> None:
    with (workdir / "pretrain_wall.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def killed_piece_s(trunk: Path, start: int, until: float) -> float:
    """Training seconds of a piece that started at step `start` and was killed before it wrote
    its end line: its last train log at a step in (start, until] ran `steps_per_s` (averaged
    since the piece's first update) for the steps since `start`; 0 when it logged none."""
    logs = [r for r in read_jsonl(trunk / "metrics.jsonl") if r["split"] == "train"
            and start < r["step"] <= until and r.get("steps_per_s", 0) > 0]
    return (logs[-1]["step"] - start) / logs[-1]["steps_per_s"] if logs else 0.0


def trunk_record(trunk: Path, costs: dict, workdir: Path) -> dict[str, Any]:
    """A trunk's dev MLM curve [(step, cumulative FLOPs, accuracy)] and summed wall time."""
    try:
        evals = lst_clue.dev_curve(trunk)
    except (FileNotFoundError, ValueError):  # no dev evaluation yet
        evals = []
    wall = workdir / "pretrain_wall.jsonl"
    lines = [r for r in read_jsonl(wall) if r["trunk"] == trunk.name] if wall.exists() else []
    pieces = [r for r in lines if "wall_time_s" in r]
    ended = {r.get("started") for r in pieces}
    starts = sorted((r["started"], r["from_step"]) for r in lines if "wall_time_s" not in r)
    killed = [killed_piece_s(trunk, step, starts[i + 1][1] if i + 1 < len(starts) else math.inf)
              for i, (t0, step) in enumerate(starts) if t0 not in ended]
    killed = [t for t in killed if t > 0]
    loads = [r["load"][0] for r in pieces if "load" in r]
    return {"finished": (trunk / "summary.json").exists(), "pieces": len(pieces) + len(killed),
            "loads": (min(loads), max(loads)) if loads else None,
            "killed": len(killed), "curve": [(e["step"], e["step"] * costs["flops_per_step"],
                                              e["accuracy"]) for e in evals],
            "wall_time_s": sum(r["wall_time_s"] for r in pieces) + sum(killed)}


def finetune_rows(c: ml_collections.ConfigDict, trunks: dict[str, Path],
                  workdir: Path) -> list[dict]:
    """Every (task, trunk, seed) run: read from runs.jsonl, else trained and scored."""
    log, rows = RunLog(workdir / "runs.jsonl", key_fields=("run",)), []
    for task in cli.names(c.tasks):
        if task not in c.recipes:
            raise ValueError(f"config.recipes has no entry for {task!r} (config.tasks)")
        recipe = c.recipes[task].to_dict()
        steps, lr = recipe.pop("steps"), recipe.pop("learning_rate")
        try:
            dev = submission.split_examples(task, c.data_dir, "dev", max_rows=c.dev_rows,
                                            bad_rows=get_task(task).recipe.bad_rows)
        except DataError as e:
            rows.append({"task": task, "missing": str(e)})
            continue
        base = None
        for arch in ARCHS:
            for seed in (int(s) for s in cli.names(c.seeds)):
                o = clue_results.run_overrides(ml_collections.ConfigDict({
                    "overrides": {**c.finetune.to_dict(), **recipe}, "task_overrides": {},
                    "data_dir": c.data_dir, "steps": steps, "seed": seed}),
                    task, "full", lr, trunks[arch].name)
                name = run_key(f"{task}_{arch}_{steps}steps_seed{seed}", o)
                row = log.get({"run": name})
                if row is None:
                    base = baseline(task, dev) if base is None else base
                    out = clue_results.finetune_and_score(
                        clue_results.finetune_config(o, trunks[arch]), workdir / "runs" / name,
                        c.dev_rows)
                    row = log.append({"run": name, "task": task, "arch": arch, "seed": seed,
                                      "steps": steps, "lr": lr, "baseline": base, **out,
                                      "load": os.getloadavg()[0]})
                    print(json.dumps(row, ensure_ascii=False), flush=True)
                rows.append(row)
    return rows


def run(c: ml_collections.ConfigDict, workdir: str | Path) -> list[dict]:
    """Corpus, both trunks, every fine-tuning run not yet in runs.jsonl, arch_clue.md / .png."""
    workdir = Path(workdir)
    if not c.data_dir:
        raise ValueError("config.data_dir is empty: set the CLUE folder, "
                         "--config.data_dir=/path/to/clue")
    check_pair(c, pair_costs(c))  # as configured, before anything is built
    corpus = prepare_pretraining_corpus(c, workdir)
    manifest = json.loads((corpus / "manifest.json").read_text())
    costs = pair_costs(c, manifest["vocab"]["size"])
    check_pair(c, costs)  # with the corpus's vocabulary
    trunks = {arch: pretrain_trunk(c, arch, corpus, workdir) for arch in ARCHS}
    records = {arch: trunk_record(trunks[arch], costs[arch], workdir) for arch in ARCHS}
    done = all(r["finished"] for r in records.values()) and not c.pretrain_stop_at
    rows = finetune_rows(c, trunks, workdir) if done else []
    out = cli.results_dir(c, workdir)
    out.mkdir(parents=True, exist_ok=True)
    plot(records, costs, out / "arch_clue.png")
    text = report(c, costs, records, manifest, rows, out)
    (out / "arch_clue.md").write_text(text, encoding="utf-8")
    print(text)
    return rows


if __name__ == "__main__":
    cli.main(run, "arch_clue")
