"""Corpus pipeline benchmark: preparation speed, loader speed, a pretraining process's memory.

    python -m experiments.bench_corpus --config configs/bench_corpus.py:full --workdir runs/corpus

Measured (configs/bench_corpus.py for the sizes), each beside the earlier in-memory path where
it has one:
    preparation   MB of raw text a second, and per core, at 1 and 2 worker processes
                  (`python -m gau_jax.data.prepare_corpus`, rjieba, max_length windows)
    disk          bytes per token of the prepared shards
    loader        tokens a second on one process at batch x max_length: read + mask + batch,
                  no model (the prepared loader with its prefetch thread; the in-memory path:
                  grain over the document list, jieba + tokeniser + masker per row, 2 threads)
    process       one pretraining process per corpus and path (a 1-layer model, train_steps
                  steps): peak RSS (getrusage), seconds from its start to the first batch and
                  from the model being built to the first batch
Targets: loader ≥ 2M tokens/s; peak RSS at 1 GB within 10% of 0.1 GB; first batch
within 10 s of the model; preparation ≥ 2 MB/s per core, near-linear to 2 workers; ≤ 2.5 bytes
per token on disk. Results: results_dir/corpus.{md,json}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ml_collections

from experiments import cli

MB = 1e6


def make_corpus(path: Path, size_mb: float) -> Path:
    """People's Daily paragraphs, copy c of each suffixed with c, until size_mb MB."""
    from gau_jax.data.corpus import people_daily_texts

    if path.exists() and path.stat().st_size >= size_mb * MB:
        return path
    docs, written, copy = people_daily_texts(), 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < size_mb * MB:
            for d in docs:
                line = f"{d}{copy}\n"
                f.write(line)
                written += len(line.encode("utf-8"))
                if written >= size_mb * MB:
                    break
            copy += 1
    return path


def _pretrain_config(c, data_dir: str, vocab: Path) -> ml_collections.ConfigDict:
    from configs import pretrain

    p = pretrain.get_config("gau_alpha_tiny")
    p.model.update(num_layers=1, hidden_size=64, intermediate_size=128, key_size=32)
    p.update(data_dir=data_dir, vocab_path=str(vocab), batch_size=c.batch_size,
             max_length=c.max_length, total_steps=c.train_steps, eval_every_steps=10**6,
             eval_batches=1, checkpoint_every_steps=10**6, progress_bar=False,
             tensorboard=False, async_checkpoints=False, log_every_steps=1)
    return p


def _old_inputs(p, workdir: Path) -> Any:
    """The earlier pretraining inputs: the corpus read whole, rows masked in grain threads."""
    from gau_jax.data import pipeline, sources
    from gau_jax.data.tokenizer import load_tokenizer
    from gau_jax.models import build_encoder
    from gau_jax.train.inputs import RunSetup
    from gau_jax.train.step import mlm_sums_fn

    docs = sources.load_corpus(p.data_dir)
    n_dev = min(500, len(docs) // 10)
    tok = load_tokenizer(p.vocab_path)
    p.model.vocab_size = tok.vocab_size
    model = build_encoder(p.model)
    common = dict(batch_size=p.batch_size, max_len=p.max_length, pack=True, num_threads=2)
    train = iter(pipeline.mlm_dataset(docs[n_dev:], tok, seed=0, **common))
    dev = lambda: pipeline.mlm_dataset(docs[:n_dev], tok, seed=12345, train=False, **common)
    return RunSetup(model=model, sums_fn=mlm_sums_fn(model), train=train, dev_batches=dev,
                  model_config=p.model, tokenizer=tok, config=p)


def child(spec: str) -> None:
    """One pretraining process (run by `process_run`): prints a JSON line of its facts."""
    import resource

    s = json.loads(spec)
    from gau_jax.train.inputs import resolve_config
    from gau_jax.train.loop import Trainer
    from gau_jax.train.setup import build_inputs

    c = ml_collections.ConfigDict(s["bench"])
    p = resolve_config(_pretrain_config(c, s["data_dir"], Path(s["vocab"])))
    workdir = Path(s["workdir"])
    inputs = _old_inputs(p, workdir) if s["path"] == "in-memory" else build_inputs(p, workdir)
    t_model = time.time()
    first = next(inputs.train)
    t_first = time.time()
    assert first["input_ids"].shape[1] <= c.max_length
    trainer = Trainer(p, workdir, inputs=inputs)
    summary = trainer.run()
    trainer.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("RESULT " + json.dumps({"peak_rss": rss, "start_to_first_batch_s": t_first - s["t0"],
                                  "model_to_first_batch_s": t_first - t_model,
                                  "loss": summary["train_loss"]}), flush=True)


def process_run(c, path: str, data_dir: str, vocab: Path, workdir: Path) -> dict:
    spec = json.dumps({"bench": c.to_dict(), "path": path, "data_dir": data_dir,
                       "vocab": str(vocab), "workdir": str(workdir), "t0": time.time()})
    env = dict(os.environ, XLA_FLAGS="", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", "import sys; from experiments.bench_corpus "
                          "import child; child(sys.argv[1])", spec], env=env, text=True,
                         capture_output=True, timeout=3600)
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not lines:
        raise RuntimeError(f"{path} process failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def loader_speed(c, prepared: Path, raw: Path, vocab: Path) -> dict[str, float]:
    """Tokens a second (non-pad positions) of both paths on one process."""
    from gau_jax.data import pipeline, sources
    from gau_jax.data.corpus_format import PreparedCorpus
    from gau_jax.data.corpus_loader import BatchMaker, CorpusBatches
    from gau_jax.data.tokenizer import load_tokenizer

    def rate(it, n: int) -> float:
        next(it)  # start-up excluded
        t, tokens = time.perf_counter(), 0
        for _ in range(n):
            tokens += int(next(it)["attention_mask"].sum())
        return tokens / (time.perf_counter() - t)

    maker = BatchMaker([PreparedCorpus(prepared)], [1.0], batch_size=c.batch_size,
                       rows=slice(None), seed=0)
    it = CorpusBatches(maker)
    new = rate(it, c.loader_batches)
    it.close()
    docs = sources.load_corpus(raw)
    old = rate(iter(pipeline.mlm_dataset(docs, load_tokenizer(vocab), batch_size=c.batch_size,
                                         max_len=c.max_length, pack=True, num_threads=2)),
               c.old_batches)
    return {"prepared": new, "in-memory": old}


def run(c: ml_collections.ConfigDict, workdir: Path) -> dict:
    from gau_jax.data import corpus_prepare as prep
    from gau_jax.data.corpus import people_daily_texts
    from gau_jax.data.prepare_corpus import prepare
    from gau_jax.data.tokenizer import build_char_vocab

    workdir.mkdir(parents=True, exist_ok=True)
    out = cli.results_dir(c, workdir)
    parts = cli.names(c.parts)
    old = json.loads((out / "corpus.json").read_text()) if (out / "corpus.json").exists() else {}
    vocab = workdir / "vocab.txt"
    build_char_vocab(people_daily_texts(), c.vocab_size, save_path=vocab)
    settings = prep.Settings(max_length=c.max_length)
    rec: dict[str, Any] = {"prepare": [], "process": [], "load": os.getloadavg(),
                           "parts_rerun": list(parts)}
    raws, prepared = {}, {}
    for size in c.sizes_mb:
        raws[size] = make_corpus(workdir / f"raw_{size}mb.txt", size)
        counts = c.workers if size == c.sizes_mb[0] else (max(c.workers),)
        for w in counts:
            out_dir = workdir / f"prepared_{size}mb_w{w}"
            if "prepare" not in parts:
                prepared[size] = out_dir
                continue
            t = time.time()
            m = prepare([raws[size]], out_dir, vocab, settings, workers=w)
            seconds = time.time() - t
            mb = raws[size].stat().st_size / MB
            rec["prepare"].append({"size_mb": size, "workers": w, "seconds": seconds,
                                   "mb_per_s": mb / seconds, "mb_per_s_core": mb / seconds / w,
                                   "disk_bytes_per_token": m["disk_bytes_per_token"],
                                   "tokens": sum(m["tokens"].values()),
                                   "load": os.getloadavg()[0]})
            prepared[size] = out_dir
            print(rec["prepare"][-1], flush=True)
    if "loader" in parts:
        rec["loader"] = loader_speed(c, prepared[c.sizes_mb[0]], raws[c.sizes_mb[0]], vocab)
        rec["loader"]["load"] = os.getloadavg()[0]
        print(rec["loader"], flush=True)
    for size in c.sizes_mb if "process" in parts else ():
        for path, data in (("prepared", prepared[size]), ("in-memory", raws[size])):
            r = process_run(c, path, str(data), vocab, workdir / f"run_{path}_{size}")
            rec["process"].append({"size_mb": size, "path": path, **r,
                                   "load": os.getloadavg()[0]})
            print(rec["process"][-1], flush=True)
    for part in ("prepare", "loader", "process"):
        if part not in parts:
            rec[part] = old[part]  # KeyError: no earlier run to read it from
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpus.json").write_text(json.dumps(rec, indent=1))
    notes = "\n".join(cli.reading_notes(out, "corpus"))
    (out / "corpus.md").write_text(report(c, rec) + ("\n" + notes if notes else ""))
    return rec


def report(c, rec: dict) -> str:
    from gau_jax.train.runlog import markdown_table, results_header

    lines = results_header("Corpus pipeline: preparation, loader, memory", c.command)
    lines += [f"Windows of {c.max_length} tokens, batches of {c.batch_size}; character "
              f"vocabulary of {c.vocab_size}; load average at the start "
              f"{rec['load'][0]:.2f} (each row gives its own). Measured by this command: "
              f"{', '.join(rec['parts_rerun'])}; the other sections are an earlier run's "
              "(corpus.json).", "", "## Preparation", ""]
    lines.append(markdown_table(
        ["corpus MB", "workers", "seconds", "MB/s", "MB/s per core", "bytes/token on disk",
         "load"],
        [[p["size_mb"], p["workers"], f"{p['seconds']:.1f}", f"{p['mb_per_s']:.2f}",
          f"{p['mb_per_s_core']:.2f}", f"{p['disk_bytes_per_token']:.3f}", f"{p['load']:.2f}"]
         for p in rec["prepare"]]))
    lo = rec["loader"]
    lines += ["", "## Loader (one process, no model)", "",
              f"Load average {lo.get('load', float('nan')):.2f}.", "", markdown_table(
        ["path", "tokens/s", "vs in-memory"],
        [[k, f"{lo[k]:,.0f}", f"{lo[k] / lo['in-memory']:.1f}x"]
         for k in ("prepared", "in-memory")]),
        "", "## A pretraining process", "", markdown_table(
        ["corpus MB", "path", "peak RSS MiB", "start → first batch s", "model → first batch s",
         "load"],
        [[p["size_mb"], p["path"], f"{p['peak_rss'] / 2**20:.0f}",
          f"{p['start_to_first_batch_s']:.1f}", f"{p['model_to_first_batch_s']:.2f}",
          f"{p['load']:.2f}"] for p in rec["process"]]), "", "## Targets", ""]
    lines += target_lines(c, rec)
    return "\n".join(lines) + "\n"


def target_lines(c, rec: dict) -> list[str]:
    def line(ok: bool, text: str) -> str:
        return f"- [{'x' if ok else ' '}] {text}"

    out = [line(rec["loader"]["prepared"] >= 2e6,
                f"loader {rec['loader']['prepared'] / 1e6:.2f}M tokens/s (≥ 2M)")]
    proc = {(p["size_mb"], p["path"]): p for p in rec["process"]}
    small, big = c.sizes_mb[0], c.sizes_mb[-1]
    a, b = proc[(small, "prepared")]["peak_rss"], proc[(big, "prepared")]["peak_rss"]
    out.append(line(b <= 1.1 * a, f"peak RSS {big} MB / {small} MB corpus = {b / a:.3f} "
                                  "(≤ 1.10)"))
    worst = max(p["model_to_first_batch_s"] for p in rec["process"] if p["path"] == "prepared")
    out.append(line(worst <= 10, f"first batch {worst:.2f} s after the model (≤ 10 s)"))
    prep = [p for p in rec["prepare"] if p["size_mb"] == small]
    one = next(p for p in prep if p["workers"] == 1)
    out.append(line(one["mb_per_s_core"] >= 2, f"preparation {one['mb_per_s_core']:.2f} MB/s "
                                               "per core at 1 worker (≥ 2)"))
    for p in prep:
        if p["workers"] > 1:
            out.append(line(p["mb_per_s"] >= 0.8 * p["workers"] * one["mb_per_s"],
                            f"{p['workers']} workers: {p['mb_per_s'] / one['mb_per_s']:.2f}x "
                            "one worker (near-linear: ≥ 0.8 x workers)"))
    disk = max(p["disk_bytes_per_token"] for p in rec["prepare"])
    out.append(line(disk <= 2.5, f"{disk:.3f} bytes per token on disk (≤ 2.5)"))
    return out


if __name__ == "__main__":
    cli.main(run, "bench_corpus")
