"""Whole-word masking: words never split, ~15% of words, 80/10/10, loss only at masked tokens."""

from __future__ import annotations

import numpy as np
import pytest

from gau_jax.data.corpus import people_daily_texts
from gau_jax.data.masking import WholeWordMasker, jieba_word_spans, mask_units, word_units
from tests.data_tok import small_tokenizer


@pytest.fixture(scope="module")
def masker():
    return WholeWordMasker(small_tokenizer(), max_len=128)


@pytest.fixture(scope="module")
def sample():
    docs = people_daily_texts()
    return docs[5000:5000 + 600]


def test_units_follow_jieba_words(masker):
    text = "中共中央总书记、国家主席江泽民发表１９９８年新年讲话"
    ids, units = masker.encode(text)
    enc = masker.tokenizer.encode(text, max_len=128)
    assert units[0] == -1 and units[-1] == -1  # [CLS], [SEP]
    spans = jieba_word_spans(text)
    for s, e in spans:  # every token of one jieba word shares one unit
        in_word = [u for u, (a, b), q in zip(units, enc.offsets, enc.sequence_ids, strict=True)
                   if q is not None and s <= a < e]
        assert len(set(in_word)) == 1, text[s:e]
    # '１', '##９', '##９', '##８' form one unit although jieba cuts the digits apart
    toks = enc.tokens
    i = toks.index("１")
    assert len(set(units[i:i + 4].tolist())) == 1


def test_word_units_merge_straddling_tokens():
    # token 1 spans chars 1..3, crossing words [0,2) and [2,4): both words become one unit
    units = word_units([(0, 0), (0, 1), (1, 3), (3, 4), (0, 0)],
                       np.array([True, False, False, False, True]), [(0, 2), (2, 4)], 4)
    assert units.tolist() == [-1, 0, 0, 0, -1]


def test_whole_words_masked_at_rate_with_80_10_10(masker, sample):
    rng = np.random.default_rng(0)
    total_units = masked_units = 0
    kinds = {"mask": 0, "random": 0, "keep": 0}
    for text in sample:
        ids, units = masker.encode(text)
        out = mask_units(ids, units, rng, mask_id=masker.tokenizer.mask_id,
                         random_ids=masker.random_ids)
        masked, targets, weights = out
        n_units = int(units.max()) + 1
        total_units += n_units
        for u in range(n_units):
            pos = units == u
            w = weights[pos]
            assert w.min() == w.max(), "a word was split"
            if w[0] == 1:
                masked_units += 1
                assert (targets[pos] == ids[pos]).all()
                if (masked[pos] == masker.tokenizer.mask_id).all():
                    kinds["mask"] += 1
                elif (masked[pos] == ids[pos]).all():
                    kinds["keep"] += 1
                else:
                    kinds["random"] += 1
        off = weights == 0  # outside the loss: original input, zero target
        assert (targets[off] == 0).all() and (masked[off] == ids[off]).all()
        assert weights[units < 0].sum() == 0  # specials never picked
    rate = masked_units / total_units
    assert abs(rate - 0.15) < 0.01, rate
    frac = {k: v / masked_units for k, v in kinds.items()}
    assert abs(frac["mask"] - 0.8) < 0.04 and abs(frac["random"] - 0.1) < 0.03, frac


def test_masking_is_deterministic_per_rng(masker):
    text = "中共中央总书记、国家主席江泽民发表１９９８年新年讲话"
    a = masker(text, np.random.default_rng(3))
    b = masker(text, np.random.default_rng(3))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["input_ids"].dtype == np.int32 and a["mlm_weights"].dtype == np.float32


def test_token_unit_masks_single_tokens_at_rate(sample):
    masker = WholeWordMasker(small_tokenizer(), max_len=128, unit="token")
    rng = np.random.default_rng(1)
    picked = total = 0
    for text in sample[:200]:
        ids, units = masker.encode(text)
        ordinary = units >= 0
        assert units[ordinary].tolist() == list(range(ordinary.sum()))  # one unit per token
        _, _, weights = mask_units(ids, units, rng, mask_id=masker.tokenizer.mask_id,
                                   random_ids=masker.random_ids)
        assert weights[~ordinary].sum() == 0
        picked, total = picked + weights.sum(), total + ordinary.sum()
    assert abs(picked / total - 0.15) < 0.01, picked / total


def test_unknown_mask_unit_is_an_error():
    with pytest.raises(ValueError, match="mask_unit='char'"):
        WholeWordMasker(small_tokenizer(), max_len=16, unit="char")


def test_random_replacement_draws_one_id_per_token_and_one_action_per_unit():
    """Per-token statistics on rows of 4-token units (mask_units on synthetic unit ids, 2,000
    random ids): among the tokens of one randomly replaced unit, two equal ids are as rare as
    1/2,000 (one draw per token, not one per unit or per row); across rows the replacement ids
    are uniform; within a row the picked units mix [MASK] and non-[MASK] (one 80/10/10 draw per
    unit, not one per row): P(all k picked units of a row agree) = 0.8^k + 2·0.1^k."""
    rng = np.random.default_rng(5)
    n_units, width, mask_id = 40, 4, 1
    random_ids = np.arange(1000, 3000)
    units = np.repeat(np.arange(n_units), width)
    same_pairs = pairs = mixed_rows = rows_checked = 0
    drawn = []
    for _ in range(400):
        ids = rng.integers(5, 900, units.size).astype(np.int32)  # never among random_ids
        masked, _, weights = mask_units(ids, units, rng, mask_id=mask_id, random_ids=random_ids,
                                        mask_rate=0.25)
        picked = sorted({int(u) for u in units[weights > 0]})
        actions = []
        for u in picked:
            got = masked[units == u]
            if (got == mask_id).all():
                actions.append("mask")
            elif (got == ids[units == u]).all():
                actions.append("keep")
            else:
                assert np.isin(got, random_ids).all(), got  # a whole unit is replaced
                actions.append("random")
                drawn.extend(got.tolist())
                pairs += width * (width - 1) // 2
                same_pairs += sum(int(got[a] == got[b]) for a in range(width)
                                  for b in range(a + 1, width))
        if len(actions) >= 8:
            rows_checked += 1
            mixed_rows += len(set(actions)) > 1
    assert pairs > 1000, pairs
    assert same_pairs / pairs < 0.01, (same_pairs, pairs)  # expected 1/2000; per unit: 1.0
    assert rows_checked > 350 and mixed_rows / rows_checked > 0.75, (mixed_rows, rows_checked)
    assert len(set(drawn)) > 0.5 * min(len(drawn), random_ids.size), len(set(drawn))
