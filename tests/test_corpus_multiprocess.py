"""A pretraining run on a prepared corpus resumed on other process counts: 2 processes train
steps 1-2, 1 process steps 3-4, 4 processes steps 5-6 (4 CPU devices each time), through
`experiments.train` and tools/launch_local.py (jax.distributed on 127.0.0.1, every process
under a timeout, killed by PID). Batches are a function of (seed, step), so the losses and
parameters are the uninterrupted run's, run in the test's own process (float tolerance:
reductions run on other device layouts)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from configs import pretrain
from gau_jax.data import corpus_prepare as prep
from gau_jax.data.corpus import people_daily_texts
from gau_jax.data.prepare_corpus import prepare
from gau_jax.data.tokenizer import build_char_vocab
from gau_jax.train.loop import train
from tests.test_multiprocess import _launch

OVERRIDES = {"model.num_layers": 1, "model.hidden_size": 32, "model.intermediate_size": 64,
             "model.key_size": 16, "model.hidden_dropout": 0.0, "model.attention_dropout": 0.0,
             "batch_size": 8, "max_length": 32, "log_every_steps": 1, "eval_every_steps": 100,
             "eval_batches": 1, "checkpoint_every_steps": 100, "progress_bar": False,
             "tensorboard": False, "async_checkpoints": False, "warmup_steps": 0,
             "end_lr_factor": 1.0, "learning_rate": 1e-2}


def _command(workdir, corpus, steps: int) -> list[str]:
    return [sys.executable, "-m", "experiments.train",
            "--config=configs/pretrain.py:gau_alpha_tiny", f"--workdir={workdir}",
            f"--config.data_dir={corpus}", f"--config.total_steps={steps}",
            *(f"--config.{k}={v}" for k, v in OVERRIDES.items())]


def _uninterrupted(workdir, corpus, steps: int) -> None:
    """The same run in this process (its 8 CPU devices: other reduction layouts)."""
    c = pretrain.get_config("gau_alpha_tiny")
    for key, value in OVERRIDES.items():
        *parents, leaf = key.split(".")
        node = c
        for name in parents:
            node = node[name]
        node[leaf] = value
    c.update(data_dir=str(corpus), total_steps=steps)
    train(c, workdir)


def _losses(workdir) -> list[float]:
    return [r["loss"] for r in map(json.loads, open(workdir / "metrics.jsonl"))
            if r["split"] == "train"]


@pytest.mark.slow
def test_resumed_on_two_then_one_then_four_processes_equals_one_run(tmp_path):
    docs = people_daily_texts()[:400]
    (tmp_path / "c.txt").write_text("\n".join(docs) + "\n", encoding="utf-8")
    build_char_vocab(docs, 300, save_path=tmp_path / "vocab.txt")
    corpus = tmp_path / "corpus"
    prepare([tmp_path / "c.txt"], corpus, tmp_path / "vocab.txt",
            prep.Settings(max_length=32, dev_fraction=0.05))
    one, moved = tmp_path / "one", tmp_path / "moved"
    _uninterrupted(one, corpus, 6)
    logs = [_launch(_command(moved, corpus, steps), n, 4 // n, tmp_path / f"{n}.log")
            for n, steps in ((2, 2), (1, 4), (4, 6))]
    assert "data position restored from the checkpoint: {'batch': 2" in logs[1]
    assert "data position restored from the checkpoint: {'batch': 4" in logs[2]
    want = _losses(one)
    assert len(want) == 6 and want[-1] < want[0]
    np.testing.assert_allclose(_losses(moved), want, rtol=2e-5)
    summaries = [json.loads((w / "summary.json").read_text()) for w in (one, moved)]
    np.testing.assert_allclose(summaries[1]["dev"]["loss"], summaries[0]["dev"]["loss"],
                               rtol=1e-4)
