"""Span / entity / multiple-choice features and batches on synthetic rows (hand-computed values)."""

from __future__ import annotations

import numpy as np
import pytest

from gau_jax.data.task_features import (
    NO_OFFSET,
    AnswerAggregator,
    best_span,
    char_to_token_span,
    span_features,
    span_text,
    window_starts,
)
from gau_jax.data.task_features_ner_mc import choice_features, ner_entities, ner_features
from gau_jax.data.tasks import CLUENER_TYPES, get_task
from gau_jax.data.tokenizer import SPECIAL_TOKENS, ChineseTokenizer, build_char_vocab
from gau_jax.tasks import TaskOptions, kind_of

CHARS = "甲乙丙丁戊己庚辛壬癸问答子丑寅卯辰巳午未申酉戌亥"


@pytest.fixture(scope="module")
def tok() -> ChineseTokenizer:
    units = ["ab", "##c", "12", "，", *CHARS]
    return ChineseTokenizer({t: i for i, t in enumerate([*SPECIAL_TOKENS, *units])})


def _ids(tok, text: str) -> list[int]:
    return [tok.vocab[c] for c in text]


def test_encode_pieces_offsets_into_original_text(tok):
    text = "ABc 12，甲"
    ids, off = tok.encode_pieces(text)
    assert tok.convert_ids_to_tokens(ids) == ["ab", "##c", "12", "，", "甲"]
    assert off == [(0, 2), (2, 3), (4, 6), (6, 7), (7, 8)]  # the space belongs to no token
    assert text[off[0][0]:off[1][1]] == "ABc"  # original case kept
    assert char_to_token_span(off, 4, 6) == (2, 2)
    assert char_to_token_span(off, 5, 7) == (2, 3)  # "2，" starts inside the token "12"
    assert char_to_token_span(off, 3, 4) is None  # only the space


def test_window_starts_follow_doc_stride():
    assert window_starts(30, 10, 4) == [0, 4, 8, 12, 16, 20]
    assert window_starts(10, 10, 4) == [0]
    assert window_starts(0, 10, 4) == [0]
    assert window_starts(11, 10, 20) == [0, 10]  # a stride longer than the window never skips


def _cmrc(qid="q1", context=CHARS[:10] * 3, start=6, text="庚辛", question="问"):
    return {"id": qid, "context": context, "question": question,
            "answers": [{"text": text, "answer_start": start}]}


def test_sliding_windows_label_answer_or_cls(tok):
    f = span_features([_cmrc()], tok, max_len=14, stride=4)
    # room = 14 - 1 (question) - 3 = 10 context tokens; 30 tokens -> starts 0, 4, ..., 20
    assert [m["window"] for m in f.meta] == list(range(6))
    spans = [r["spans"].tolist() for r in f.rows]
    base = 3  # [CLS] 问 [SEP]
    labelled = [[[0, 6 + base, 7 + base]], [[0, 6 - 4 + base, 7 - 4 + base]]]
    assert spans == labelled + [[[0, 0, 0]]] * 4
    assert f.stats["windows_without_answer"] == 4 and f.stats["questions"] == 1
    for m, r in zip(f.meta, f.rows, strict=True):
        ids = r["input_ids"].tolist()
        assert ids[:3] == [tok.cls_id, tok.vocab["问"], tok.sep_id] and ids[-1] == tok.sep_id
        s0 = 4 * m["window"]
        assert ids[3:-1] == _ids(tok, (CHARS[:10] * 3)[s0:s0 + 10])
        assert r["segment_ids"].tolist() == [0] * 3 + [1] * (len(ids) - 3)
        t, i, j = r["spans"][0]
        assert span_text(m, i, j) == ("庚辛" if (i, j) != (0, 0) else None)
    assert span_text(f.meta[0], 1, 4) is None  # a question token is not context


def test_answer_whitespace_and_truncated_question(tok):
    f = span_features([_cmrc(context="甲乙 丙丁", start=2, text=" 丙", question="问" * 9)], tok,
                      max_len=12, stride=4, max_question_len=4)
    assert f.stats["answers_whitespace_stripped"] == 1 and f.stats["questions_truncated"] == 1
    (row,), (meta,) = f.rows, f.meta
    _, i, j = row["spans"][0]
    assert span_text(meta, i, j) == "丙" and len(row["input_ids"]) == 4 + 3 + 4


def test_aggregator_takes_best_window_and_ignores_non_context(tok):
    f = span_features([_cmrc(), _cmrc("q2", context="子丑寅卯", start=1, text="丑")], tok,
                      max_len=14, stride=4)
    agg = AnswerAggregator(f, max_answer_len=3)
    n = 16
    logits = np.full((len(f.rows), 1, n, n), -5.0, np.float32)
    logits[1, 0, 0, 0] = 100.0  # [CLS] never answers
    logits[1, 0, 1, 1] = 90.0  # a question token never answers
    logits[1, 0, 3, 4] = 2.0  # window 1: context tokens 4..5 -> "戊己"
    logits[3, 0, 5, 6] = 3.0  # window 3: starts at 12 -> tokens 14..15 -> "戊己" (higher)
    logits[3, 0, 3, 12] = 9.0  # longer than max_answer_len
    logits[2, 0, 4, 5] = 2.5
    agg.add(np.arange(len(f.rows) - 1), logits[:-1])  # q2's only window never seen
    agg.add(np.array([-1]), logits[-1:] + 50)  # filler ignored
    assert agg.answers() == {"q1": "戊己", "q2": ""}
    last = logits[-1:, 0].copy()  # [b, n, n] also accepted
    last[0, 4, 5] = 1.0  # tokens 4..5 of [CLS] 问 [SEP] 子 丑 寅 卯 [SEP] -> "丑寅"
    agg.add(np.array([len(f.rows) - 1]), last)
    assert agg.answers() == {"q1": "戊己", "q2": "丑寅"}


def test_ner_spans_round_trip_and_truncation_counted(tok):
    text = "ABc甲乙12丙丁"
    ents = [{"type": "game", "start": 0, "end": 3, "text": "ABc"},  # end exclusive (parser form)
            {"type": "name", "start": 5, "end": 7, "text": "12"},
            {"type": "book", "start": 7, "end": 9, "text": "丙丁"}]
    f = ner_features([{"idx": 3, "text": text, "entities": ents}], tok, max_len=7)
    # tokens ab ##c 甲 乙 12 丙 丁 -> 5 fit (max_len 7 - 2); 丙丁 is cut off
    assert f.stats["rows_truncated"] == 1 and f.stats["entities_truncated"] == 1
    (row,), (meta,) = f.rows, f.meta
    types = CLUENER_TYPES
    assert sorted(row["spans"].tolist()) == sorted([[types.index("game"), 1, 2],
                                                    [types.index("name"), 5, 5]])
    assert ner_entities(meta, row["spans"].tolist()) == {"game": {"ABc": [[0, 2]]},
                                                         "name": {"12": [[5, 6]]}}
    # [CLS], i > j, [SEP] give nothing
    assert ner_entities(meta, [(0, 0, 1), (0, 3, 2), ("scene", 6, 6, 0.5)]) == {}
    # TFDS row form: entities as columns, type as ClassLabel index
    cols = {"type": np.array([types.index("name")]), "start": np.array([5]),
            "end": np.array([7]), "text": np.array([b"12"], dtype=object)}
    g = ner_features([{"idx": 3, "text": text.encode(), "entities": cols}], tok, max_len=32)
    assert g.rows[0]["spans"].tolist() == [[types.index("name"), 5, 5]]


def _c3(context: list[str], choices: list[str], label: int, qid: str = "d-0"):
    return {"id": qid, "context": context, "question": "问", "choice": choices, "label": label,
            "answer": choices[label]}


def task_dataset(f, *, batch_size, train, task="cmrc2018", seed=0, num_epochs=None,
                 shard_index=0, shard_count=1, pad_multiple=32):
    """Batches of features `f` through the task kind's own collator (gau_jax/tasks)."""
    spec = get_task(task)
    opts = TaskOptions(max_length=f.max_len, pad_multiple=pad_multiple, data_threads=1)
    if num_epochs is not None:  # the kind's collator over a finite number of epochs
        from gau_jax.data.pipeline import feature_dataset
        from gau_jax.tasks.global_pointer import SpanCollator

        return feature_dataset(f.rows, SpanCollator(f, batch_size, pad_multiple),
                               batch_size=batch_size, train=train, seed=seed,
                               num_epochs=num_epochs, shard_index=shard_index,
                               shard_count=shard_count)
    return kind_of(spec).batches(spec, None, None, f, opts, train=train, batch_size=batch_size,
                                 seed=seed, shard=(shard_index, shard_count))


def test_c3_choices_padded_masked_and_context_truncation(tok):
    rows = [_c3(["甲乙", "丙"], ["子", "丑"], 1, "a-0"), _c3(["甲"], ["子", "丑", "寅"], 2, "a-1")]
    f = choice_features(rows, tok, get_task("c3"), max_len=16)
    assert f.num_choices == 4 and f.stats["contexts_truncated"] == 0
    # [CLS] passage [SEP] question [SEP] choice [SEP] (Su's src/c3.py, CLUE's run_c3.py)
    assert f.rows[0]["input_ids"][1].tolist() == [tok.cls_id, *_ids(tok, "甲乙丙"), tok.sep_id,
                                                   *_ids(tok, "问"), tok.sep_id,
                                                   *_ids(tok, "丑"), tok.sep_id]
    assert f.rows[0]["segment_ids"][1].tolist() == [0] * 5 + [1] * 4
    (batch,) = list(task_dataset(f, batch_size=3, train=False, shard_index=0, shard_count=1,
                                 pad_multiple=8, task="c3"))
    assert batch["input_ids"].shape == (3, 4, 16)  # 9 tokens, padded to a multiple of 8
    assert batch["choice_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]]
    assert batch["labels"].tolist() == [1, 2, 0] and batch["weights"].tolist() == [1, 1, 0]
    assert batch["row_ids"].tolist() == [0, 1, -1]
    assert not batch["attention_mask"][0, 2:].any() and (batch["input_ids"][0, 2:] == 0).all()
    long = [_c3([CHARS[:12]], ["子"], 0)]
    head = choice_features(long, tok, get_task("c3"), max_len=16, truncate="keep_head")
    tail = choice_features(long, tok, get_task("c3"), max_len=16, truncate="keep_tail")
    room = 16 - 4 - 2  # [CLS], 3 [SEP]; question + choice = 2 tokens
    assert head.rows[0]["input_ids"][0].tolist()[1:1 + room] == _ids(tok, CHARS[:room])
    assert tail.rows[0]["input_ids"][0].tolist()[1:1 + room] == _ids(tok, CHARS[12 - room:12])
    assert head.stats["contexts_truncated"] == tail.stats["contexts_truncated"] == 1
    with pytest.raises(ValueError, match="truncate='middle'"):
        choice_features(long, tok, get_task("c3"), max_len=16, truncate="middle")


def test_chid_blank_window_centred(tok):
    cands = ["子丑寅卯", "辰巳午未", "申酉戌亥", "甲乙丙丁", "戊己庚辛", "壬癸子丑", "寅卯辰巳"]
    row = {"idx": 9, "content": "甲" * 50 + "#idiom#" + "乙" * 50, "candidates": cands,
           "label": 4}
    f = choice_features([row], tok, get_task("chid_fewclue"), max_len=32)
    ids = f.rows[0]["input_ids"][4].tolist()
    # room = 32 - 3 - 4 (candidate) - 4 ([MASK]s) = 21: 10 left, 11 right of the blank
    assert ids == [tok.cls_id, *_ids(tok, "戊己庚辛"), tok.sep_id, *_ids(tok, "甲" * 10),
                   *[tok.mask_id] * 4, *_ids(tok, "乙" * 11), tok.sep_id]
    assert len(f.rows[0]["input_ids"]) == 7 and f.stats["contexts_truncated"] == 1
    assert f.meta[0] == {"id": 9, "index": 0, "choices": cands, "label": 4}


def test_span_batches_dense_labels_and_sharding(tok):
    f = span_features([_cmrc(), _cmrc("q2", context="子丑寅卯", start=1, text="丑")], tok,
                      max_len=14, stride=4)
    n_rows = len(f.rows)  # 6 windows of q1, 1 of q2
    seen = []
    for p in range(2):
        batches = list(task_dataset(f, batch_size=2, train=False, shard_index=p, shard_count=2,
                                    pad_multiple=8))
        assert len(batches) == 2  # ceil(7 / 2) = 4 rows per host
        for b in batches:
            assert b["span_labels"].shape == (2, 1, 14, 14)  # bucket 16 capped at max_len
            assert b["span_labels"].dtype == np.int8
            for k, r in enumerate(b["row_ids"].tolist()):
                if r < 0:
                    assert b["weights"][k] == 0 and not b["span_labels"][k].any()
                    continue
                seen.append(r)
                (t, i, j), = f.rows[r]["spans"].tolist()
                assert b["span_labels"][k].sum() == 1 and b["span_labels"][k, t, i, j] == 1
                assert b["attention_mask"][k].sum() == len(f.rows[r]["input_ids"])
    assert sorted(seen) == list(range(n_rows))
    train = task_dataset(f, batch_size=3, train=True, seed=1, num_epochs=1, shard_index=0,
                         shard_count=1)
    got = [b["row_ids"].tolist() for b in train]
    assert len(got) == 2 and all(len(set(r)) == 3 for r in got)  # drop_remainder
    again = [b["row_ids"].tolist() for b in task_dataset(
        f, batch_size=3, train=True, seed=1, num_epochs=1, shard_index=0, shard_count=1)]
    assert got == again


@pytest.mark.parametrize("holes", [False, True])
def test_best_span_matches_brute_force(holes):
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(3, 20))
        off = np.stack([np.arange(n), np.arange(1, n + 1)], 1).astype(np.int32)
        off[: int(rng.integers(1, 3))] = NO_OFFSET
        off[-1] = NO_OFFSET
        if holes:
            off[rng.random(n) < 0.3] = NO_OFFSET
        logits = rng.normal(size=(n + 4, n + 4))
        text = [k for k in range(n) if off[k, 0] != NO_OFFSET]
        rank = {k: r for r, k in enumerate(text)}
        brute = max(((logits[i, j], i, j) for i in text for j in text
                     if i <= j and rank[j] - rank[i] < 3), default=None)
        got = best_span(logits, off, 3)
        assert (got is None and brute is None) or got == (float(brute[0]), brute[1], brute[2])


def test_tfds_rows_give_the_parsed_rows_features(tmp_path):
    """H's trainer feeds TFDS data-source rows (bytes, Sequence-of-dict as columns)."""
    import collections

    from gau_jax.data import clue
    from gau_jax.data.clue_parsers import parse_split, split_files
    from gau_jax.data.tasks import CLUE_TASKS
    from tests.clue_fixtures import write_clue

    root = write_clue(tmp_path / "clue")
    full = build_char_vocab([p.read_text(encoding="utf-8") for p in root.rglob("*.json")], 400)
    for task in ("cmrc2018", "cluener", "c3", "chid_fewclue"):
        spec = CLUE_TASKS[task]
        files = split_files(spec, root / spec.dir_name)
        parsed = [ex for _, ex in parse_split(spec, files["dev"], "dev", collections.Counter())]
        source = clue.load_sources(task, root, tmp_path / "tfds")["dev"]
        opts = TaskOptions(max_length=24, stride=8)
        a = kind_of(spec).features(spec, parsed, full, opts)
        b = kind_of(spec).features(spec, source, full, opts)
        assert a.stats == b.stats, task

        def key(f, r):
            row = f.rows[r]
            ids = np.concatenate(row["input_ids"]) if f.num_choices else row["input_ids"]
            extra = row["spans"].tolist() if "spans" in row else row["label"]
            return repr((f.meta[r]["id"], f.meta[r].get("window"), ids.tolist(), extra))

        assert sorted(key(a, r) for r in range(len(a))) == sorted(key(b, r) for r in range(len(b)))
