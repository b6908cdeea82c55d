"""Checkpoints: bitwise-exact resume (model, optimizer, grain iterator), atomicity, shape errors,
best-dev keeping, fine-tuning from a pretraining workdir or a converted folder, and
merge_pretrained (keep_fresh leaves)."""

import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import finetune
from gau_jax.pretrained import load
from gau_jax.train import checkpoint as ckpt_lib
from gau_jax.train.loop import Trainer
from gau_jax.train.metrics import read_jsonl
from tests.train_helpers import synthetic_inputs, tiny_pretrain_config

CORPUS = ["人民日报社论今天发表文章", "我们的经济发展很快", "新年好大家都很高兴",
          "今天天气很好我们去公园", "中国人民的生活水平提高了", "这本书写得很好我很喜欢"] * 20


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(f"{t}{i}" for i, t in enumerate(CORPUS)) + "\n", encoding="utf-8")
    return path


def _pretrain_config(corpus_file, **kw):
    c = tiny_pretrain_config(data_dir=str(corpus_file), dev_fraction=0.2, eval_batches=1,
                             batch_size=8, max_length=16, pad_multiple=16, data_threads=1,
                             **kw)
    c.model.update(vocab_size=64, hidden_dropout=0.1)  # dropout on: its keys must resume too
    return c


def _leaves(state):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(state))]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, corpus_file):
    workdir = tmp_path_factory.mktemp("full")
    trainer = Trainer(_pretrain_config(corpus_file), workdir)
    trainer.run()
    state = _leaves(trainer.host_state())
    trainer.close()
    return workdir, state


@pytest.mark.slow
def test_resume_is_bitwise_exact(tmp_path, corpus_file, uninterrupted):
    full_dir, full_state = uninterrupted
    first = Trainer(_pretrain_config(corpus_file), tmp_path)
    first.run(stop_at=4)  # "preempted" after step 4 (a checkpoint is written there)
    first.close()
    assert not (tmp_path / "summary.json").exists()
    resumed = Trainer(_pretrain_config(corpus_file), tmp_path)
    assert resumed.step() == 4
    resumed.run()
    state = _leaves(resumed.host_state())
    resumed.close()
    for a, b in zip(state, full_state, strict=True):
        np.testing.assert_array_equal(a, b)
    loss = lambda d: [r["loss"] for r in read_jsonl(d / "metrics.jsonl") if r["split"] == "train"]
    assert loss(tmp_path) == loss(full_dir)
    assert json.loads((tmp_path / "summary.json").read_text())["step"] == 6


def test_partial_checkpoint_is_ignored(tmp_path, corpus_file, uninterrupted):
    full_dir, full_state = uninterrupted
    ckdir = full_dir / "checkpoints"
    partial = ckdir / "9.orbax-checkpoint-tmp-1234" / "state"  # a crash mid-write of step 9
    partial.mkdir(parents=True)
    (partial / "garbage").write_bytes(b"\x00" * 10)
    trainer = Trainer(_pretrain_config(corpus_file), full_dir)
    assert trainer.step() == 6
    for a, b in zip(_leaves(trainer.host_state()), full_state, strict=True):
        np.testing.assert_array_equal(a, b)
    trainer.close()


def test_other_model_shape_is_a_clear_error(corpus_file, uninterrupted):
    full_dir, _ = uninterrupted
    config = _pretrain_config(corpus_file)
    config.model.hidden_size = 48
    with pytest.raises(ValueError, match="different model"):
        Trainer(config, full_dir)


def test_best_checkpoint_keeps_best_dev(tmp_path):
    config = tiny_pretrain_config(total_steps=4, eval_every_steps=1, checkpoint_every_steps=10)
    config.keep_best = True
    trainer = Trainer(config, tmp_path, inputs=synthetic_inputs(config))
    accs = iter([0.5, 0.8, 0.6, 0.7])
    params_at = {}

    def fake_eval():
        params_at[trainer.step()] = _leaves(trainer.host_state().params)
        return {"loss": 1.0, "accuracy": next(accs), "count": 1.0}

    trainer.evaluate = fake_eval
    trainer.run()
    meta = trainer.ckpt.best_meta()
    assert meta["step"] == 2 and meta["accuracy"] == 0.8
    best = ckpt_lib.Checkpointer(tmp_path).best
    restored = best.restore(2, args=ocp.args.Composite(params=ocp.args.StandardRestore()))
    for a, b in zip(_leaves(restored["params"]["params"]), params_at[2], strict=True):
        np.testing.assert_array_equal(a, b)
    trainer.close()


def _jsonl_task(folder):
    folder.mkdir()
    rows = [{"sentence": t, "label": "好" if "好" in t else "坏"} for t in CORPUS[:6]]
    for split in ("train", "dev"):
        (folder / f"{split}.json").write_text(
            "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return rows


@pytest.mark.slow
def test_finetune_from_pretraining_workdir(tmp_path, uninterrupted):
    full_dir, _ = uninterrupted
    rows = _jsonl_task(tmp_path / "task")
    c = finetune.get_config("task=jsonl,model=gau_alpha_tiny,method=full")
    c.update(data_dir=str(tmp_path / "task"), init_from=str(full_dir), total_steps=2,
             batch_size=8, max_length=16, pad_multiple=16, progress_bar=False,
             tensorboard=False, eval_every_steps=1, log_every_steps=1, data_threads=1)
    trainer = Trainer(c, tmp_path / "ft")
    params = trainer.host_state().params
    pretrained = load(full_dir).params
    for a, b in zip(_leaves(params["encoder"]), _leaves(pretrained), strict=True):
        np.testing.assert_array_equal(a, b)
    fresh = trainer.model.init(jax.random.PRNGKey(c.seed), np.ones((1, 16), np.int32))["params"]
    np.testing.assert_array_equal(params["classifier"]["kernel"],
                                  fresh["classifier"]["kernel"])
    trainer.run()
    # Independent count: one example at a time, argmax vs the label.
    tok, labels = trainer.setup.tokenizer, json.loads((tmp_path / "ft/labels.json").read_text())
    variables = {"params": trainer.host_state().params}
    apply = jax.jit(trainer.model.apply)
    hits = 0
    for r in rows:
        ids = np.zeros((1, 16), np.int32)
        enc = tok.encode(r["sentence"], max_len=16).input_ids
        ids[0, :len(enc)] = enc
        logits = apply(variables, ids, (ids > 0).astype(np.int32), np.zeros_like(ids))
        hits += int(np.argmax(logits[0])) == labels.index(r["label"])
    assert trainer.evaluate()["accuracy"] == pytest.approx(hits / len(rows))
    summary = json.loads((tmp_path / "ft/summary.json").read_text())
    assert summary["dev"]["accuracy"] == pytest.approx(hits / len(rows))
    assert (tmp_path / "ft/best").is_dir()
    trainer.close()


def test_converted_folder_layout(tmp_path, uninterrupted):
    full_dir, _ = uninterrupted
    pre = load(full_dir)
    pretrained, cfg = pre.params, pre.config.to_dict()
    out = tmp_path / "converted"
    out.mkdir()
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(out / "params", {"params": pretrained})
    (out / "config.json").write_text(json.dumps(cfg))
    (out / "vocab.txt").write_text((full_dir / "vocab.txt").read_text())
    pre2 = load(out)
    params, cfg2, vocab = pre2.params, pre2.config.to_dict(), pre2.vocab
    assert cfg2 == cfg and vocab == out / "vocab.txt"
    for a, b in zip(_leaves(params), _leaves(pretrained), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load(tmp_path)


def test_merge_pretrained_keep_fresh():
    fresh = {"encoder": {"w": np.zeros(2, np.float32),
                         "layers": {"Adapter_0": {"k": np.ones(3, np.float32)}}},
             "head": np.full(1, 7.0, np.float32)}
    trunk = {"w": np.asarray([1.0, 2.0], np.float64)}
    is_adapter = lambda names: any(k.startswith("Adapter") for k in names)
    out = ckpt_lib.merge_pretrained(fresh, trunk, ("encoder",), keep_fresh=is_adapter)
    np.testing.assert_array_equal(out["encoder"]["w"], [1.0, 2.0])
    assert out["encoder"]["w"].dtype == np.float32  # the model's dtype
    np.testing.assert_array_equal(out["encoder"]["layers"]["Adapter_0"]["k"], np.ones(3))
    np.testing.assert_array_equal(out["head"], [7.0])
    with pytest.raises(ValueError, match=r"at encoder: layers/Adapter_0/k is missing"):
        ckpt_lib.merge_pretrained(fresh, trunk, ("encoder",))
    with pytest.raises(ValueError, match=r"w is missing"):  # keep_fresh covers adapters only
        ckpt_lib.merge_pretrained(fresh, {}, ("encoder",), keep_fresh=is_adapter)
    with pytest.raises(ValueError, match=r"x is in config.init_from but not in the model"):
        ckpt_lib.merge_pretrained(fresh, {**trunk, "x": np.zeros(1)}, ("encoder",),
                                  keep_fresh=is_adapter)
    with pytest.raises(ValueError, match=r"w has shape \(3,\)"):
        ckpt_lib.merge_pretrained(fresh, {"w": np.zeros(3)}, ("encoder",), keep_fresh=is_adapter)


@pytest.mark.parametrize("slice_bytes, sliced", [(ckpt_lib.MIN_REPLICA_SLICE_BYTES - 4, False),
                                                 (ckpt_lib.MIN_REPLICA_SLICE_BYTES, True)])
def test_replicated_array_is_split_over_replicas_only_from_the_threshold(
        tmp_path, monkeypatch, slice_bytes, sliced):
    """Orbax's replica-parallel saving cuts a replicated array into one slice per replica (a
    jax.lax.slice_in_dim each); a slice under MIN_REPLICA_SLICE_BYTES: written whole, no slices.
    Either way the saved array reads back equal."""
    n = jax.device_count()
    if n < 2:
        pytest.skip("needs several devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("d",))
    x = np.arange(n * slice_bytes // 4, dtype=np.float32)
    replicated = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    slices = []
    real = jax.lax.slice_in_dim
    monkeypatch.setattr(jax.lax, "slice_in_dim", lambda *a, **k: slices.append(1) or real(*a, **k))
    ckpt = ckpt_lib.Checkpointer(tmp_path, async_save=False)
    ckpt.save(1, {"x": replicated})
    ckpt.manager.wait_until_finished()
    assert len(slices) == (n if sliced else 0)
    with ocp.StandardCheckpointer() as reader:
        back = reader.restore(tmp_path / "checkpoints" / "1" / "state")
    np.testing.assert_array_equal(np.asarray(back["x"]), x)
