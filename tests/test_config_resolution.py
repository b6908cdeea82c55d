"""The trainer's config handling: the input config is never changed, the resolved copy is written
to DIR/train_config.json, and init_from's model config takes the user's shape-neutral overrides
(shape-changing ones are an error naming the field)."""

import json

import pytest

from configs import finetune
from gau_jax.models import ConfigError
from gau_jax.train.loop import Trainer, train
from tests.train_helpers import synthetic_inputs, tiny_pretrain_config

REVIEWS = ["今天天气很好我们去公园玩", "这本书写得很好我很喜欢", "服务太差了再也不来了",
           "质量不好很失望", "东西很好用下次还来", "味道一般价格太贵"]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(f"{t}{i}" for i in range(20) for t in REVIEWS) + "\n",
                    encoding="utf-8")
    return path


def _pretrain(corpus_file, **kw):
    c = tiny_pretrain_config(data_dir=str(corpus_file), dev_fraction=0.2, eval_batches=1,
                             batch_size=8, max_length=16, pad_multiple=16, data_threads=1,
                             total_steps=2, **kw)
    c.model.vocab_size = 64
    return c


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("task")
    rows = [{"sentence": t, "label": int(i % 2)} for i, t in enumerate(REVIEWS * 2)]
    for split in ("train", "dev"):
        (d / f"{split}.json").write_text(
            "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def trunk(corpus_file, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("trunk")
    train(_pretrain(corpus_file), workdir)
    return workdir


def _finetune(task_dir, trunk, method="full", **model):
    c = finetune.get_config(f"task=jsonl,model=gau_alpha_tiny,method={method}")
    c.update(data_dir=str(task_dir), init_from=str(trunk), total_steps=2, batch_size=8,
             max_length=16, pad_multiple=16, data_threads=1, progress_bar=False,
             tensorboard=False, async_checkpoints=False, eval_every_steps=2)
    c.model.update(model)
    return c


def test_trainer_never_changes_its_config_and_writes_the_resolved_one(corpus_file, tmp_path):
    c = _pretrain(corpus_file, dtype="bfloat16")
    before = c.to_dict()
    t = Trainer(c, tmp_path)
    t.close()
    assert c.to_dict() == before
    written = json.loads((tmp_path / "train_config.json").read_text())
    assert written["model"]["dtype"] == "bfloat16" and c.model.dtype == "float32"
    vocab = (tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert written["model"]["vocab_size"] == len(vocab) == t.config.model.vocab_size


def test_trainer_with_given_inputs_writes_train_config(tmp_path):
    c = tiny_pretrain_config()
    Trainer(c, tmp_path, inputs=synthetic_inputs(c)).close()
    assert json.loads((tmp_path / "train_config.json").read_text())["total_steps"] == 6


def test_init_from_takes_shape_neutral_overrides(task_dir, trunk, tmp_path):
    c = _finetune(task_dir, trunk, hidden_dropout=0.3, remat="full", attention_norm="softmax")
    t = Trainer(c, tmp_path)
    t.close()
    m = t.config.model
    assert (m.hidden_dropout, m.remat, m.attention_norm) == (0.3, "full", "softmax")
    saved = json.loads((trunk / "config.json").read_text())
    assert (m.hidden_size, m.num_layers, m.vocab_size) == (
        saved["hidden_size"], saved["num_layers"], saved["vocab_size"])
    assert json.loads((tmp_path / "config.json").read_text())["hidden_dropout"] == 0.3


def test_init_from_refuses_shape_overrides(task_dir, trunk, tmp_path):
    c = _finetune(task_dir, trunk, intermediate_size=96)
    with pytest.raises(ConfigError, match=r"config\.model\.intermediate_size=96"):
        Trainer(c, tmp_path)


