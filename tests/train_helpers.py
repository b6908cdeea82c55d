"""Tiny configs and synthetic, checkpointable data for the training tests (no corpus needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from configs import pretrain
from gau_jax.data.synthetic import IndexedBatches
from gau_jax.models import build_encoder
from gau_jax.train.inputs import RunSetup
from gau_jax.train.step import mlm_sums_fn

VOCAB = 40


def tiny_pretrain_config(**overrides):
    """One-layer GAU pretraining config, dropout off, small batch, no progress bar."""
    c = pretrain.get_config("gau_alpha_tiny")
    c.model.update(num_layers=1, hidden_size=32, intermediate_size=64, key_size=16,
                   vocab_size=VOCAB, hidden_dropout=0.0, attention_dropout=0.0)
    c.update(total_steps=6, batch_size=16, max_length=16, log_every_steps=1, eval_every_steps=3,
             checkpoint_every_steps=3, eval_batches=2, progress_bar=False, tensorboard=False,
             async_checkpoints=False, warmup_steps=1, learning_rate=1e-2)
    c.update(overrides)
    return c


class SyntheticMLM(IndexedBatches):
    """Batch i is a pure function of (seed, i): MLM batches with random tokens and targets."""

    def __init__(self, batch_size: int, length: int, seed: int = 0, vocab: int = VOCAB):
        self.batch_size, self.length, self.seed, self.vocab = batch_size, length, seed, vocab
        self.index = 0

    def batch(self, i: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng((self.seed, i))
        b, n = self.batch_size, self.length
        # A learnable pattern: token t+1 follows token t, so masked tokens are predictable.
        start = rng.integers(5, self.vocab - n, size=(b, 1))
        ids = (start + np.arange(n)[None]).astype(np.int32)
        weights = (rng.random((b, n)) < 0.2).astype(np.float32)
        weights[:, 0] = 0
        lengths = rng.integers(n // 2, n + 1, size=(b, 1))
        mask = (np.arange(n)[None] < lengths).astype(np.int32)
        weights *= mask
        masked = np.where(weights > 0, 4, ids).astype(np.int32)
        return {"input_ids": masked * mask, "segment_ids": np.zeros((b, n), np.int32),
                "attention_mask": mask, "mlm_targets": (ids * (weights > 0)).astype(np.int32),
                "mlm_weights": weights}


def synthetic_inputs(config) -> RunSetup:
    model = build_encoder(config.model)
    train = SyntheticMLM(config.batch_size, config.max_length, config.seed)
    dev = SyntheticMLM(config.batch_size, config.max_length, seed=10_000)
    return RunSetup(model=model, sums_fn=mlm_sums_fn(model), train=train,
                  dev_batches=lambda: (dev.batch(i) for i in range(2)),
                  model_config=config.model)


def write_task(root: Path, texts: list[str]) -> Path:
    """root/task/{train,dev}.json: the texts labelled by whether they hold 好 (a jsonl task
    folder)."""
    task = root / "task"
    task.mkdir()
    rows = [{"sentence": t, "label": int("好" in t)} for t in texts]
    for split in ("train", "dev"):
        (task / f"{split}.json").write_text(
            "\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return task


def write_corpus_and_task(root: Path, texts: list[str]) -> tuple[Path, Path]:
    """(root/corpus.txt: 30 numbered copies of `texts`, write_task's folder)."""
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(t + str(i) for i in range(30) for t in texts), encoding="utf-8")
    return corpus, write_task(root, texts)
