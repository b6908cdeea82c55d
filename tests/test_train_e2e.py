"""End to end through the command line: MLM pretraining, then fine-tuning from its workdir."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["今天天气很好我们去公园玩", "这本书写得很好我很喜欢", "服务太差了再也不来了",
         "质量不好很失望", "人民日报社论今天发表", "经济发展很快生活水平提高"]


def _metrics(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _cli(*args):
    env = dict(os.environ, XLA_FLAGS="", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.mark.slow
def test_pretrain_then_finetune_cli(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(t + str(i) for i in range(30) for t in TEXTS), encoding="utf-8")
    task = tmp_path / "task"
    task.mkdir()
    rows = [{"sentence": t, "label": int("好" in t or "喜欢" in t)} for t in TEXTS]
    for split in ("train", "dev"):
        (task / f"{split}.json").write_text(
            "\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    tiny = ["--config.model.num_layers=1", "--config.batch_size=4", "--config.max_length=16",
            "--config.pad_multiple=16", "--config.progress_bar=False", "--config.data_threads=1"]
    pt = tmp_path / "pt"
    _cli("--config=configs/pretrain.py:gau_alpha_tiny", f"--workdir={pt}", *tiny,
         "--config.total_steps=30", "--config.log_every_steps=10", "--config.batch_size=16",
         "--config.model.vocab_size=64", "--config.dev_fraction=0.2", f"--config.data_dir={corpus}",
         "--config.eval_batches=2", "--config.eval_every_steps=10")
    assert {"config.json", "vocab.txt", "metrics.jsonl", "summary.json",
            "checkpoints"} <= {p.name for p in pt.iterdir()}
    train = [r["loss"] for r in _metrics(pt) if r["split"] == "train"]
    dev = [r["loss"] for r in _metrics(pt) if r["split"] == "dev"]  # the same masked rows
    assert len(train) == len(dev) == 3 and train[-1] < train[0], train  # MLM learns
    assert dev[-1] < dev[0] - 0.2, dev
    assert list((pt / "tensorboard").iterdir())
    ft = tmp_path / "ft"
    _cli("--config=configs/finetune.py:task=jsonl,model=gau_alpha_tiny,method=full",
         f"--workdir={ft}", *tiny, "--config.total_steps=30", f"--config.data_dir={task}",
         f"--config.init_from={pt}", "--config.learning_rate=2e-2", "--config.eval_every_steps=30")
    summary = json.loads((ft / "summary.json").read_text())
    # dev = train here: 30 steps memorise the 6 rows (the majority class is 3 of 6)
    assert summary["step"] == 30 and summary["dev"]["accuracy"] == 1.0, summary
    assert summary["dev"]["count"] == len(rows)
    assert (ft / "best").is_dir()
