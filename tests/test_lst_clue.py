"""experiments/lst_clue.py: run keys (a new setting is a new run) and, at toy size on real CLUE
rows, end to end: corpus → trunk → fine-tuning runs → table."""

import json

import pytest

from configs import lst_clue as lst_clue_config
from experiments import lst_clue
from gau_jax.data import sources


def test_rates_and_variants():
    c = lst_clue_config.get_config("full")
    c.learning_rates.lst = (1e-2, 3e-2)  # --config.learning_rates.lst="(1e-2,3e-2)"
    assert lst_clue.rates(c, ["full", "lst"]) == {"full": [1e-2, 3e-2, 1e-1], "lst": [1e-2, 3e-2]}
    with pytest.raises(ValueError, match="mine"):
        lst_clue.rates(c, ["full", "mine"])
    with pytest.raises(ValueError, match="lst_typo"):
        lst_clue.variant("lst_typo")
    assert lst_clue.sweep_variant("lst", ["full", "lst_wide", "lst"]) == "lst"
    assert lst_clue.sweep_variant("lst", ["full", "lst_wide"]) == "lst_wide"
    # The paper's side width on the 256-wide trunk: r = 8 kept (no small-trunk floor).
    assert lst_clue.variant("lst")[1] == {"lst.reduction": 8, "lst.min_side_width": 0}


def test_ladder_cost_reports_the_load_of_its_own_runs(monkeypatch, tmp_path):
    """Median steps/s of each timed run after its first log (compilation), their ratio, and
    the load average recorded as each run finished, not the one when the report is written."""
    c = lst_clue_config.get_config("full")
    rates = {False: [0.5, 2.0, 3.0, 2.5], True: [0.4, 1.0, 1.5, 1.2]}  # medians 2.5 and 1.2
    trained = []

    def train(p, out):
        out.mkdir(parents=True)
        ladder = bool(p.get("ladder"))
        trained.append(ladder)
        (out / "metrics.jsonl").write_text("".join(json.dumps(
            {"split": "train", "step": 10 * (i + 1), "steps_per_s": r}) + "\n"
            for i, r in enumerate(rates[ladder])) + json.dumps({"split": "dev", "step": 40})
            + "\n")
        (out / "summary.json").write_text("{}")

    loads = iter([(0.7, 0.5, 0.5), (0.9, 0.6, 0.5)])  # after run 1, after run 2; then 9.0
    monkeypatch.setattr(lst_clue, "train", train)
    monkeypatch.setattr(lst_clue.os, "getloadavg", lambda: next(loads, (9.0, 9.0, 9.0)))
    line = lst_clue.ladder_cost(c, tmp_path)
    assert trained == [False, True]
    assert "load average after each: 0.7 / 0.9)" in line
    assert "2.50 steps/s without the ladder, 1.20 with, 2.08x the time per step" in line
    assert lst_clue.ladder_cost(c, tmp_path) == line  # read back later: nothing trains
    assert trained == [False, True]


def _stub_training(monkeypatch, accuracy=lambda config: 0.5):
    """finetune_run / majority_rate replaced: records (workdir, lr, reduction, seed) per run."""
    trained = []

    def finetune_run(config, workdir):
        workdir.mkdir(parents=True)  # a second training in the same folder would fail here
        trained.append((workdir.name, config.learning_rate, config.lst.reduction, config.seed))
        return {"dev_accuracy": accuracy(config), "dev_curve": [0.5], "trainable_pct": 100.0,
                "trainable": 1, "wall_time_s": 1.0, "train_loss": 0.7}

    monkeypatch.setattr(lst_clue, "finetune_run", finetune_run)
    monkeypatch.setattr(lst_clue, "majority_rate", lambda task, data_dir, rows=0: 0.6)
    return trained


def test_sweep_picks_the_best_rate_and_fixes_it(monkeypatch, tmp_path):
    """The sweep trains each rate once on sweep_task (seed 0); the best is used everywhere and
    the sweep's seed-0 run of the chosen rate is reused, not retrained."""
    best = {"full": 1e-2, "lst": 1e-1}
    trained = _stub_training(monkeypatch, lambda cfg: 0.9 if cfg.learning_rate ==
                             best[cfg.method] else 0.5 + cfg.learning_rate)
    c = lst_clue_config.get_config("smoke")
    c.update(data_dir="clue", init_from=str(tmp_path / "trunk"), tasks=("afqmc", "ocnli"),
             seeds=(0, 1), results_dir=str(tmp_path), variants=("full", "lst"))
    c.learning_rates.update(full=(3e-3, 1e-2, 3e-2), lst=(1e-2, 1e-1))
    rows = lst_clue.run(c, tmp_path / "w")
    assert [(t[1], t[3]) for t in trained[:5]] == [(3e-3, 0), (1e-2, 0), (3e-2, 0), (1e-2, 0),
                                             (1e-1, 0)]
    # 2 tasks x 2 variants x 2 seeds reported; afqmc seed 0 at the chosen rates came from the sweep
    assert len(rows) == 8 and len(trained) == 5 + 6
    assert {(r["variant"], r["lr"]) for r in rows} == {("full", 1e-2), ("lst", 1e-1)}
    assert all(r["dev_accuracy"] == 0.9 for r in rows)
    text = (tmp_path / "lst_clue.md").read_text()
    assert "| afqmc | 60.0 | lst | 0.1 | 90.00 ± 0.00 | 90.00 / 90.00 | 1.00 |" in text
    assert "majority class" not in text  # every reported run above it: no marks
    assert lst_clue.run(c, tmp_path / "w") == rows and len(trained) == 11  # all read back
    c.update(train=False, seeds=(0, 1, 2))  # report only: seed 2 is neither trained nor listed
    assert lst_clue.run(c, tmp_path / "w") == rows and len(trained) == 11


def test_rerun_skips_same_settings_and_trains_new_ones(monkeypatch, tmp_path):
    trained = _stub_training(monkeypatch)
    c = lst_clue_config.get_config("smoke")
    c.update(data_dir="clue", init_from=str(tmp_path / "trunk"), variants=("full",))
    c.learning_rates.full = (1e-2,)
    first = lst_clue.run(c, tmp_path / "w")
    assert len(trained) == 1 and trained[0][1] == 1e-2
    text = (tmp_path / "w" / "lst_clue.md").read_text()  # 50 % against a 60 % majority
    assert "| 50.00 (1 seed) | 50.00* |" in text and "\\* at or below the majority" in text
    assert lst_clue.run(c, tmp_path / "w") == first and len(trained) == 1  # skipped
    c.learning_rates.full = (2e-2,)
    second = lst_clue.run(c, tmp_path / "w")
    assert len(trained) == 2 and trained[1][1] == 2e-2 and trained[1][0] != trained[0][0]
    assert second[0]["lr"] == 2e-2 and second[0]["run"] == trained[1][0]
    assert sorted(p.name for p in (tmp_path / "w" / "runs").iterdir()) == sorted(
        t[0] for t in trained)
    c.learning_rates.full = (1e-2,)
    assert lst_clue.run(c, tmp_path / "w") == first and len(trained) == 2  # the first, again
    # A variant's options are part of its runs' key: lst (r = 8) and lst_wide (r = 2) differ.
    c.update(variants=("lst", "lst_wide"))
    lst_clue.run(c, tmp_path / "w")
    assert [(t[0].split("_")[1], t[2]) for t in trained[2:]] == [("lst", 8), ("lst", 2)]
    lines = (tmp_path / "w" / "runs.jsonl").read_text().splitlines()
    assert len(lines) == len(trained) == 4


@pytest.mark.slow
def test_lst_clue_smoke(shared_data, tmp_path):
    clue = shared_data / "clue"
    c = lst_clue_config.get_config("smoke")  # afqmc; full, lst, lst from the pretrained
    # ladder; 2 steps; batch 8, length 32, each run evaluated on the first 256 dev rows
    c.update(data_dir=str(clue), results_dir=str(tmp_path))
    out = tmp_path / "lst_clue.md"
    rows = lst_clue.run(c, tmp_path / "w")
    assert [(r["task"], r["variant"]) for r in rows] == [("afqmc", "full"), ("afqmc", "lst"),
                                                         ("afqmc", "lst_ladder")]
    labels = [json.loads(line)["label"] for line in (clue / "afqmc" / "dev.json").open()]
    _, src = sources.load_task("afqmc", str(clue))  # the rows every run is evaluated on, by
    labels = [labels[src["dev"][i]["idx"]] for i in range(c.dev_rows)]  # their dev.json line
    majority = max(labels.count(v) for v in set(labels)) / len(labels)
    for r in rows:
        assert r["majority"] == pytest.approx(majority)
        assert r["wall_time_s"] > 0
        dev = [x for x in map(json.loads, open(tmp_path / "w" / "runs" / r["run"] /
                                               "metrics.jsonl")) if x["split"] == "dev"]
        assert r["dev_curve"] == [round(x["accuracy"], 4) for x in dev]
        assert all(x["count"] == c.dev_rows for x in dev)
        assert r["dev_accuracy"] == max(x["accuracy"] for x in dev)  # the best logged eval
    full, lst, ladder = rows
    assert full["trainable_pct"] == 100.0 and 0 < lst["trainable_pct"] < 50
    assert ladder["trainable_pct"] == lst["trainable_pct"]
    corpus = (tmp_path / "w" / "corpus.txt").read_text().splitlines()
    assert len(corpus) > 19484 + 2 * 10000 - 100  # People's Daily + both afqmc sentences
    text = out.read_text()
    assert "| afqmc |" in text and "| lst |" in text and "--config.mask_unit=token" in text
    assert "| lst_ladder |" in text and "--config.ladder=True" in text
    assert "also pretrained the ladder" in text
    c.variants = ("full",)
    again = lst_clue.run(c, tmp_path / "w")
    assert again[0] == full  # finished rows are read back, not rerun
    c.learning_rates.full = (2e-2,)  # another learning rate: a new run in a new workdir
    other = lst_clue.run(c, tmp_path / "w")[0]
    assert other["lr"] == 2e-2 and other["run"] != full["run"]
    assert (tmp_path / "w" / "runs" / other["run"] / "summary.json").exists()


@pytest.mark.slow
def test_cached_lst_counts_the_trunk_it_was_cached_from(tmp_path):
    """A cached LST run holds only the side network; its trainable share is still taken of
    trunk + side, so it equals the uncached run's (the same side network)."""
    from configs import finetune, pretrain
    from gau_jax.train.loop import Trainer

    loop = {"progress_bar": False, "tensorboard": False, "async_checkpoints": False}
    c = pretrain.get_config("gau_alpha_tiny")
    c.model.update(vocab_size=2000, scan_layers=False)
    c.update(total_steps=2, batch_size=8, max_length=16, eval_every_steps=2, eval_batches=1,
             checkpoint_every_steps=2, **loop)
    trainer = Trainer(c, tmp_path / "trunk")
    try:
        trainer.run()
    finally:
        trainer.close()
    rows = {}
    for cache in (False, True):
        ft = finetune.get_config("task=sentiment,model=gau_alpha_tiny,method=lst")
        ft.update(init_from=str(tmp_path / "trunk"), total_steps=2, max_length=16,
                  eval_every_steps=2, eval_batches=1, checkpoint_every_steps=2, keep_best=False,
                  **loop)
        ft.lst.cache = cache
        rows[cache] = lst_clue.finetune_run(ft, tmp_path / f"cache_{cache}")
    assert rows[True]["trainable"] == rows[False]["trainable"]
    assert rows[True]["trainable_pct"] == pytest.approx(rows[False]["trainable_pct"])
    assert 0 < rows[True]["trainable_pct"] < 50
