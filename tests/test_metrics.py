"""gau_jax/train/metrics.py: the progress lines a person reads on a log file, summary.json."""

import json

from gau_jax.train import metrics


def test_rate_and_eta_before_and_after_a_rate_is_known():
    assert metrics.rate_and_eta(float("nan"), 10) == "- steps/s eta ?"
    assert metrics.rate_and_eta(0.0, 10) == "- steps/s eta ?"
    assert metrics.rate_and_eta(float("inf"), 10) == "- steps/s eta ?"
    assert metrics.rate_and_eta(float("nan"), 0) == "- steps/s eta 0s"
    assert metrics.rate_and_eta(2.0, 10) == "2 steps/s eta 5s"
    assert metrics.rate_and_eta(12.345, 0) == "12.3 steps/s eta 0s"


def test_plain_progress_lines_never_show_nan(capsys, monkeypatch):
    """On a pipe or log file (stderr not a terminal) the first line, before any rate is known,
    says so; later lines carry the rate and the ETA."""
    clock = iter([100.0, 100.0, 100.0, 140.0, 140.0, 140.0, 140.0, 200.0, 200.0, 200.0])
    monkeypatch.setattr(metrics.time, "time", lambda: next(clock))
    bar = metrics.Progress(0, 10, desc="pretrain", interval=0.0)
    assert bar.plain  # pytest captures stderr: not a terminal
    bar.update(1, loss=2.5)   # the first update: compilation, no rate yet
    bar.update(5, loss=2.0)   # 4 steps in 40 s
    bar.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "pretrain: step 1/10 loss 2.5 - steps/s eta ?"
    assert lines[1] == "pretrain: step 5/10 loss 2 0.1 steps/s eta 50s"
    assert not any("nan" in line for line in lines)


def test_write_summary_replaces_the_file_whole(tmp_path):
    metrics.write_summary(tmp_path, {"step": 3, "dev": {"accuracy": 0.5}})
    metrics.write_summary(tmp_path, {"step": 4})
    assert json.loads((tmp_path / "summary.json").read_text()) == {"step": 4}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
