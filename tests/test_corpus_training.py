"""Pretraining from prepared corpora through the trainer: exact resume, mixtures in
metrics.jsonl, and the refusals (raw text on several processes, a foreign vocabulary, another
max_length, a changed rerun before any data is opened), and no per-step length exchange."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gau_jax.data import corpus_prepare as prep
from gau_jax.data import corpus_sources
from gau_jax.data.corpus import people_daily_texts
from gau_jax.data.prepare_corpus import prepare
from gau_jax.data.readers import DataError
from gau_jax.data.tokenizer import build_char_vocab
from gau_jax.train import partition
from gau_jax.train.loop import Trainer, train
from gau_jax.train.setup import build_inputs
from tests.train_helpers import tiny_pretrain_config

LENGTH = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpus_training")
    docs = people_daily_texts()[:300]
    (tmp / "a.txt").write_text("\n".join(docs[:200]) + "\n", encoding="utf-8")
    (tmp / "b.txt").write_text("\n".join(docs[200:]) + "\n", encoding="utf-8")
    build_char_vocab(docs, 64, save_path=tmp / "vocab.txt")
    settings = prep.Settings(max_length=LENGTH, dev_fraction=0.1)
    for name in ("a", "b"):
        prepare([tmp / f"{name}.txt"], tmp / name, tmp / "vocab.txt", settings)
    return tmp


def _config(data, **kw):
    return tiny_pretrain_config(data_dir=str(data / "a"), max_length=LENGTH, **kw)


def _losses(workdir):
    return [r["loss"] for r in map(json.loads, open(workdir / "metrics.jsonl"))
            if r["split"] == "train"]


def _params(trainer):
    import jax

    return [np.asarray(x) for x in jax.tree_util.tree_leaves(trainer.host_state().params)]


@pytest.mark.slow
def test_stopped_and_resumed_run_is_bitwise_the_uninterrupted_one(data, tmp_path):
    c = _config(data)
    whole = Trainer(c, tmp_path / "whole")
    whole.run()
    stopped = Trainer(c, tmp_path / "resumed")
    stopped.run(stop_at=3)
    assert stopped.setup.train.get_state()["batch"] == 3
    stopped.close()
    resumed = Trainer(c, tmp_path / "resumed")
    assert resumed.setup.train.index == 3  # the data position came back with the step
    resumed.run()
    assert _losses(tmp_path / "resumed") == _losses(tmp_path / "whole")
    for a, b in zip(_params(resumed), _params(whole), strict=True):
        np.testing.assert_array_equal(a, b)
    whole.close()
    resumed.close()


@pytest.mark.slow
def test_a_mixture_logs_rows_per_corpus(data, tmp_path):
    c = _config(data, total_steps=3, batch_size=16, checkpoint_every_steps=3)
    c.data_dir = f"{data / 'a'}:0.75,{data / 'b'}:0.25"
    train(c, tmp_path / "mix")
    rows = [r for r in map(json.loads, open(tmp_path / "mix" / "metrics.jsonl"))
            if r["split"] == "train"]
    assert [(r["rows/a"], r["rows/b"]) for r in rows] == [(12, 4), (24, 8), (36, 12)]


def test_raw_text_refused_on_several_processes_naming_the_command(data):
    with pytest.raises(DataError, match="python -m gau_jax.data.prepare_corpus") as e:
        corpus_sources.open_corpus(str(data / "a.txt"), vocab_path=None, vocab_size=64,
                                   max_length=LENGTH, dev_fraction=0.1, processes=2)
    assert str(data / "a.txt") in str(e.value)


def test_a_vocabulary_the_corpus_was_not_prepared_with_is_refused(data, tmp_path):
    other = tmp_path / "other.txt"
    build_char_vocab(people_daily_texts()[:50], 64, save_path=other)
    with pytest.raises(DataError, match="not the vocabulary") as e:
        build_inputs(_config(data, vocab_path=str(other)), tmp_path / "run")
    assert str(other) in str(e.value) and str(data / "a") in str(e.value)
    with pytest.raises(ValueError, match="max_length=16 but .* max_length 32"):
        build_inputs(tiny_pretrain_config(data_dir=str(data / "a"), max_length=16),
                     tmp_path / "run")


def test_mixture_spec_parsing():
    assert corpus_sources.parse_data_dir("") == [("", 1.0)]
    assert corpus_sources.parse_data_dir("/d/x") == [("/d/x", 1.0)]
    assert corpus_sources.parse_data_dir("A:0.7,B:0.3") == [("A", 0.7), ("B", 0.3)]
    with pytest.raises(ValueError, match="positive weight"):
        corpus_sources.parse_data_dir("A:0.7,B:0")


@pytest.mark.slow
def test_rerun_check_comes_before_any_data_is_opened(data, tmp_path, monkeypatch):
    c = _config(data, total_steps=2, checkpoint_every_steps=2)
    train(c, tmp_path / "w")

    def no_data(*args, **kwargs):
        raise AssertionError("data opened before the rerun check")

    monkeypatch.setattr(corpus_sources, "open_corpus", no_data)
    c.seed = 1
    with pytest.raises(ValueError, match="changed: seed"):
        Trainer(c, tmp_path / "w")


def test_static_batches_exchange_no_lengths(monkeypatch):
    """Several processes (simulated): padded batches agree on lengths by an allgather each
    step; batches of one static shape do not."""
    calls = []
    monkeypatch.setattr(partition.jax, "process_count", lambda: 2)
    monkeypatch.setattr(partition.multihost_utils, "process_allgather",
                        lambda x: calls.append(x) or np.stack([x, x]))
    batch = {"input_ids": np.zeros((2, 8), np.int32)}
    partition._agree_lengths(batch)
    assert len(calls) == 1
    mesh = partition.make_mesh()
    monkeypatch.setattr(partition.jax, "make_array_from_process_local_data",
                        lambda sharding, x: x)
    partition.global_batch(batch, mesh, static=True)
    partition.shard_for_pmap({"x": np.zeros((8, 4))}, static=True)
    assert len(calls) == 1
