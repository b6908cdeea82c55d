"""Span / NER / multiple-choice tasks end to end through the trainer, from a synthetic CLUE folder:
train a few steps, the dev evaluation decodes and scores with CLUE's metric, DIR/best holds the
step with the best value of *that* metric (EM for cmrc2018, F1 for cluener, accuracy otherwise),
and the workdir predicts prediction objects that the submission checker accepts."""

import json

import pytest

from configs import finetune
from gau_jax.tasks import evaluation, submission
from gau_jax.train import trained_run as predict
from gau_jax.train.loop import Trainer, validate_config
from gau_jax.train.setup import build_inputs
from tests.clue_fixtures import write_clue


def tiny_config(task: str, method: str, clue_dir) -> object:
    c = finetune.get_config(f"task={task},method={method}")
    c.model.update(num_layers=1, hidden_size=32, intermediate_size=64, key_size=16,
                   hidden_dropout=0.0, attention_dropout=0.0)
    c.update(total_steps=4, batch_size=8, grad_accum_steps=1, max_length=64, stride=32,
             log_every_steps=2, eval_every_steps=1, checkpoint_every_steps=2,
             progress_bar=False, tensorboard=False, async_checkpoints=False,
             data_dir=str(clue_dir), data_threads=1, pad_multiple=16, gp_head_size=16,
             learning_rate=3e-2)
    c.lst.reduction = 2
    return c


@pytest.mark.slow
@pytest.mark.parametrize("task,method,metric", [("cluener", "lst", "f1"),
                                                ("cmrc2018", "full", "em"),
                                                ("c3", "lst", "accuracy")])
def test_train_keep_best_by_clue_metric_and_predict(tmp_path, task, method, metric):
    clue = write_clue(tmp_path / "clue")
    wd = tmp_path / "run"
    config = tiny_config(task, method, clue)
    if task == "cluener":  # the side network pruned by the GlobalPointer loss's Fisher scores
        config.lst.update(init="fisher", fisher_examples=2, fisher_batch_size=1)
    trainer = Trainer(config, wd)
    assert trainer.setup.best_metric == metric
    try:
        summary = trainer.run()
    finally:
        trainer.close()
    devs = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    devs = [d for d in devs if d["split"] == "dev"]
    assert len(devs) == 4 and all(metric in d for d in devs)
    best = max(devs, key=lambda d: (d[metric], -d["step"]))  # the first of the best
    assert summary["best_dev"]["step"] == best["step"]
    assert summary["best_dev"][metric] == pytest.approx(best[metric])

    run = predict.load_run(wd)  # DIR/best
    assert run.step == best["step"]
    examples = submission.split_examples(task, clue, "dev")
    pred = predict.predict(run, examples)
    submission.check_predictions(task, pred.objects, examples)  # raises on a bad object
    if metric != "accuracy":  # the decoded dev metric is the one the trainer recorded

        got = evaluation.score(task, pred.objects, submission.gold_objects(task, examples))
        assert got[metric] == pytest.approx(best[metric])
    assert predict.load_run(wd, "latest").step == 4


def test_total_steps_from_epochs_of_featurised_rows(tmp_path):
    clue = write_clue(tmp_path / "clue")
    config = tiny_config("c3", "full", clue)
    config.update(total_steps=0, epochs=3, batch_size=8)
    validate_config(config)  # total_steps = 0 is allowed with epochs > 0
    inputs = build_inputs(config, tmp_path / "run")
    rows = len(inputs.features["train"])  # C3: one row per question (6 in the fixture)
    assert inputs.config.total_steps == 3 * -(-rows // 8) and config.total_steps == 0
    assert inputs.best_metric == "accuracy" and inputs.dev_eval is None
