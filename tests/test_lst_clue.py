"""experiments/lst_clue.py end to end at toy size on real CLUE rows: corpus → trunk → table."""

import json

import pytest

from experiments import lst_clue


def test_parse_lr():
    assert lst_clue.parse_lr("3e-3", ["full", "lst"]) == {"full": 3e-3, "lst": 3e-3}
    assert lst_clue.parse_lr("full=1e-2,lst=3e-2", ["full", "lst"]) == {"full": 1e-2, "lst": 3e-2}
    with pytest.raises(ValueError, match="lora"):
        lst_clue.parse_lr("full=1e-2", ["full", "lora"])


@pytest.mark.slow
def test_lst_clue_smoke(shared_data, tmp_path):
    clue = shared_data / "clue"
    out = tmp_path / "lst_clue.md"
    rows = lst_clue.main(["--data_dir", str(clue), "--tasks", "afqmc", "--methods", "full,lst",
                          "--pretrain_steps", "2", "--steps", "2", "--evals", "1",
                          "--batch", "8", "--max_length", "32",
                          "--workdir", str(tmp_path / "w"), "--out", str(out)])
    assert [(r["task"], r["method"]) for r in rows] == [("afqmc", "full"), ("afqmc", "lst")]
    labels = [json.loads(line)["label"] for line in (clue / "afqmc" / "dev.json").open()]
    majority = max(labels.count(v) for v in set(labels)) / len(labels)
    for r in rows:
        assert r["majority"] == pytest.approx(majority)
        assert 0.0 <= r["dev_accuracy"] <= 1.0 and r["wall_time_s"] > 0
    full, lst = rows
    assert full["trainable_pct"] == 100.0 and 0 < lst["trainable_pct"] < 50
    corpus = (tmp_path / "w" / "corpus.txt").read_text().splitlines()
    assert len(corpus) > 19484 + 2 * 10000 - 100  # People's Daily + both afqmc sentences
    text = out.read_text()
    assert "| afqmc |" in text and "| lst |" in text and "--config.mask_unit=token" in text
    again = lst_clue.main(["--data_dir", str(clue), "--tasks", "afqmc", "--methods", "full",
                           "--pretrain_steps", "2", "--steps", "2", "--evals", "1",
                           "--batch", "8", "--max_length", "32",
                           "--workdir", str(tmp_path / "w"), "--out", str(out)])
    assert again[0] == full  # finished rows are read back, not rerun
