"""The task-kind registry: every registered kind, from model outputs that encode the gold,
decodes → writes CLUE's file → reads it back → passes the checker → scores 100 by CLUE's metric."""

from __future__ import annotations

import numpy as np
import pytest

from gau_jax import tasks
from gau_jax.data.tasks import get_task
from gau_jax.data.tokenizer import build_char_vocab
from gau_jax.tasks import TaskOptions, kind_of, submission
from gau_jax.tasks.evaluation import score
from tests.clue_fixtures import write_clue, write_clue_chid

TASK_OF_KIND = {"classification": "tnews", "multiple_choice": "c3", "span": "cmrc2018",
                "entities": "cluener", "idiom_cloze": "chid"}
# write_clue's chid folder holds FewCLUE's ChID; CLUE's (task chid) has a folder of its own
OWN_FOLDER = {"chid": write_clue_chid}


def gold_logits(spec, batch, features) -> np.ndarray:
    """Outputs that put the gold first: +10 at the gold class / choice / span cells, −10 else."""
    if "labels" in batch and "span_labels" not in batch:
        width = batch["choice_mask"].shape[1] if "choice_mask" in batch else spec.num_classes
        out = np.full((len(batch["labels"]), width), -10.0, np.float32)
        out[np.arange(len(out)), batch["labels"]] = 10.0
        return out
    return np.where(batch["span_labels"] > 0, 10.0, -10.0).astype(np.float32)


def test_every_kind_round_trips_gold_outputs_to_a_perfect_score(tmp_path):
    assert sorted(TASK_OF_KIND) == tasks.available()  # a new kind must join this test
    clue = write_clue(tmp_path / "clue")
    own = {t: write(tmp_path / t) for t, write in OWN_FOLDER.items()}
    texts = [p.read_text(encoding="utf-8") for root in (clue, *own.values())
             for p in root.rglob("*.json")]
    tok = build_char_vocab(texts, 400)
    opts = TaskOptions(max_length=64, stride=32, data_threads=1)
    for kind_name, task in TASK_OF_KIND.items():
        spec = get_task(task)
        root = own.get(task, clue)
        kind = kind_of(spec)
        assert kind.name == kind_name
        rows = submission.split_examples(task, root, "dev", bad_rows="skip")
        features = kind.features(spec, rows, tok, opts)
        batches = kind.batches(spec, rows, tok, features, opts, train=False, batch_size=4,
                               shard=(0, 1))
        outputs = [(b, gold_logits(spec, b, features)) for b in batches]
        decoded = kind.decode(spec, rows, outputs, features, (), opts)
        assert decoded.seen == set(range(len(rows))), task
        path = submission.write_submission(task, decoded.objects,
                                           tmp_path / submission.submission_name(task))
        back = submission.read_submission(task, path)
        submission.check_predictions(task, back, rows, path)
        result = score(task, back, submission.gold_objects(task, rows))
        assert result["metric"] == kind.metric
        assert result[kind.metric] == pytest.approx(100.0), (task, result)
        base = kind.baseline(spec, rows)
        if kind_name == "multiple_choice":  # chance: mean of 1 / #choices
            want = 100 * np.mean([1 / len(r["choice"]) for r in rows])
        elif kind_name == "idiom_cloze":  # chance per blank
            want = 100 * np.mean([1 / len(r["candidates"]) for r in rows for _ in r["blanks"]])
        elif kind_name == "classification":  # the majority label's share
            want = 100 * np.bincount([r["label"] for r in rows]).max() / len(rows)
        else:  # an empty answer / no entities: nothing right (every fixture row has a gold)
            want = 0.0
        assert base == pytest.approx(want), task
