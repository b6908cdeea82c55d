"""Cached trunk features: same losses as the live trunk, size estimate and budget, fingerprint,
and an end-to-end LST run (pruned init + cache) through the trainer."""

import json

import jax
import numpy as np
import pytest

from gau_jax.models import get_model_config
from gau_jax.models.encoder import encoder_config
from gau_jax.models.lst import build_model, feature_indices, lst_config
from gau_jax.tasks.losses import classification_sums_fn
from gau_jax.train.feature_cache import (
    CachedSplit,
    build_cache,
    cached_sums_fn,
    estimate_bytes,
)
from tests.test_lst import batch

LST = {"reduction": 4, "side_layers": 2, "dropout": 0.0, "fusion": "additive", "head": "gated",
       "trunk_dtype": "float32"}  # the cache is built from the float32 trunk


def setup():
    c = get_model_config("gau_alpha_tiny")
    c.update(vocab_size=50, num_layers=2)
    model = build_model(c, 2, LST)
    batches = [batch(b=4, n=16, seed=s) for s in range(3)]
    batches[-1]["weights"][-1] = 0.0  # a filler row: not cached
    params = model.init(jax.random.PRNGKey(0), batches[0]["input_ids"])["params"]
    return c, model, batches, params


def test_estimate_bytes():
    # base trunk, 12 ladders + h_0, bfloat16: 13·768·2 bytes per token
    assert estimate_bytes(1000, 13, 768, "bfloat16") == 1000 * 13 * 768 * 2


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("bfloat16", 2e-2)])
@pytest.mark.slow
def test_cached_and_uncached_losses_match(tmp_path, dtype, tol):
    c, model, batches, params = setup()
    trunk = encoder_config(c)
    idx = feature_indices(trunk, lst_config(LST))
    meta = build_cache(tmp_path, trunk, idx, params["encoder"], {"train": batches}, dtype,
                       1.0, "fp")
    assert meta["tokens"] == sum(int(b["attention_mask"][b["weights"] > 0].sum())
                                 for b in batches)
    assert (tmp_path / "train.bin").stat().st_size == meta["bytes"]
    split = CachedSplit.open(tmp_path, "train", meta, batch_size=4, pad_multiple=8)
    assert len(split) == 11
    side_model = build_model(c, 2, LST, use_trunk=False)
    side = {k: v for k, v in params.items() if k != "encoder"}
    live, cached = classification_sums_fn(model), cached_sums_fn(side_model)
    rng = jax.random.PRNGKey(0)
    want = [float(live(params, b, rng, None, False)["loss"]) for b in batches]
    got = [float(cached(side, b, rng, None, False)["loss"]) for b in split.one_pass()]
    np.testing.assert_allclose(got, want, rtol=tol)
    # a different trunk (fingerprint) is refused
    with pytest.raises(ValueError, match="different trunk"):
        build_cache(tmp_path, trunk, idx, params["encoder"], {"train": batches}, dtype, 1.0, "x")


def test_cache_over_budget_is_refused(tmp_path, capsys):
    c, _, batches, params = setup()
    trunk = encoder_config(c)
    with pytest.raises(ValueError, match="over budget"):
        build_cache(tmp_path / "c", trunk, (0, 1, 2), params["encoder"], {"train": batches},
                    "float32", 1e-6, "fp")
    assert "GB" in capsys.readouterr().out
    assert not (tmp_path / "c").exists()


def test_cached_split_epochs_and_state():
    feats = np.arange(20, dtype=np.float32).reshape(10, 1, 2)
    split = CachedSplit(feats, np.arange(0, 11, 2), np.arange(5, dtype=np.int32), batch_size=2,
                        pad_multiple=4)
    seen = [next(split)["labels"].tolist() for _ in range(2)]
    rows = sum(seen, [])  # 2 batches of one epoch: 4 distinct rows of the 5
    assert len(set(rows)) == 4 and set(rows) <= set(range(5)), rows
    assert split.get_state() == {"epoch": 0, "index": 2}
    b = next(split)  # 5 rows // 2 = 2 batches per epoch: epoch 1 starts
    assert split.get_state() == {"epoch": 1, "index": 1} and b["features"].shape == (2, 4, 1, 2)


@pytest.mark.slow
def test_lst_cached_pruned_end_to_end(tmp_path):
    from configs import finetune
    from gau_jax.train.loop import train

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 48), ("dev", 16)):
        rows = [{"sentence": "好" * int(rng.integers(2, 9)) if i % 2 else
                 "坏" * int(rng.integers(2, 9)), "label": str(i % 2)} for i in range(n)]
        (data / f"{split}.json").write_text("\n".join(json.dumps(r, ensure_ascii=False)
                                                      for r in rows))
    c = finetune.get_config("task=jsonl,model=gau_alpha_tiny,method=lst")
    c.model.update(num_layers=2)
    c.lst.update(reduction=4, side_layers=2, init="fisher", fisher_examples=16, cache=True,
                 cache_dtype="float32", dropout=0.0)
    c.update(data_dir=str(data), total_steps=12, batch_size=8, max_length=16, pad_multiple=8,
             eval_every_steps=12, checkpoint_every_steps=12, log_every_steps=4,
             progress_bar=False, tensorboard=False, async_checkpoints=False, learning_rate=3e-2,
             optimizer="adamw")
    summary = train(c, tmp_path / "run")
    assert (tmp_path / "run" / "feature_cache" / "meta.json").exists()
    assert summary["dev"]["accuracy"] >= 0.75, summary
