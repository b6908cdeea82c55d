"""Entities: a text → its typed entity mentions (CLUENER).

    input     [CLS] text [SEP] (gau_jax/data/task_features_ner_mc.py `ner_features`)
    head      GlobalPointer with one type per entity type (gau_jax/tasks/global_pointer.py)
    decode    every (type, i, j) with score s > 0 (models/global_pointer.decode_spans), mapped to
              characters by the row's token offsets (task_features_ner_mc.ner_entities)
    score     "f1" = "f1_span" (the metric runs are ranked by unless config.best_metric says
              otherwise): exact (type, start, end) micro F1, Su's and the GAU-α table's;
              "f1_leaderboard": the CLUE leaderboard's (CLUENER2020
              score.py: entity texts per type, macro F1 over the 10 types), with its per-type
              F1 in "f1_types" (gau_jax/data/clue_metrics.py)
    baseline  no entities
    file      JSON Lines {"id", "label"}: label = {type: {entity text: [[start, end], ...]}},
              end inclusive
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from gau_jax.data import clue_metrics
from gau_jax.data.task_features import Features, records
from gau_jax.data.task_features_ner_mc import ner_entities, ner_features
from gau_jax.data.tasks import TaskSpec, as_text
from gau_jax.models.global_pointer import decode_spans
from gau_jax.tasks.global_pointer import GlobalPointerKind
from gau_jax.tasks.kind import Decoded, TaskOptions, by_id, example_id, register


class Entities(GlobalPointerKind):
    name = "entities"
    metric = "f1"
    metrics = ("f1", "f1_span", "f1_leaderboard", "precision", "recall")

    def num_types(self, spec: TaskSpec, num_classes: int) -> int:
        return int(num_classes)

    def features(self, spec, rows, tok, opts) -> Features:
        return ner_features(rows, tok, max_len=opts.max_length)

    def decode(self, spec: TaskSpec, rows: Sequence[Mapping], outputs: Iterable[tuple],
               features: Any, label_names: Sequence[str], opts: TaskOptions,
               complete: bool = True) -> Decoded:
        """complete: rows without a feature row predict no entity ({}) instead of being left
        out."""
        raw: dict[int, list] = {}
        labels: dict[int, dict] = {}
        for batch, logits in outputs:
            for k, r in enumerate(np.asarray(batch["row_ids"]).tolist()):
                if r < 0:
                    continue
                meta = features.meta[r]
                spans = decode_spans(logits[k])
                raw.setdefault(meta["index"], []).extend(spans)
                merged = labels.setdefault(meta["index"], {})
                for etype, ents in ner_entities(meta, spans).items():
                    for text, where in ents.items():
                        have = merged.setdefault(etype, {}).setdefault(text, [])
                        have.extend(w for w in where if w not in have)
        seen = set(labels)
        if complete:
            labels = {i: labels.get(i, {}) for i in range(len(rows))}
        objects = [{"id": example_id(rows[i]), "label": labels[i]} for i in sorted(labels)]
        return Decoded(objects, [raw.get(i) for i in range(len(rows))], seen)

    def label(self, spec: TaskSpec, row: Mapping) -> dict[str, dict[str, list[list[int]]]]:
        """{type: {text: [[start, end]]}} (end inclusive) of a parsed row's entities."""
        out: dict[str, dict[str, list[list[int]]]] = {}
        for e in records(row.get(spec.label_field, [])):
            etype = e["type"] if isinstance(e["type"], str) else spec.label_names[int(e["type"])]
            spans = out.setdefault(etype, {}).setdefault(as_text(e["text"]), [])
            spans.append([int(e["start"]), int(e["end"]) - 1])  # parsed `end` is exclusive
        return out

    def score(self, spec, predictions, gold) -> dict[str, Any]:
        pairs = by_id(predictions, gold)
        pred, true = [p or {} for p, _ in pairs], [g for _, g in pairs]
        span = clue_metrics.entity_f1([clue_metrics.entity_set(p) for p in pred],
                                      [clue_metrics.entity_set(g) for g in true])
        return {"task": spec.name, "metric": self.metric, **span, "f1_span": span["f1"],
                **clue_metrics.leaderboard_f1(pred, true, spec.label_names)}

    def constant(self, spec: TaskSpec, rows: Sequence[Mapping]) -> list[dict]:
        return [{"id": example_id(r), "label": {}} for r in rows]

    def label_problem(self, spec: TaskSpec, label: Any, row: Mapping) -> str | None:
        text = as_text(row["text"])
        if not isinstance(label, dict):
            return (f"label {str(label)[:60]!r} is not an entity dictionary "
                    "{type: {text: spans}}")
        for etype, mentions in label.items():
            if etype not in spec.label_names:
                return f"entity type {etype!r} is not one of {', '.join(spec.label_names)}"
            if not isinstance(mentions, dict):
                return f"label[{etype!r}] is not {{entity text: [[start, end], ...]}}"
            for name, spans in mentions.items():
                for span in spans if isinstance(spans, list) else [spans]:
                    ok = (isinstance(span, list) and len(span) == 2
                          and all(isinstance(v, int) and not isinstance(v, bool) for v in span)
                          and 0 <= span[0] <= span[1] < len(text))
                    if not ok or text[span[0]:span[1] + 1] != name:
                        return (f"{etype} span {span!r} does not give {name!r} in the text "
                                "(end inclusive)")
        return None


ENTITIES = register(Entities())
