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
Results: results_dir (default WORKDIR)/arch_clue.md and .png (dev MLM accuracy against
cumulative train FLOPs = step x FLOPs a step).

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
from configs.arch_clue import ARCHS, LABELS, trunk_pair
from experiments import cli, clue_results, lst_clue
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
from gau_jax.train.runlog import RunLog, markdown_table, mean_spread, results_header, run_key

SU_TASK = {"chid_fewclue": "chid"}  # our task → the row of Su's table it is set against


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


def last_quarter_gain(curve: list[tuple[int, float, float]]) -> float:
    """Dev MLM accuracy gained over the last quarter of the steps (NaN: too few evaluations)."""
    before = [acc for step, _, acc in curve if step <= 0.75 * curve[-1][0]] if curve else []
    return curve[-1][2] - before[-1] if before and len(curve) > 1 else math.nan


def plot(records: dict[str, dict], costs: dict[str, dict], path: Path) -> None:
    """Dev MLM accuracy against cumulative train FLOPs, both trunks on one axes."""
    fig, axes = cli.figure(1, 1, figsize=(7.5, 4.5))
    ax = axes[0][0]
    for arch, r in records.items():
        k = costs[arch]
        ax.plot([f / 1e15 for _, f, _ in r["curve"]], [100 * a for _, _, a in r["curve"]],
                marker="o", ms=3, label=f"{LABELS[arch]}: {k['params'] / 1e6:.2f}M params, "
                f"{k['flops_per_token'] / 1e6:.2f} MFLOP/token")
    ax.set(xlabel="cumulative train matmul FLOPs (PFLOP; gau_jax/models/costs.py)",
           ylabel="MLM dev accuracy (%)", title="GAU-α vs RoFormerV2 at equal compute")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _ahead(gau: float, rof: float, spread: float = 0.0) -> str:
    return "tie" if abs(gau - rof) <= spread else LABELS["gau_alpha" if gau > rof else
                                                          "roformer_v2"]


def task_line(task: str, runs: list[dict], recipe: ml_collections.ConfigDict) -> list[Any]:
    """One task's row: scores of both trunks, baseline, who is ahead here and in Su's table;
    a direction is compared with Su's only when every seed of both trunks beats the baseline."""
    metric, base = runs[0]["result"]["metric"], runs[0]["baseline"]
    by = {a: [r["result"][metric] for r in runs if r["arch"] == a] for a in ARCHS}
    (mg, sg), (mr, sr) = (mean_spread(by[a]) for a in ARCHS)
    ours = _ahead(mg, mr, max(sg, sr))  # within one seed sd: no direction
    su_g = clue_results.GAU_ALPHA_BASE.get(SU_TASK.get(task, task))
    su_r = clue_results.ROFORMER_V2_STAR_BASE.get(SU_TASK.get(task, task))
    su = _ahead(su_g, su_r) if su_g and su_r else "–"
    above = [min(by[a]) > base for a in ARCHS]
    return [task, metric, f"{recipe.max_length} / {recipe.batch_size} / {recipe.steps}",
            f"{base:.1f}", *(f"{m:.1f} ± {s:.1f}" for m, s in ((mg, sg), (mr, sr))),
            *(" / ".join(f"{v:.1f}" for v in by[a]) for a in ARCHS),
            " / ".join("yes" if a else "no" for a in above), f"{mg - mr:+.1f}",
            ours, f"{su_g} / {su_r} ({su})" if su_r else "–",
            "–" if su == "–" or ours == "tie" or not all(above) else
            ("yes" if ours == su else "no")]


def report(c: ml_collections.ConfigDict, costs: dict[str, dict], records: dict[str, dict],
           manifest: dict, rows: list[dict], out: Path) -> str:
    """arch_clue.md: the pair, the pretraining, the CLUE table beside Su's direction."""
    md = results_header("GAU-α vs RoFormerV2 at equal compute on CLUE "
                        "(generated by experiments/arch_clue.py)", c.command)
    p, pair, tokens = c.pretrain, trunk_pair(c, manifest["vocab"]["size"]), manifest["tokens"]
    md += ["Corpus: People's Daily 1998 + the train texts of "
           f"{', '.join(cli.names(c.corpus_tasks))}; {manifest['documents']} documents, "
           f"{manifest['duplicates']} duplicates dropped, {tokens['train']} train / "
           f"{tokens['dev']} held-out dev tokens, {manifest['vocab']['size']} characters. MLM "
           f"(both trunks): {p.total_steps} steps x {p.batch_size} x {p.max_length} tokens, "
           f"{p.max_predictions} predictions a row, {p.mask_unit} masking, LAMB at "
           f"{p.learning_rate:g}, same seed and data order. FLOPs: gau_jax/models/costs.py at "
           "that batch and length. Wall: this machine, summed over the run's pieces.", ""]
    table = []
    for arch in ARCHS:
        m, k, r = pair[arch], costs[arch], records[arch]
        step, _, acc = r["curve"][-1] if r["curve"] else (0, 0.0, math.nan)
        shape = (f"{m.num_layers} x GAU, d {m.hidden_size}, e {m.intermediate_size}, s "
                 f"{m.key_size}" if m.block == "gau" else f"{m.num_layers} x (MHA {m.num_heads}"
                 f" x {m.key_size} + FFN {m.intermediate_size}), d {m.hidden_size}")
        table.append([LABELS[arch], f"{shape}, {m.attention_norm}", f"{k['params']:,}",
                      f"{k['flops_per_token'] / 1e6:.3f} M", f"{k['params_ratio']:.4f}",
                      f"{k['flops_ratio']:.4f}", step, f"{100 * acc:.2f}",
                      f"{100 * last_quarter_gain(r['curve']):+.2f}",
                      f"{r['wall_time_s'] / 60:.0f} min (pieces: {r['pieces']}"
                      + (f", {r['killed']} killed: their train time from the log" if
                         r["killed"] else "")
                      + (", 1-min load at their ends {:.1f}–{:.1f}".format(*r["loads"])
                         if r["loads"] else "") + ")"])
    md += [markdown_table(["trunk", "shape", "params", "train FLOPs / token", "params ratio",
                           "FLOPs ratio", "steps", "dev MLM acc %", "gain, last quarter",
                           "wall"], table), "", "![MLM dev accuracy vs FLOPs](arch_clue.png)", ""]
    if not rows:
        return "\n".join(md + [f"No fine-tuning yet: pretrain_stop_at={c.pretrain_stop_at} "
                               "pretrains only; rerun without it.", ""]) + "\n"
    md += [f"Fine-tuning: full, seeds {', '.join(cli.names(c.seeds))} (mean ± sample sd), one "
           "recipe (max_length / batch / steps: Su's scaled, configs/arch_clue.py) for both. "
           f"Score of the final params on the first {c.dev_rows or 'all'} dev rows by "
           "`experiments.evaluate`, baseline on the same rows; tie: within one seed sd.", ""]
    missing = {r["task"] for r in rows if "missing" in r}
    lines = [task_line(t, [r for r in rows if r["task"] == t], c.recipes[t])
             if t not in missing else [t, "–", "–", "not run: no data", *["–"] * 8, "not run"]
             for t in cli.names(c.tasks)]
    md += [markdown_table(["task", "metric", "recipe", "baseline", "GAU-α", "RoFormerV2",
                           "GAU-α seeds", "RoFormerV2 seeds", "every seed > baseline",
                           "Δ", "ahead here", "Su base: GAU-α / RoFormerV2*", "agrees"], lines),
           ""]
    say = {k: ", ".join(line[0] for line in lines if line[-1] == k) or "none" for k in
           ("yes", "no", "–")}
    minutes = {a: sum(r.get("wall_time_s", 0) for r in rows if r.get("arch") == a) / 60
               for a in ARCHS}
    loads = [r["load"] for r in rows if "load" in r]
    md += [f"Same direction as Su's table: {say['yes']}. Opposite: {say['no']}. No direction "
           f"(a tie here, a seed at or below the baseline, or not in Su's table): {say['–']}. "
           "Fine-tuning wall time: "
           + ", ".join(f"{LABELS[a]} {v:.0f} min" for a, v in minutes.items())
           + (f" (1-min load after each run {min(loads):.1f}–{max(loads):.1f})" if loads
              else "") + ".", "",
           "Data: the snapshot's (AFQMC: DataCLUE's 10k; IFLYTEK, CSL, CLUEWSC2020, ChID: "
           "FewCLUE's; CMRC2018: the trial set). Su's: base models, CLUE's full dev sets.", ""]
    return "\n".join(md + cli.reading_notes(out, "arch_clue")) + "\n"


if __name__ == "__main__":
    cli.main(run, "arch_clue")
