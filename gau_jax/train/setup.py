"""A run's inputs from its config: pretraining (here) or task runs (gau_jax/train/task_setup.py).

    pretrain: data_dir → prepared corpora (gau_jax/data/corpus_sources.py: a prepared folder
              as it is; raw text and the default People's Daily prepared into the cache, with
              vocab_path or a char vocab of model.vocab_size) → tokenizer of the corpus's
              vocabulary → Encoder + tied MLM head, loss = masked-token cross-entropy
              (mlm_sums_fn; ladder=True: + an LST side network on MLM, models/ladder_mlm.py);
              train = global batch t of the seeded window order, this process's
              rows, whole-word masked (gau_jax/data/corpus_loader.py); dev = the corpora's dev
              windows, masked with a fixed seed.
    finetune / multitask: gau_jax/train/task_setup.py.

`build_inputs` never changes the config it is given (gau_jax/train/inputs.py: `RunSetup`).
"""

from __future__ import annotations

from pathlib import Path

import jax
import ml_collections

from gau_jax.data import corpus_loader, corpus_sources
from gau_jax.data.tokenizer import load_tokenizer
from gau_jax.models import build_encoder
from gau_jax.models.ladder_mlm import build_ladder_mlm, ladder_groups
from gau_jax.train import partition
from gau_jax.train.inputs import RunSetup, resolve_config
from gau_jax.train.step import mlm_sums_fn
from gau_jax.train.task_setup import task_inputs


def build_inputs(config: ml_collections.ConfigDict, workdir: Path) -> RunSetup:
    """RunSetup of a pretraining or fine-tuning config (module docstring)."""
    config = resolve_config(config)
    if config.stage == "pretrain":
        return _pretrain_inputs(config, workdir)
    return task_inputs(config, workdir)


def _pretrain_inputs(config, workdir: Path) -> RunSetup:
    vocab_path = config.get("vocab_path") or None
    if vocab_path is None and (workdir / "vocab.txt").exists():
        vocab_path = str(workdir / "vocab.txt")  # a resumed run keeps the vocabulary it built
    corpora, weights, names = [], [], []
    for path, weight in corpus_sources.parse_data_dir(config.data_dir):
        names.append(Path(path).name or "peoples_daily_1998")
        corpus = corpus_sources.open_corpus(
            path, vocab_path=vocab_path, vocab_size=config.model.vocab_size,
            max_length=config.max_length, dev_fraction=config.dev_fraction,
            processes=jax.process_count())
        if config.get("vocab_path"):
            corpus_sources.check_vocab(corpus, config.vocab_path)
        if corpus.max_length != config.max_length:
            raise ValueError(f"config.max_length={config.max_length} but {corpus.path} was "
                             f"prepared with max_length {corpus.max_length}: set "
                             f"--config.max_length={corpus.max_length} or prepare it again")
        corpora.append(corpus)
        weights.append(weight)
    tok = load_tokenizer(corpora[0].vocab_path)
    config.model.vocab_size = tok.vocab_size
    model = (build_ladder_mlm(config.model, config.lst) if config.get("ladder")
             else build_encoder(config.model))
    maker = corpus_loader.BatchMaker(
        corpora, weights, names=names, batch_size=config.batch_size,
        rows=partition.local_rows(config, config.batch_size), seed=config.seed,
        mask_rate=config.mlm_probability, mask_unit=config.mask_unit)
    train = corpus_loader.CorpusBatches(maker, workers=config.data_workers)
    dev = (lambda: maker.dev_batches()) if maker.dev_windows() else None
    sums_fn = mlm_sums_fn(model, config.max_predictions)
    sizes = {"train windows": sum(c.num_windows("train") for c in corpora),
             "dev windows": maker.dev_windows()}
    if len(corpora) > 1:
        sizes.update({f"weight {n}": w for n, w in zip(names, weights, strict=True)})
    return RunSetup(model=model, sums_fn=sums_fn, train=train, dev_batches=dev,
                  model_config=config.model, tokenizer=tok, config=config, data_sizes=sizes,
                  clip_groups=ladder_groups if config.get("ladder") else None)


