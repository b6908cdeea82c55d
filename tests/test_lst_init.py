"""Pruned LST init: top-importance channels (NumPy reference), linear reproduction on kept
channels, side params that fit the model, Fisher = Σ squared grads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gau_jax.models import get_model_config
from gau_jax.models.encoder import encoder_config
from gau_jax.models.lst import LSTConfig, build_model
from gau_jax.models.lst_init import (
    fisher_scores,
    magnitude_scores,
    per_head,
    prune_dense,
    pruned_side_params,
    top_channels,
    top_pairs,
)
from gau_jax.models.presets import ConfigError


def test_top_channels_match_numpy_reference():
    rng = np.random.default_rng(0)
    imp = rng.random(32)
    got = top_channels(imp, 8)
    want = sorted(range(32), key=lambda j: -imp[j])[:8]
    np.testing.assert_array_equal(got, sorted(want))
    pair_imp = imp.reshape(16, 2).sum(1)
    best = sorted(sorted(range(16), key=lambda p: -pair_imp[p])[:4])
    np.testing.assert_array_equal(top_pairs(imp, 8), np.ravel([[2 * p, 2 * p + 1] for p in best]))
    heads = per_head(imp, 4, 2, top_channels)
    for h in range(4):
        block = imp[8 * h:8 * h + 8]
        np.testing.assert_array_equal(heads[2 * h:2 * h + 2] - 8 * h,
                                      np.sort(np.argsort(-block)[:2]))


def test_pruned_linear_reproduces_trunk_on_kept_channels():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(16, 24))
    rows, cols = top_channels(rng.random(16), 4), top_channels(np.abs(w).sum(0), 6)
    x = np.zeros((3, 16))
    x[:, rows] = rng.normal(size=(3, 4))
    np.testing.assert_allclose(x[:, rows] @ prune_dense(w, rows, cols), (x @ w)[:, cols])


def test_fisher_is_sum_of_squared_grads():
    params = {"w": jnp.arange(3.0)}
    batches = [{"input_ids": np.ones((2, 1)), "x": np.array([1.0, 2.0, 3.0]) * k}
               for k in (1, 2, 3)]
    loss = lambda p, b: jnp.sum(p["w"] * b["x"]) ** 2 / 2
    got = fisher_scores(loss, params, batches, num_examples=4,  # stops after 2 batches
                        per_example=False)  # the batch-mean option: one gradient a batch
    want = sum((float(np.dot(np.arange(3.0), b["x"])) * b["x"]) ** 2 for b in batches[:2])
    np.testing.assert_allclose(got["w"], want, rtol=1e-6)


@pytest.mark.parametrize("preset", ["gau_alpha_tiny", "roformer_v2_tiny"])
@pytest.mark.slow
def test_pruned_side_params_fit_the_model(preset):
    c = get_model_config(preset)
    c.update(vocab_size=30)
    lst = LSTConfig(reduction=2, side_layers=2, dropout=0.0,
                    side_block="gau" if preset.startswith("gau") else "roformer_v2")
    model = build_model(c, 2, lst)
    ids = jnp.ones((1, 8), jnp.int32)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), ids)["params"]  # one compile, not per op
    trunk = encoder_config(c)
    side = pruned_side_params(params["encoder"], magnitude_scores(params["encoder"]), trunk, lst)
    fresh = {k: v for k, v in params.items() if k in side}
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_equal(a.shape, b.shape), fresh, side)
    # residual channels kept = top of |E| + Σ_layers |W_out| column sums (NumPy reference)
    enc = params["encoder"]
    imp = np.abs(np.asarray(enc["embeddings"]["token_embedding"]["embedding"])).sum(0)
    outs = [("gau", "output")] if preset.startswith("gau") else \
        [("attention", "output"), ("ffn", "output")]
    for a, b in outs:
        imp = imp + np.abs(np.asarray(enc["layers"][a][b]["kernel"])).sum(axis=(0, 1))
    kept = np.nonzero(np.asarray(side["down_0"]["kernel"]).sum(1))[0]
    np.testing.assert_array_equal(kept, np.sort(np.argsort(-imp)[:32]))
    merged = {**params, **side}
    out = jax.jit(lambda p, x: model.apply({"params": p}, x))(merged, ids)
    assert out.shape == (1, 2) and np.all(np.isfinite(out))


def test_pruned_init_needs_matching_side_block():
    c = get_model_config("gau_alpha_tiny")
    with pytest.raises(ConfigError, match="side_block"):
        trunk = encoder_config(c)
        fake = {"embeddings": {}}
        pruned_side_params(fake, fake, trunk, LSTConfig(reduction=2, side_block="roformer_v2",
                                                        side_heads=1))


@pytest.mark.slow
def test_trainer_starts_from_the_pruned_side(tmp_path):
    """RunSetup.post_init puts the magnitude-pruned side into the Trainer's first state; the trunk
    and the fresh head are those of a random-init run with the same seed."""
    from configs import finetune
    from gau_jax.train.loop import Trainer

    def trainer(init):
        c = finetune.get_config("task=sentiment,model=gau_alpha_tiny,method=lst")
        c.model.update(num_layers=2, vocab_size=60)
        c.lst.update(reduction=4, side_layers=2, init=init, dropout=0.0,
                     trunk_dtype="float32")  # want: pruned from the stored trunk below
        c.update(total_steps=1, batch_size=8, max_length=16, progress_bar=False,
                 tensorboard=False, async_checkpoints=False)
        return Trainer(c, tmp_path / init)

    pruned, rand = trainer("magnitude"), trainer("random")
    try:
        p, r = pruned.host_state().params, rand.host_state().params
    finally:
        pruned.close(), rand.close()
    trunk = encoder_config(pruned.config.model)
    lst = LSTConfig(reduction=4, side_layers=2, dropout=0.0, side_block="gau")
    want = pruned_side_params(r["encoder"], magnitude_scores(r["encoder"]), trunk, lst)
    assert set(want) < set(p)
    for key in p:
        expect = want.get(key, r[key])  # pruned where the init defines it, else the fresh init
        jax.tree_util.tree_map(np.testing.assert_array_equal, p[key], expect)
    assert any(not np.array_equal(a, b) for a, b in zip(
        jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves({k: r[k] for k in want}),
        strict=True))


@pytest.mark.slow
def test_fisher_init_sees_a_seeded_random_sample_of_train_rows(tmp_path, monkeypatch):
    """The Fisher's rows: fisher_examples of them, drawn from the whole split without
    replacement, the same for one seed and others for another (not a fixed first few)."""
    from configs import finetune
    from gau_jax.train import lst_method
    from gau_jax.train.setup import build_inputs
    from tests.clue_fixtures import _jsonl

    rows = [{"sentence1": f"花呗{i}号", "sentence2": f"借呗{i}", "label": str(i // 32)}
            for i in range(64)]
    _jsonl(tmp_path / "clue/afqmc/train.json", rows)
    _jsonl(tmp_path / "clue/afqmc/dev.json", rows[:8])
    seen = []
    real = lst_method.fisher_scores

    def recording(loss, params, batches, num_examples, **kw):
        def rows_of(batches):
            for b in batches:
                seen.extend(zip(b["labels"].tolist(), map(tuple, b["input_ids"].tolist()),
                                strict=True))
                yield b
        return real(loss, params, rows_of(batches), num_examples, **kw)

    monkeypatch.setattr(lst_method, "fisher_scores", recording)

    def sample(seed):
        seen.clear()
        c = finetune.get_config("task=afqmc,model=gau_alpha_tiny,method=lst")
        c.model.update(num_layers=1, hidden_size=32, intermediate_size=64, key_size=16)
        c.lst.update(reduction=2, init="fisher", fisher_examples=16, fisher_batch_size=4)
        c.update(data_dir=str(tmp_path / "clue"), batch_size=8, max_length=32, seed=seed,
                 pad_multiple=16, data_threads=1, progress_bar=False, tensorboard=False)
        build_inputs(c, tmp_path / f"run{seed}")
        return list(seen)

    first, again, other = sample(0), sample(0), sample(1)
    assert len(first) == 16 and len({ids for _, ids in first}) == 16  # no row twice
    assert {label for label, _ in first} == {0, 1}
    assert first == again and {ids for _, ids in other} != {ids for _, ids in first}
