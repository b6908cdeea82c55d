"""experiments/lst_clue.py: run keys (a new setting is a new run) and, at toy size on real CLUE
rows, end to end: corpus → trunk → fine-tuning runs → table."""

import json

import pytest

from configs import lst_clue as lst_clue_config
from experiments import lst_clue


def test_parse_lr():
    assert lst_clue.parse_lr("3e-3", ["full", "lst"]) == {"full": 3e-3, "lst": 3e-3}
    assert lst_clue.parse_lr("full=1e-2,lst=3e-2", ["full", "lst"]) == {"full": 1e-2, "lst": 3e-2}
    with pytest.raises(ValueError, match="lora"):
        lst_clue.parse_lr("full=1e-2", ["full", "lora"])


def _stub_training(monkeypatch):
    """finetune_run / majority_rate replaced: records (workdir, learning rate) of each run."""
    trained = []

    def finetune_run(config, workdir):
        workdir.mkdir(parents=True)  # a second training in the same folder would fail here
        trained.append((workdir.name, config.learning_rate, config.lst.reduction))
        return {"dev_accuracy": 0.5, "dev_curve": [0.5], "trainable_pct": 100.0,
                "trainable": 1, "wall_time_s": 1.0, "train_loss": 0.7}

    monkeypatch.setattr(lst_clue, "finetune_run", finetune_run)
    monkeypatch.setattr(lst_clue, "majority_rate", lambda task, data_dir: 0.6)
    return trained


def test_rerun_skips_same_settings_and_trains_new_ones(monkeypatch, tmp_path):
    trained = _stub_training(monkeypatch)
    c = lst_clue_config.get_config("smoke")
    c.update(data_dir="clue", init_from=str(tmp_path / "trunk"), methods=("full",),
             learning_rate="1e-2")
    first = lst_clue.run(c, tmp_path / "w")
    assert len(trained) == 1 and trained[0][1] == 1e-2
    assert lst_clue.run(c, tmp_path / "w") == first and len(trained) == 1  # skipped
    c.learning_rate = "2e-2"
    second = lst_clue.run(c, tmp_path / "w")
    assert len(trained) == 2 and trained[1][1] == 2e-2 and trained[1][0] != trained[0][0]
    assert second[0]["lr"] == 2e-2 and second[0]["run"] == trained[1][0]
    assert sorted(p.name for p in (tmp_path / "w" / "runs").iterdir()) == sorted(
        t[0] for t in trained)
    c.learning_rate = "1e-2"
    assert lst_clue.run(c, tmp_path / "w") == first and len(trained) == 2  # the first, again
    # A method option is part of its runs' key (LST), not of the others' (full).
    c.update(methods=("full", "lst"), learning_rate="full=1e-2,lst=3e-2")
    lst_clue.run(c, tmp_path / "w")
    c.lst.reduction = 8
    lst_clue.run(c, tmp_path / "w")
    assert [(t[0].split("_")[1], t[2]) for t in trained[2:]] == [("lst", 4), ("lst", 8)]
    lines = (tmp_path / "w" / "runs.jsonl").read_text().splitlines()
    assert len(lines) == len(trained) == 4


@pytest.mark.slow
def test_lst_clue_smoke(shared_data, tmp_path):
    clue = shared_data / "clue"
    c = lst_clue_config.get_config("smoke")  # afqmc; full, lst; 2 steps; batch 8, length 32
    c.update(data_dir=str(clue), results_dir=str(tmp_path))
    out = tmp_path / "lst_clue.md"
    rows = lst_clue.run(c, tmp_path / "w")
    assert [(r["task"], r["method"]) for r in rows] == [("afqmc", "full"), ("afqmc", "lst")]
    labels = [json.loads(line)["label"] for line in (clue / "afqmc" / "dev.json").open()]
    majority = max(labels.count(v) for v in set(labels)) / len(labels)
    for r in rows:
        assert r["majority"] == pytest.approx(majority)
        assert 0.0 <= r["dev_accuracy"] <= 1.0 and r["wall_time_s"] > 0
        dev = [x for x in map(json.loads, open(tmp_path / "w" / "runs" / r["run"] /
                                               "metrics.jsonl")) if x["split"] == "dev"]
        assert r["dev_curve"] == [round(x["accuracy"], 4) for x in dev]
    full, lst = rows
    assert full["trainable_pct"] == 100.0 and 0 < lst["trainable_pct"] < 50
    corpus = (tmp_path / "w" / "corpus.txt").read_text().splitlines()
    assert len(corpus) > 19484 + 2 * 10000 - 100  # People's Daily + both afqmc sentences
    text = out.read_text()
    assert "| afqmc |" in text and "| lst |" in text and "--config.mask_unit=token" in text
    c.methods = ("full",)
    again = lst_clue.run(c, tmp_path / "w")
    assert again[0] == full  # finished rows are read back, not rerun
    c.learning_rate = "2e-2"  # another learning rate: a new run in a new workdir
    other = lst_clue.run(c, tmp_path / "w")[0]
    assert other["lr"] == 2e-2 and other["run"] != full["run"]
    assert (tmp_path / "w" / "runs" / other["run"] / "summary.json").exists()
