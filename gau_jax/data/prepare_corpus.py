"""Prepare a pretraining corpus once; pretrain from it on any number of hosts.

    python -m gau_jax.data.prepare_corpus INPUT [INPUT ...] --output DIR --vocab VOCAB.txt \
        [--workers N] [--max_length 512] [--dev_fraction 0.01] [--segmenter rjieba]
    python -m gau_jax.data.prepare_corpus INPUT ... --output DIR --build_vocab 21128 \
        [--vocab_sample 0.1]     # a character vocabulary from (a sample of) the corpus first

INPUTs are text files (one document per line), JSON Lines (`--text_field`), `.gz` of either,
or folders of them. The passes, the ledger that makes a killed run resumable and the
fingerprint are gau_jax/data/corpus_prepare.py's; the files written are
gau_jax/data/corpus_format.py's. Then:

    python -m experiments.train --config configs/pretrain.py:gau_alpha_base \
        --workdir runs/pt --config.data_dir=DIR --config.max_length=512
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import multiprocessing
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gau_jax.atomic import write_text_atomic
from gau_jax.data import corpus_format as fmt
from gau_jax.data import corpus_prepare as prep
from gau_jax.data.readers import DataError
from gau_jax.data.tokenizer import count_char_units, load_tokenizer, vocab_from_counts

_log = logging.getLogger(__name__)


def _init_worker() -> None:
    os.environ["RAYON_NUM_THREADS"] = "1"  # one core per worker (tokenizers' thread pool)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def _call(job: tuple[Callable, tuple]) -> Any:
    fn, args = job
    return fn(*args)


def run_jobs(fn: Callable, jobs: Sequence[tuple], workers: int, desc: str) -> list[Any]:
    """fn(*job) for each job: in this process (workers=0) or a pool of spawned workers."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="shard", disable=None)
    try:
        if workers <= 0 or len(jobs) <= 1 and workers <= 1:
            out = []
            for job in jobs:
                out.append(fn(*job))
                bar.update()
            return out
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker) as pool:
            out = []
            for r in pool.imap(_call, [(fn, job) for job in jobs]):
                out.append(r)
                bar.update()
            return out
    finally:
        bar.close()


def _count_units(shard: prep.Shard, text_field: str, sample: float) -> collections.Counter:
    threshold = sample * 2.0**64
    docs = (t for t in prep.iter_documents(shard, text_field)
            if sample >= 1 or prep.doc_key(t) < threshold)
    return count_char_units(docs)


def build_vocab(inputs: Sequence[str | os.PathLike], vocab_size: int, path: Path,
                sample: float = 1.0, text_field: str = "text", workers: int = 0) -> Path:
    """A character vocabulary (gau_jax/data/tokenizer.py's rule) from the documents whose key
    falls in the first `sample` fraction; streamed, memory bounded by the distinct units."""
    shards = prep.plan_shards(prep.input_files(inputs), prep.SHARD_MB)
    counts: collections.Counter = collections.Counter()
    for c in run_jobs(_count_units, [(s, text_field, sample) for s in shards], workers,
                      "vocabulary"):
        counts.update(c)
    tok = vocab_from_counts(counts, vocab_size)
    return write_text_atomic(path, tok.vocab_text())


def prepare(inputs: Sequence[str | os.PathLike], output: str | os.PathLike,
            vocab: str | os.PathLike, settings: prep.Settings | None = None,
            workers: int = 0, command: str = "") -> dict[str, Any]:
    """Prepares `inputs` into `output` (resuming a killed run); returns the manifest."""
    output, vocab = Path(output), Path(vocab)
    settings = settings or prep.Settings()
    load_tokenizer(vocab)  # a bad vocabulary fails here, naming file and line
    files = prep.input_files(inputs)
    shards = prep.plan_shards(files, settings.shard_mb)
    fp = prep.fingerprint(files, vocab, settings)
    output.mkdir(parents=True, exist_ok=True)
    if fmt.is_prepared(output):
        old = json.loads((output / fmt.MANIFEST).read_text())
        if old.get("fingerprint") == fp:
            print(f"{output}: already prepared (fingerprint {fp})", flush=True)
            return old
        raise DataError(output, f"holds a corpus prepared with fingerprint {old.get('fingerprint')}"
                                f"; this command's is {fp} (inputs, vocabulary or settings "
                                "differ). Use another --output")
    ledger = output / f".prepare-{fp}"
    others = [p.name for p in output.glob(".prepare-*") if p != ledger]
    if others:
        raise DataError(output, f"holds a half-prepared corpus {others[0]}; this command's "
                                f"fingerprint is {fp}. Rerun that command to finish it, or "
                                "remove the folder / use another --output")
    ledger.mkdir(exist_ok=True)
    for stale in output.glob(".*.tmp*"):  # files a killed run was writing
        stale.unlink()
    t0 = time.time()
    names = [ledger / f"scan-{i:05d}" for i in range(len(shards))]
    todo = [i for i, n in enumerate(names) if not n.with_suffix(".json").exists()]
    run_jobs(prep.scan_shard, [(shards[i], settings, names[i]) for i in todo], workers, "scan")
    scans = [json.loads(n.with_suffix(".json").read_text()) for n in names]
    keep = prep.first_occurrences([np.load(n.with_suffix(".npy")) for n in names])
    done = [ledger / f"encode-{i:05d}" for i in range(len(shards))]
    todo = [i for i, n in enumerate(done) if not n.with_suffix(".json").exists()]
    run_jobs(prep.encode_shard, [(shards[i], i, len(shards), keep[i], settings, vocab, output,
                                  done[i]) for i in todo], workers, "encode")
    encoded = [json.loads(n.with_suffix(".json").read_text()) for n in done]
    manifest = _manifest(output, files, shards, scans, encoded, vocab, settings, fp, command)
    manifest["seconds"] = round(time.time() - t0, 2)
    if not (output / fmt.VOCAB).exists() or (output / fmt.VOCAB).resolve() != vocab.resolve():
        write_text_atomic(output / fmt.VOCAB, vocab.read_bytes())
    write_text_atomic(output / fmt.MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False))
    shutil.rmtree(ledger, ignore_errors=True)
    return manifest


def _manifest(output, files, shards, scans, encoded, vocab, settings, fp, command,
              ) -> dict[str, Any]:
    first_line: dict[str, int] = collections.defaultdict(int)
    bad = []
    for shard, scan in zip(shards, scans, strict=True):
        bad += [f"{shard.path}:{first_line[shard.path] + i}: {why}"
                for i, why in scan["bad_examples"]]
        first_line[shard.path] += scan["lines"]
    for line in bad[:prep.LOG_BAD_LINES]:
        _log.warning("skipped bad line %s", line)

    def total(key: str, split: str | None = None) -> int:
        return sum(int(e[key] if split is None else e[key][split]) for e in encoded)

    tokens = {s: total("tokens", s) for s in fmt.SPLITS}
    kept = {s: total("documents", s) for s in fmt.SPLITS}
    documents = sum(s["documents"] for s in scans)
    tok = load_tokenizer(vocab)
    shard_files = {s: [[e["files"][s], e["windows"][s]] for e in encoded] for s in fmt.SPLITS}
    disk = sum((output / f).stat().st_size for s in fmt.SPLITS for f, _ in shard_files[s])
    return {
        "format_version": fmt.FORMAT_VERSION, "fingerprint": fp, "command": command,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "inputs": [str(f) for f in files], "input_shards": len(shards),
        "settings": {**dataclasses.asdict(settings),
                     "segmenter_version": prep.segmenter_version(settings.segmenter),
                     "tokenizers": prep._version("tokenizers")},
        "vocab": {"size": tok.vocab_size, "sha256": fmt.file_sha256(vocab)},
        "id_dtype": fmt.id_dtype(tok.vocab_size).name,
        "lines": sum(s["lines"] for s in scans), "bad_lines": sum(s["bad_lines"] for s in scans),
        "bad_examples": bad[:prep.LOG_BAD_LINES],
        "documents": documents, "duplicates": documents - sum(kept.values()),
        "documents_kept": kept, "tokens": tokens,
        "windows": {s: total("windows", s) for s in fmt.SPLITS},
        "unk_rate": total("unk") / max(1, sum(tokens.values())),
        "raw_bytes": total("raw_bytes"),
        "raw_bytes_per_token": total("raw_bytes") / max(1, sum(tokens.values())),
        "disk_bytes": disk, "disk_bytes_per_token": disk / max(1, sum(tokens.values())),
        "shards": shard_files,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gau_jax.data.prepare_corpus",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", help="text / JSON Lines files (or .gz), or folders")
    p.add_argument("--output", required=True, help="the prepared corpus folder")
    p.add_argument("--vocab", help="vocab.txt (BERT layout); or --build_vocab")
    p.add_argument("--build_vocab", type=int, default=0, metavar="N",
                   help="build an N-token character vocabulary into OUTPUT/vocab.txt first")
    p.add_argument("--vocab_sample", type=float, default=1.0,
                   help="fraction of documents (by hash) the vocabulary is counted on")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes (0 = this process)")
    defaults = prep.Settings()
    p.add_argument("--max_length", type=int, default=defaults.max_length)
    p.add_argument("--dev_fraction", type=float, default=defaults.dev_fraction)
    p.add_argument("--segmenter", default=defaults.segmenter, choices=sorted(prep.SEGMENTERS))
    p.add_argument("--text_field", default=defaults.text_field, help="JSON Lines text field")
    p.add_argument("--shard_mb", type=float, default=defaults.shard_mb,
                   help="input shard size in MB (one output shard each)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if bool(args.vocab) == bool(args.build_vocab):
        p.error("give exactly one of --vocab and --build_vocab")
    if not 0 <= args.dev_fraction < 1 or args.max_length < 2:
        p.error("need 0 <= --dev_fraction < 1 and --max_length >= 2")
    output = Path(args.output)
    vocab = args.vocab
    if args.build_vocab:
        output.mkdir(parents=True, exist_ok=True)
        vocab = build_vocab(args.inputs, args.build_vocab, output / fmt.VOCAB,
                            args.vocab_sample, args.text_field, args.workers)
    settings = prep.Settings(args.max_length, args.dev_fraction, args.segmenter,
                             args.text_field, args.shard_mb)
    command = shlex.join([Path(sys.executable).name, "-m", "gau_jax.data.prepare_corpus",
                          *(argv if argv is not None else sys.argv[1:])])
    try:
        m = prepare(args.inputs, output, vocab, settings, args.workers, command)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: m[k] for k in ("documents", "duplicates", "bad_lines", "tokens",
                                        "windows", "unk_rate", "raw_bytes_per_token")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
