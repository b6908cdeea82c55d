"""Idiom cloze: CLUE's ChID (Zheng et al., 2019, "ChID: A Large-scale Chinese IDiom Dataset for
Cloze Test"), passages whose several `#idiomNNNNNN#` blanks share one list of 10 candidates.

    input     one feature row per blank, one sequence per candidate [b, C, n]:
              `[CLS] candidate [SEP] left [unused1] right [SEP]`
              (gau_jax/data/task_features_chid.py; bojone/CLUE-bert4keras src/chid.py)
    head      score_c = Dense_1(Drop(h_L(x_c)[:, 0]))                            [b, C]
    loss      softmax cross-entropy over the candidates (as multiple choice)
    decode    per data row, the blanks × candidates score matrix S [k, C] (k ≤ C) is assigned
              jointly: the blanks take distinct candidates maximising Σ_b S[b, σ(b)] (the
              Hungarian algorithm, scipy.optimize.linear_sum_assignment on −S, as Su's
              src/chid.py `evaluate` / `test_predict` do per row; CLUE's own baseline,
              CLUEbenchmark/CLUE baselines/models_pytorch/mrc_pytorch/preprocess/
              CHID_preprocess.py `logits_matrix_to_array`, assigns greedily)
    score     accuracy over blanks (CLUE)
    baseline  chance: mean over blanks of 1 / #candidates
    file      one JSON object {"#idiomNNNNNN#": candidate index} (CLUE reads chid11_predict.json
              so: Su's test_predict, CLUEbenchmark/CLUE baselines/paddlenlp/mrc/run_chid.py)

The dev metric the trainer keeps the best checkpoint by is the per-blank argmax accuracy of the
eval step (the joint assignment is applied when predicting and scoring with
`gau_jax/tasks/evaluation.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from gau_jax.data import clue_metrics
from gau_jax.data.task_features import Features, texts_of
from gau_jax.data.task_features_chid import idiom_cloze_features
from gau_jax.data.tasks import TaskSpec
from gau_jax.tasks.kind import Decoded, TaskOptions, register
from gau_jax.tasks.multiple_choice import MultipleChoice


def assign(scores: np.ndarray) -> list[int]:
    """The candidate of each blank (row of `scores` [k, C], k ≤ C), all distinct, maximising
    the summed score (module docstring)."""
    scores = np.asarray(scores, np.float64)
    blanks, cands = linear_sum_assignment(-scores)
    out = [0] * scores.shape[0]
    for b, c in zip(blanks.tolist(), cands.tolist(), strict=True):
        out[b] = int(c)
    return out


def _blanks(row: Mapping) -> list[str]:
    return texts_of(row["blanks"])


def _labels(row: Mapping) -> list[int]:
    return [int(v) for v in np.asarray(row["labels"]).tolist()]


class IdiomCloze(MultipleChoice):
    name = "idiom_cloze"
    metric = "accuracy"
    one_object = True

    def features(self, spec, rows, tok, opts) -> Features:
        return idiom_cloze_features(rows, tok, spec, max_len=opts.max_length)

    def row_texts(self, spec: TaskSpec, row: Mapping) -> list[str]:
        return [t for f in spec.text_fields for t in texts_of(row[f])]

    def decode(self, spec: TaskSpec, rows: Sequence[Mapping], outputs: Iterable[tuple],
               features: Any, label_names: Sequence[str], opts: TaskOptions,
               complete: bool = True) -> Decoded:
        per_row: dict[int, dict[int, np.ndarray]] = {}
        for batch, logits in outputs:
            for k, r in enumerate(np.asarray(batch["row_ids"]).tolist()):
                if r >= 0:
                    m = features.meta[r]
                    per_row.setdefault(m["index"], {})[m["blank"]] = np.asarray(logits[k])
        objects: dict[str, int] = {}
        raw: list[Any] = [None] * len(rows)
        seen = set()
        for i in sorted(per_row):
            tags, n_cands = _blanks(rows[i]), len(texts_of(rows[i][spec.text_fields[-1]]))
            if len(per_row[i]) < len(tags):  # a row cut off by `limit`: not assigned
                continue
            raw[i] = np.stack([per_row[i][b][:n_cands] for b in range(len(tags))])
            objects.update(zip(tags, assign(raw[i]), strict=True))
            seen.add(i)
        return Decoded(objects, raw, seen)

    def label(self, spec: TaskSpec, row: Mapping) -> dict[str, int] | None:
        labels = _labels(row)
        return None if min(labels) < 0 else dict(zip(_blanks(row), labels, strict=True))

    def gold(self, spec: TaskSpec, rows: Iterable[Mapping]) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in rows:
            out.update(self.label(spec, r) or {})
        return out

    def score(self, spec, predictions, gold) -> dict[str, Any]:
        tags = list(gold)
        return {"task": spec.name, "metric": self.metric,
                "accuracy": clue_metrics.accuracy([predictions.get(t) for t in tags],
                                                  [gold[t] for t in tags]),
                "count": len(tags)}

    def constant(self, spec: TaskSpec, rows: Sequence[Mapping]) -> dict[str, int]:
        return {t: 0 for r in rows for t in _blanks(r)}

    def baseline(self, spec: TaskSpec, rows: Sequence[Mapping]) -> float:
        chances = [1 / len(texts_of(r[spec.text_fields[-1]])) for r in rows for _ in _blanks(r)]
        return 100.0 * sum(chances) / max(len(chances), 1)

    def check(self, spec, predictions, rows, path="<predictions>") -> None:
        """The base check with one row per blank (its tag the id, the row's candidates)."""
        field = spec.text_fields[-1]
        blanks = [{"id": t, field: r[field]} for r in rows for t in _blanks(r)]
        super().check(spec, predictions, blanks, path)


IDIOM_CLOZE = register(IdiomCloze())
