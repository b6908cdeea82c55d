"""What a run trains on: model, loss sums, trainable mask, data iterators, pretrained trunk.

    pretrain: data_dir → prepared corpora (gau_jax/data/corpus_sources.py: a prepared folder
              as it is; raw text and the default People's Daily prepared into the cache, with
              vocab_path or a char vocab of model.vocab_size) → tokenizer of the corpus's
              vocabulary → Encoder + tied MLM head, loss = masked-token cross-entropy
              (mlm_sums_fn); train = global batch t of the seeded window order, this process's
              rows, whole-word masked (gau_jax/data/corpus_loader.py); dev = the corpora's dev
              windows, masked with a fixed seed.
    finetune: init_from (any folder gau_jax.pretrained.load reads) or the preset → the method's
              plugin (gau_jax/train/methods.py) builds the model (trunk + the task kind's head),
              its trainable mask and any input hook; loss sums by head kind
              (gau_jax/train/step.py sums_fn_for: cross-entropy on labels, over choices, or
              GlobalPointer's multilabel cross-entropy on span_labels);
              train = shuffled, repeated epochs; dev = one pass, last batch padded (weight 0).
              Multiple-choice, span and NER tasks read the feature rows of
              gau_jax/data/task_features.py (windows, offsets, truncation counts printed);
              span / NER dev evaluations also decode the predictions and score them with
              CLUE's metric (gau_jax/train/decode.py: `dev_eval`), which keep_best compares
              (`best_metric`: EM for cmrc2018, F1 for cluener, accuracy otherwise).

`build_inputs` never changes the config it is given: it works on `resolve_config`'s copy, fills
in what the run derives (the vocabulary size, init_from's model config with the user's
shape-neutral `model.*` overrides on top) and returns it as `Inputs.config`. Once the workdir's
checkpoint (if any) is known to fit, the trainer writes DIR/config.json (the encoder's model
config), DIR/vocab.txt and DIR/train_config.json (the resolved config), so a workdir is itself a
valid `init_from`. Iterators yield this process's rows (batch_size / process_count) as numpy
dicts in the layouts of docs/batches.md and expose get_state() / set_state() for checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import flax.linen as nn
import jax
import ml_collections

from gau_jax import pretrained as pretrained_lib
from gau_jax.data import corpus_loader, corpus_sources, sources
from gau_jax.data.task_pipeline import task_batches
from gau_jax.data.tasks import as_text, check_task
from gau_jax.data.tokenizer import ChineseTokenizer, build_char_vocab, load_tokenizer
from gau_jax.models import build_encoder, presets, unstack_layers
from gau_jax.train import decode, methods, partition
from gau_jax.train.step import SumsFn, mlm_sums_fn, sums_fn_for


class BatchIterator(Protocol):
    def __next__(self) -> dict[str, Any]: ...
    def get_state(self) -> Any: ...
    def set_state(self, state: Any) -> None: ...


@dataclasses.dataclass
class Inputs:
    model: nn.Module
    sums_fn: SumsFn
    train: BatchIterator
    dev_batches: Callable[[], Iterable[dict[str, Any]]] | None  # None: no dev evaluation
    trainable: Callable[[Any], Any] | None = None  # None = every parameter trains
    pretrained: Any = None  # encoder params to load at encoder_path (fine-tuning)
    encoder_path: tuple[str, ...] = ("encoder",)
    keep_fresh: Callable[[tuple[str, ...]], bool] | None = None  # leaves init_from may lack
    post_init: Callable[[Any], Any] | None = None  # params → params after the trunk is loaded
    model_config: ml_collections.ConfigDict | None = None  # the encoder's (DIR/config.json)
    tokenizer: ChineseTokenizer | None = None
    label_names: tuple[str, ...] = ()  # classification: label id → name (DIR/labels.json)
    config: ml_collections.ConfigDict | None = None  # the resolved run config
    data_sizes: dict[str, int] = dataclasses.field(default_factory=dict)  # for the start block
    dev_eval: Callable[[Any], dict[str, float]] | None = None  # params → CLUE dev metrics
    best_metric: str = "accuracy"  # the dev metric keep_best compares (em, f1, accuracy)
    features: dict[str, Any] = dataclasses.field(default_factory=dict)  # split → Features


def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """An unlocked copy of `config` with the compute dtype override applied to the model."""
    c = ml_collections.ConfigDict(config.to_dict())
    if c.get("dtype"):
        c.model.dtype = c.dtype
    return c


def local_batch_size(config: ml_collections.ConfigDict) -> int:
    return config.batch_size // jax.process_count()


def write_model_files(workdir: Path, inputs: Inputs, config: ml_collections.ConfigDict) -> None:
    """DIR/config.json, DIR/vocab.txt (what init_from and gau_jax.convert read), labels.json and
    DIR/train_config.json (the resolved run config)."""
    if jax.process_index() != 0:
        return
    _write_atomic(workdir / "train_config.json", config.to_json_best_effort(indent=2) + "\n")
    if inputs.model_config is not None:
        _write_atomic(workdir / "config.json", inputs.model_config.to_json(indent=2) + "\n")
    if inputs.tokenizer is not None:
        tmp = workdir / ".vocab.txt.tmp"
        inputs.tokenizer.save_vocab(tmp)
        os.replace(tmp, workdir / "vocab.txt")
    if inputs.label_names:
        _write_atomic(workdir / "labels.json",
                      json.dumps(list(inputs.label_names), ensure_ascii=False) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    """path's new content appears whole or not at all (a crash leaves the old file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _tokenizer(config, workdir: Path, texts: Callable[[], Iterator[str]],
               vocab: Path | None = None) -> ChineseTokenizer:
    """Priority: an explicit vocab (init_from's), config.vocab_path, the workdir's own (resume),
    else a char vocab of model.vocab_size built from `texts`."""
    for path in (vocab, config.get("vocab_path") or None, workdir / "vocab.txt"):
        if path and Path(path).exists():
            return load_tokenizer(path)
    logging.info("building a %d-token character vocabulary", config.model.vocab_size)
    return build_char_vocab(texts(), config.model.vocab_size)


def build_inputs(config: ml_collections.ConfigDict, workdir: Path) -> Inputs:
    """Inputs of a pretraining or fine-tuning config (module docstring)."""
    config = resolve_config(config)
    if config.kind == "pretrain":
        return _pretrain_inputs(config, workdir)
    return _finetune_inputs(config, workdir)


def _pretrain_inputs(config, workdir: Path) -> Inputs:
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
    model = build_encoder(config.model)
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
    return Inputs(model=model, sums_fn=sums_fn, train=train, dev_batches=dev,
                  model_config=config.model, tokenizer=tok, config=config, data_sizes=sizes)


def _load_trunk(config) -> tuple[Any, Path | None]:
    """init_from's encoder params (layout of the resolved model config) and vocab; sets
    config.model to the checkpoint's config with the user's model.* overrides on top."""
    pre = pretrained_lib.load(config.init_from)
    config.model = presets.apply_overrides(pre.config, config.model)
    if jax.process_index() == 0:
        print(f"init_from: loaded {pre.source}", flush=True)
    params = pre.params if config.model.scan_layers else unstack_layers(pre.params)
    return params, pre.vocab


def _finetune_inputs(config, workdir: Path) -> Inputs:
    check_task(config.task)
    method = methods.get(config.method)
    trunk, vocab = _load_trunk(config) if config.init_from else (None, None)
    spec, splits = sources.load_task(config.task, config.data_dir or None,
                                     bad_rows=config.bad_rows)
    for split in ("train", "dev"):
        if split not in splits:
            raise ValueError(f"task {config.task!r} (data_dir={config.data_dir!r}) has no "
                             f"{split} split")

    def texts():  # of the train split, for a character vocabulary (no init_from / vocab_path)
        for row in splits["train"]:
            yield from (t for t in _row_texts(spec, row) if t)

    tok = _tokenizer(config, workdir, texts, vocab)
    if trunk is None:
        config.model.vocab_size = tok.vocab_size
    num_classes = config.num_classes or spec.num_classes
    built = method.build(config, config.model, num_classes)
    config.model = built.model_config  # what was built (e.g. with adapters, or biases)
    head = methods.head_of(config, num_classes)
    features = {}
    if spec.kind != "classification":
        features = {s: task_features(spec, splits[s], tok, config) for s in ("train", "dev")}
        if jax.process_index() == 0:
            for s, f in features.items():
                print(f.describe(f"{spec.name} {s}"), flush=True)
    common = dict(batch_size=local_batch_size(config), max_len=config.max_length,
                  pad_multiple=config.pad_multiple, num_threads=config.data_threads)
    train = iter(task_batches(spec, splits["train"], tok, features.get("train"), train=True,
                              seed=config.seed, **common))
    dev = lambda: task_batches(spec, splits["dev"], tok, features.get("dev"), train=False,
                               **common)
    sizes = {s: len(rows) for s, rows in splits.items()}
    train_rows = len(features["train"]) if features else len(splits["train"])
    if config.total_steps <= 0:  # epochs × steps per epoch of the featurised train split
        config.total_steps = int(config.epochs) * math.ceil(train_rows / config.batch_size)
        if jax.process_index() == 0:
            print(f"total_steps = {config.epochs} epochs x ceil({train_rows} train rows / "
                  f"batch {config.batch_size}) = {config.total_steps}", flush=True)
    sizes.update({f"{s} rows": len(f) for s, f in features.items()})
    inputs = Inputs(model=built.model, sums_fn=sums_fn_for(head.kind, built.model), train=train,
                    dev_batches=dev, trainable=built.trainable, pretrained=trunk,
                    encoder_path=built.encoder_path, keep_fresh=built.keep_fresh,
                    model_config=built.model_config, tokenizer=tok,
                    label_names=tuple(spec.label_names), config=config,
                    data_sizes=sizes, features=features,
                    best_metric=decode.best_metric(config.task))
    if spec.kind in ("span", "ner"):
        inputs.dev_eval = decode.DevEval(built.model, spec, splits["dev"], features["dev"],
                                         tok, config)
    if method.prepare is not None:
        inputs = method.prepare(inputs, config, workdir, splits, spec)
    return inputs


def _row_texts(spec, row) -> list[str]:
    """The strings of a row: classification spec.texts; the other kinds every text field
    (C3 context sentences and choices, ChID candidates: lists)."""
    if spec.kind == "classification":
        return [t for t in spec.texts(row) if t]
    from gau_jax.data.task_features import texts_of

    out = []
    for f in spec.text_fields:
        v = row[f]
        out += [as_text(v)] if isinstance(v, str | bytes) else texts_of(v)
    return out


def task_features(spec, examples, tok: ChineseTokenizer, config) -> Any:
    """Feature rows of a multiple-choice / span / NER split (gau_jax/data/task_features.py),
    with the config's lengths: max_length, stride, max_question_length (CMRC2018 windows) and
    truncate (C3 / ChID contexts)."""
    from gau_jax.data import task_pipeline

    if spec.kind == "span":
        kw = dict(max_len=config.max_length, stride=config.get("stride", 128),
                  max_question_len=config.get("max_question_length", 64))
    elif spec.kind == "ner":
        kw = dict(max_len=config.max_length)
    else:
        kw = dict(max_len=config.max_length, truncate=config.get("truncate", "keep_head"))
    return task_pipeline.build_features(spec.name, examples, tok, **kw)
