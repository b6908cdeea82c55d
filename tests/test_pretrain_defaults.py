"""What the *default* pretraining config feeds the train step, measured on its batches.

configs/pretrain.py's defaults: 15% of whole jieba words predicted (Cui et al. 2019,
arXiv:1906.08101), each picked word replaced by [MASK] (80%), by random ordinary tokens (10%) or
kept (10%) (Devlin et al. 2018), packed rows of max_length tokens. The corpus here is made of
two-character words between commas, which jieba segments as exactly those words, so the units
of every batch can be read back from the original tokens: [CLS] w w ， w w ， … w w [SEP].
"""

import re

import numpy as np
import pytest

from configs import pretrain
from gau_jax.data.masking import mask_units
from gau_jax.train.setup import build_inputs

WORDS = ("中国 人民 经济 发展 社会 国家 政府 企业 工作 问题 教育 文化 科学 技术 历史 世界 城市 "
         "农村 环境 生活 学生 老师 医院 银行 市场 音乐 电影 朋友 天气 公园").split()


def test_pretrain_defaults_are_pinned():
    c = pretrain.get_config()
    assert (c.mlm_probability, c.mask_unit, c.max_predictions) == (0.15, "word", 0)


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    """(tokenizer, original ids, input ids, weights) of 8 default batches, rows concatenated."""
    tmp = tmp_path_factory.mktemp("pretrain_defaults")
    rng = np.random.default_rng(0)
    docs = ["，".join(rng.choice(WORDS, size=int(rng.integers(6, 14)))) for _ in range(600)]
    (tmp / "corpus.txt").write_text("\n".join(docs), encoding="utf-8")
    c = pretrain.get_config()
    c.update(data_dir=str(tmp / "corpus.txt"), batch_size=16, data_threads=1)
    inputs = build_inputs(c, tmp / "run")
    batches = [next(inputs.train) for _ in range(8)]
    assert batches[0]["input_ids"].shape == (16, c.max_length)  # packed rows, full length
    # rows are shuffled windows of the stream: each row ends with a -1 sentinel so that the
    # documents read back below are whole ones inside one row
    rows = lambda k: [np.append(r[m > 0], -1) for b in batches
                      for r, m in zip(b[k], b["attention_mask"], strict=True)]
    cat = lambda k: np.concatenate(rows(k))
    w = cat("mlm_weights")
    w[w < 0] = 0  # the sentinels
    orig = np.where(w > 0, cat("mlm_targets"), cat("input_ids"))
    assert (cat("mlm_targets")[(w == 0) & (orig >= 0)] == 0).all()
    return inputs.tokenizer, orig, cat("input_ids"), w


def units(tok, orig):
    """[(token positions, is_word)] of every complete document of the stream."""
    cls, sep, comma = tok.cls_id, tok.sep_id, tok.vocab["，"]
    out, doc, started = [], [], False
    for i, t in enumerate(orig):
        if t == -1:  # end of a row: a document not closed in it is dropped
            doc, started = [], False
        elif t == cls:
            doc, started = [], True
        elif t == sep and started:
            out += doc
        elif t == comma:
            doc.append(([i], False))
        elif doc and doc[-1][1] and len(doc[-1][0]) == 1:
            doc[-1][0].append(i)
        else:
            doc.append(([i], True))
    return out


def test_default_batches_mask_whole_words_at_15_percent(fed):
    tok, orig, ids, w = fed
    specials = np.isin(orig, [tok.cls_id, tok.sep_id])
    assert specials.sum() > 100 and not w[specials].any()
    assert (ids[specials] == orig[specials]).all()
    us = units(tok, orig)
    assert len(us) > 3000
    words = [pos for pos, is_word in us if is_word]
    assert all(len(p) == 2 for p in words)
    split = [p for p in words if w[p[0]] != w[p[1]]]
    assert not split, f"{len(split)} of {len(words)} words are partly masked"
    rate = np.mean([w[p[0]] > 0 for p, _ in us])
    assert abs(rate - 0.15) < 0.015, rate


def test_default_replacements_are_80_10_10_with_ordinary_tokens(fed):
    tok, orig, ids, w = fed
    picked = [p for p, _ in units(tok, orig) if w[p[0]] > 0]
    kind = {"mask": [], "keep": [], "random": []}
    for p in picked:
        if (ids[p] == tok.mask_id).all():
            kind["mask"].append(p)
        elif (ids[p] == orig[p]).all():
            kind["keep"].append(p)
        else:
            kind["random"].append(p)
    frac = {k: len(v) / len(picked) for k, v in kind.items()}
    assert abs(frac["mask"] - 0.8) < 0.06 and abs(frac["random"] - 0.1) < 0.05, frac
    bracketed = {i for t, i in tok.vocab.items() if re.fullmatch(r"\[.*\]", t)}  # [PAD] … [unusedN]
    corpus_chars = {tok.vocab[ch] for ch in "".join(WORDS) + "，"}
    drawn = {int(ids[i]) for p in kind["random"] for i in p}
    assert not drawn & bracketed, sorted(drawn & bracketed)
    assert drawn <= corpus_chars


def test_masked_count_is_stochastically_rounded():
    """n = floor(0.15·W + u), u ~ U(0, 1): E[n] = 0.15·W exactly, e.g. 1.5 of W = 10 units."""
    ids = np.arange(12, dtype=np.int32) + 10  # [CLS] 10 one-token units [SEP]
    units = np.asarray([-1, *range(10), -1])
    counts = [int(mask_units(ids, units, np.random.default_rng(s), mask_id=4,
                             random_ids=np.arange(10, 22))[2].sum()) for s in range(2000)]
    assert set(counts) == {1, 2} and abs(np.mean(counts) - 1.5) < 0.05, np.bincount(counts)
