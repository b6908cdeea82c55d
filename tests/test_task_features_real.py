"""Span and entity features on the real CLUE dev data (GAU_JAX_SHARED_DATA; skipped without)."""

from __future__ import annotations

import collections
import json
import re

import pytest

from gau_jax.data.clue_parsers import parse_split, split_files
from gau_jax.data.task_features import span_features, span_text
from gau_jax.data.task_features_ner_mc import ner_entities, ner_features
from gau_jax.data.tasks import CLUE_TASKS, get_task
from gau_jax.data.tokenizer import load_tokenizer

pytestmark = pytest.mark.shared_data

# Found by hand: gold answers whose boundary lies inside a WordPiece token, with the text the
# covering tokens decode to ("34个": the context has "34个", the token is "34").
CMRC_INEXACT = {"DEV_379_QUERY_2": ("4个", "34个"), "DEV_1933_QUERY_4": ("30米", "4530米")}
# CLUENER dev entities glued to a neighbouring latin / digit run ("vsac米兰", "魔兽争霸31").
NER_INEXACT = {("ac米兰", "vsac米兰"): 3, ("魔兽争霸3", "魔兽争霸31"): 1}


@pytest.fixture(scope="module")
def tok(shared_data):
    return load_tokenizer(shared_data / "vocab/vocab.txt")


def _dev(shared_data, task: str, bad_rows: str = "raise") -> list[dict]:
    spec = CLUE_TASKS[task]
    files = split_files(spec, shared_data / "clue" / spec.dir_name)
    return [ex for _, ex in parse_split(spec, files["dev"], "dev", collections.Counter(),
                                        bad_rows)]


@pytest.fixture(scope="module")
def cmrc_sample(shared_data) -> list[dict]:
    """The first 200 dev questions, the hand-checked inexact ones and every question with
    whitespace around a gold answer."""
    rows = _dev(shared_data, "cmrc2018", bad_rows="skip")
    keep = [r for k, r in enumerate(rows) if k < 200 or r["id"] in CMRC_INEXACT
            or any(a["text"] != a["text"].strip() for a in r["answers"])]
    assert len(keep) > 210
    return keep


@pytest.mark.parametrize("max_len,stride", [(512, 128), (96, 24)])
def test_cmrc2018_windows_decode_every_gold_answer(tok, cmrc_sample, max_len, stride):
    f = span_features(cmrc_sample, tok, max_len=max_len, stride=stride)
    by_q = collections.defaultdict(list)
    for m, r in zip(f.meta, f.rows, strict=True):
        by_q[m["id"]].append((m, r))
    assert len(by_q) == len(cmrc_sample) and f.stats["questions"] == len(cmrc_sample)
    if max_len == 96:
        assert f.stats["windows"] > 3 * len(cmrc_sample)
    uncovered = set()
    for ex in cmrc_sample:
        context = ex["context"]
        for a in ex["answers"]:
            if a["answer_start"] < 0:
                continue
            text = a["text"].strip()
            start = a["answer_start"] + len(a["text"]) - len(a["text"].lstrip())
            assert context[start:start + len(text)] == text  # the parser's check held
            expect = CMRC_INEXACT.get(ex["id"], (None, None))
            want = expect[1] if expect[0] == text else text
            covering = 0
            for m, r in by_q[ex["id"]]:
                off = m["offsets"][m["offsets"][:, 0] >= 0]
                if not (off[0, 0] <= start and start + len(text) <= off[-1, 1]):
                    continue  # the answer is not (wholly) in this window
                covering += 1
                decoded = {span_text(m, i, j) for _, i, j in r["spans"]}
                assert want in decoded, (ex["id"], m["window"], text, decoded)
            if not covering:  # only an answer longer than a window fits in none
                uncovered.add((ex["id"], start, text))
    assert f.stats["answers_longer_than_window"] == len(uncovered)
    assert len(uncovered) == 0 if max_len == 512 else len(uncovered) < 10
    assert f.stats["answers_inexact"] == sum(
        a["text"] == CMRC_INEXACT.get(ex["id"], ("",))[0]
        for ex in cmrc_sample for a in ex["answers"])
    for m, r in zip(f.meta, f.rows, strict=True):  # a window without an answer points to [CLS]
        if r["spans"].tolist() == [[0, 0, 0]]:
            continue
        assert all(span_text(m, i, j) is not None for _, i, j in r["spans"])


def test_cluener_spans_round_trip_on_real_dev(tok, shared_data):
    path = shared_data / "clue/cluener/dev.json"
    gold = [json.loads(line)["label"] for line in path.read_text(encoding="utf-8").splitlines()]
    rows = _dev(shared_data, "cluener")
    f = ner_features(rows, tok, max_len=256)
    assert len(f.rows) == len(gold) == 1343 and f.stats["rows_truncated"] == 0
    latin = 0
    wrong: collections.Counter = collections.Counter()
    for m, r, g in zip(f.meta, f.rows, gold, strict=True):
        got = ner_entities(m, r["spans"].tolist())
        want = {t: {e: sorted(s) for e, s in ents.items()} for t, ents in g.items()}
        got = {t: {e: sorted(s) for e, s in ents.items()} for t, ents in got.items()}
        if got != want:
            flat_got = {(t, e) for t, ents in got.items() for e in ents}
            flat_want = {(t, e) for t, ents in want.items() for e in ents}
            for (_, e), (_, d) in zip(sorted(flat_want - flat_got), sorted(flat_got - flat_want),
                                      strict=True):
                wrong[(e, d)] += 1
        latin += sum(1 for t, ents in want.items() for e, spans in ents.items()
                     if re.search(r"[A-Za-z0-9]", e) and got.get(t, {}).get(e) == spans)
    assert dict(wrong) == NER_INEXACT
    assert f.stats["entities_inexact"] == sum(NER_INEXACT.values())
    assert latin > 100  # the round trip covered many entities with digits / latin letters


def test_c3_and_chid_real_dev_choices(tok, shared_data):
    from gau_jax.data.task_features_ner_mc import choice_features

    c3 = _dev(shared_data, "c3")[:300]
    f = choice_features(c3, tok, get_task("c3"), max_len=128)
    cut = 0
    for ex, m, r in zip(c3, f.meta, f.rows, strict=True):
        assert 2 <= len(r["input_ids"]) == len(ex["choice"]) <= 4
        assert m["choices"][m["label"]] == ex["answer"]
        assert all(len(s) <= 128 and s[0] == tok.cls_id and s[-1] == tok.sep_id
                   for s in r["input_ids"])
        ctx = len(tok.encode_pieces("\n".join(ex["context"]))[0])
        q = len(tok.encode_pieces(ex["question"])[0])
        cut += any(ctx + q + len(tok.encode_pieces(c)[0]) + 3 > 128 for c in ex["choice"])
    assert f.stats["contexts_truncated"] == cut > 0
    chid = _dev(shared_data, "chid_fewclue")
    g = choice_features(chid, tok, get_task("chid_fewclue"), max_len=64)
    masks = [tok.mask_id] * 4
    for r in g.rows:
        assert len(r["input_ids"]) == 7
        for s in r["input_ids"]:
            s = s.tolist()
            assert len(s) <= 64 and any(s[k:k + 4] == masks for k in range(len(s)))
