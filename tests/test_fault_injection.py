"""Kill a training process at seeded random moments, restart it, and finish bitwise equal.

Each case runs one `python -m experiments.train` command twice: once uninterrupted (the
reference; it checkpoints every step, which changes no number, so every step a killed run
checkpoints has its reference), once killed again and again (SIGKILL and SIGTERM / SIGINT
alternating; some kills timed inside a checkpoint or best-dev write with
GAU_JAX_FAULT_SAVE_DELAY_S and the `*.orbax-checkpoint-tmp*` watch) and restarted until it
finishes. After every kill the newest complete checkpoint equals the reference's checkpoint of
that step; at the end the last checkpoint (params, optimizer state, data position), DIR/best
and summary.json (but wall_time_s / workdir / steps_per_s) equal the reference's. SIGTERM /
SIGINT exit with EXIT_PREEMPTED after naming the step and the workdir; SIGKILL restarts from
the newest complete checkpoint. The kill table is printed (`-s`) and written to the test's
tmp dir (kills.txt).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gau_jax.train import loop
from tests import fault_helpers as fh

PREEMPTED = getattr(loop, "EXIT_PREEMPTED", 75)
DELAY_S = 0.6  # each write of an aimed launch pauses this long inside its temporary directory




@pytest.fixture
def runner(tmp_path):
    r = fh.Runner(tmp_path / "logs")
    yield r
    r.kill_all()


def _every(steps: int) -> str:
    return f"--config.checkpoint_every_steps={steps}"


def _report(rows: list[dict], tmp_path: Path, title: str) -> None:
    text = fh.table(rows, title)
    (tmp_path / "kills.txt").write_text(text + "\n")
    print("\n" + text)


def _assert_same_run(work: Path, ref: Path, total: int, best: bool = False) -> None:
    steps = fh.complete_steps(work)
    assert steps and steps[-1] == total, steps
    fh.assert_same_arrays(fh.checkpoint_arrays(work, total), fh.checkpoint_arrays(ref, total),
                          f"final checkpoint {total}")
    assert fh.comparable_summary(work) == fh.comparable_summary(ref)
    if best:
        b = fh.complete_steps(work, "best")
        assert b and b == fh.complete_steps(ref, "best")[-len(b):], (b, fh.complete_steps(ref,
                                                                                           "best"))
        fh.assert_same_arrays(fh.checkpoint_arrays(work, b[-1], "best"),
                              fh.checkpoint_arrays(ref, b[-1], "best"), f"best/{b[-1]}")


def _kill_and_compare(runner, tmp_path, args_for, total: int, title: str, *, kills: int,
                      seed: int, aims: list[str], best: bool = False, min_mid: int = 1,
                      between=None, **kw) -> list[dict]:
    ref, work = tmp_path / "ref", tmp_path / "run"
    rc, out = runner.run(args_for(ref, 1))
    assert rc == 0, out[-3000:]
    rows = fh.kill_schedule(runner, args_for(work, 2), work, kills=kills, seed=seed,
                            delay_s=DELAY_S, aims=aims, between=between, **kw)
    problems = fh.check_rows(rows, work, ref, PREEMPTED)
    _report(rows, tmp_path, title)
    assert not problems, "\n".join(problems)
    killed = [r for r in rows if r["signal_at_step"] is not None]
    assert len(killed) >= kills, f"only {len(killed)} of {kills} kills landed before the end"
    assert sum(r["landed_mid_write"] for r in rows) >= min_mid, "too few kills inside a write"
    rc, out = runner.run(args_for(work, 2))  # the same command finishes the run
    assert rc == 0, out[-3000:]
    _assert_same_run(work, ref, total, best)
    return rows


@pytest.mark.slow
def test_pretraining_survives_ten_kills(tmp_path, runner):
    corpus = fh.write_corpus(tmp_path / "corpus.txt")
    extra = ("--config.total_steps=48", "--config.eval_every_steps=8")
    rows = _kill_and_compare(
        runner, tmp_path, lambda w, every: fh.pretrain_args(w, corpus, *extra, _every(every)), 48,
        "pretraining: kills and restarts", kills=10, seed=0,
        aims=["checkpoints", "any", "", ""], second_signal_at=(3, 9), sigint_at=(5,),
        min_mid=4)
    assert any(r["landed_mid_write"] and r["signal"] == "SIGKILL" for r in rows)
    assert any(r["landed_mid_write"] and r["signal"] != "SIGKILL" for r in rows)
    assert any(r["second_signal"] for r in rows)


@pytest.mark.slow
def test_full_finetuning_survives_kills_inside_best_dev_save(tmp_path, runner):
    task = fh.write_task(tmp_path / "task")
    extra = ("--config.total_steps=16", "--config.eval_every_steps=3",
             "--config.classifier_dropout=0.1")
    rows = _kill_and_compare(
        runner, tmp_path, lambda w, every: fh.finetune_args(w, task, "full", *extra,
                                                           _every(every)), 16,
        "full fine-tuning: kills and restarts", kills=4, seed=1,
        aims=["best", "checkpoints", "", ""], best=True, min_mid=2)
    assert rows[0]["landed_mid_write"], "kill 0 was meant to land inside the best-dev save"


def _half_write_cache(work: Path) -> None:
    """What a kill in the middle of building the feature cache leaves: a truncated train.bin,
    no index for dev, no meta.json (written last)."""
    cache = work / "feature_cache"
    assert (cache / "meta.json").exists(), sorted(p.name for p in work.iterdir())
    (cache / "meta.json").unlink()
    (cache / "dev.index.npz").unlink(missing_ok=True)
    data = (cache / "train.bin").read_bytes()
    (cache / "train.bin").write_bytes(data[: len(data) // 2])


@pytest.mark.slow
@pytest.mark.parametrize("cache", [False, True], ids=["live_trunk", "feature_cache"])
def test_lst_survives_kills(tmp_path, runner, cache):
    task = fh.write_task(tmp_path / "task")
    extra = ("--config.total_steps=12", "--config.eval_every_steps=4", "--config.lst.reduction=4",
             f"--config.lst.cache={cache}", "--config.lst.cache_dtype=float32")
    between = (lambda i: _half_write_cache(tmp_path / "run") if i == 0 else None) if cache \
        else None
    _kill_and_compare(
        runner, tmp_path, lambda w, every: fh.finetune_args(w, task, "lst", *extra,
                                                           _every(every)), 12,
        f"LST (cache={cache}): kills and restarts", kills=2, seed=2 + cache,
        aims=["", "any"], max_wait_steps=4, best=True, between=between)
    if cache:  # the half-written cache was rebuilt: complete and equal to the reference's
        for name in ("train.bin", "dev.bin"):
            got = (tmp_path / "run" / "feature_cache" / name).read_bytes()
            assert got == (tmp_path / "ref" / "feature_cache" / name).read_bytes(), name
        meta = json.loads((tmp_path / "run" / "feature_cache" / "meta.json").read_text())
        assert meta == json.loads((tmp_path / "ref" / "feature_cache" / "meta.json").read_text())


# ------------------------------------------------------------------ feature cache, in process
# meta.json is written last (atomically), so a crash mid-build leaves no meta.json ("no_meta");
# a truncated file or a missing index *with* meta.json is damage after completion (e.g. a power
# loss without fsync): stronger than the kill contract.
CACHE_CHECK = pytest.mark.xfail(reason="feature-cache size/completeness check of a cache with "
                                "meta.json not landed yet", strict=False)


@pytest.mark.parametrize("damage", [pytest.param("truncated_bin", marks=CACHE_CHECK),
                                    pytest.param("missing_index", marks=CACHE_CHECK), "no_meta"])
@pytest.mark.slow
def test_damaged_feature_cache_is_rebuilt_not_trusted(tmp_path, damage):
    from gau_jax.train.feature_cache import CachedSplit, build_cache

    trunk, idx, params, batches = fh.cache_setup()
    splits = {"train": batches[:2], "dev": batches[2:]}
    want = build_cache(tmp_path / "fresh", trunk, idx, params, splits, "float32", 1.0, "fp")
    path = tmp_path / "cache"
    build_cache(path, trunk, idx, params, splits, "float32", 1.0, "fp")
    if damage == "truncated_bin":  # the process died while train.bin was written
        data = (path / "train.bin").read_bytes()
        (path / "train.bin").write_bytes(data[: len(data) // 3])
    elif damage == "missing_index":
        (path / "dev.index.npz").unlink()
    else:
        (path / "meta.json").unlink()
    meta = build_cache(path, trunk, idx, params, splits, "float32", 1.0, "fp")
    assert meta == want
    for name in ("train.bin", "dev.bin"):
        assert (path / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes(), name
    for split in ("train", "dev"):
        got = CachedSplit.open(path, split, meta, batch_size=4, pad_multiple=8)
        ref = CachedSplit.open(tmp_path / "fresh", split, want, batch_size=4, pad_multiple=8)
        np.testing.assert_array_equal(got.offsets, ref.offsets)
        np.testing.assert_array_equal(got.labels, ref.labels)
