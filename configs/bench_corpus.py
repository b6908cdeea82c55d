"""The corpus pipeline benchmark: preparation, loader and a pretraining process's memory.

    python -m experiments.bench_corpus --config configs/bench_corpus.py:full --workdir runs/corpus
    # the committed file: add --config.results_dir=experiments/results
    python -m experiments.bench_corpus --config configs/bench_corpus.py:smoke --workdir /tmp/bc

`arg` is "full" (experiments/results/corpus.md: 0.1 GB and 1 GB corpora; ~15 minutes on a
2-core CPU, run it alone) or "smoke" (tests: 1 MB; a minute). The corpora are People's Daily 1998
paragraphs repeated with each copy's number appended (no two documents equal, so de-duplication
keeps them all), prepared with the 1 and 2 worker processes, then read by the prepared-corpus
loader and by the earlier in-memory path (read whole, segmented per row in grain threads).
"""

from __future__ import annotations

import ml_collections


def get_config(arg: str = "full") -> ml_collections.ConfigDict:
    """Benchmark config; arg is "full" or "smoke"."""
    if arg not in ("full", "smoke"):
        raise ValueError(f"configs/bench_corpus.py: arg {arg!r} is not 'full' or 'smoke'")
    c = ml_collections.ConfigDict()
    c.sizes_mb = (100, 1000)         # raw corpora made, MB of UTF-8 text
    c.workers = (1, 2)               # preparation worker processes, timed on the first corpus
    c.max_length = 512               # tokens per window
    c.batch_size = 32                # loader rows per batch
    c.vocab_size = 8000              # character vocabulary built from People's Daily
    c.loader_batches = 300           # batches timed for the prepared-corpus loader
    c.old_batches = 30               # batches timed for the in-memory path
    c.train_steps = 5                # steps of each pretraining process (peak RSS)
    c.parts = ("prepare", "loader", "process")  # what to measure; the others are read back
    #                                  from results_dir/corpus.json (a partial rerun)
    c.results_dir = ""               # corpus.{md,json} ("" = the workdir)
    c.command = ("python -m experiments.bench_corpus --config configs/bench_corpus.py:full "
                 "--workdir runs/corpus")  # set to the real one by the CLI
    if arg == "smoke":
        c.sizes_mb = (1, 2)
        c.max_length = 64
        c.batch_size = 8
        c.vocab_size = 2000
        c.loader_batches = 20
        c.old_batches = 3
        c.train_steps = 2
        c.command = ("python -m experiments.bench_corpus --config configs/bench_corpus.py:smoke "
                     "--workdir /tmp/bc")
    return c
