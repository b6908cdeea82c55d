"""The prepared-corpus loader: batches as a function of (seed, step), each process reading only
its rows, exact mixtures, masking statistics against today's masker, exact resume."""

from __future__ import annotations

import numpy as np
import pytest

from gau_jax.data import corpus_prepare as prep
from gau_jax.data.corpus import people_daily_texts
from gau_jax.data.corpus_format import PreparedCorpus, decode_windows
from gau_jax.data.corpus_loader import BatchMaker, CorpusBatches
from gau_jax.data.corpus_order import Mixture, block_counts, permute, stream_windows
from gau_jax.data.masking import mask_units, mask_windows
from gau_jax.data.prepare_corpus import prepare
from gau_jax.data.readers import DataError
from gau_jax.data.tokenizer import build_char_vocab

SETTINGS = prep.Settings(max_length=32, dev_fraction=0.1, shard_mb=0.05)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, PreparedCorpus]:
    """People's Daily (A) and a corpus of one repeated character family (B), one vocabulary."""
    tmp = tmp_path_factory.mktemp("loader")
    docs = people_daily_texts()[:800]
    (tmp / "a.txt").write_text("\n".join(docs) + "\n", encoding="utf-8")
    rng = np.random.default_rng(0)
    b_docs = ["".join(rng.choice(list("甲乙丙丁"), int(rng.integers(5, 40)))) + f"{i}"
              for i in range(300)]
    (tmp / "b.txt").write_text("\n".join(b_docs) + "\n", encoding="utf-8")
    build_char_vocab(docs + b_docs, 1200, save_path=tmp / "vocab.txt")
    out = {}
    for name in ("a", "b"):
        prepare([tmp / f"{name}.txt"], tmp / name, tmp / "vocab.txt", SETTINGS)
        out[name] = PreparedCorpus(tmp / name)
    return out


class CountingCorpus(PreparedCorpus):
    """Counts the windows read (every read goes through `read`)."""

    def __init__(self, path):
        super().__init__(path)
        self.reads: list[int] = []

    def read(self, split, indices):
        self.reads += [int(i) for i in indices]
        return super().read(split, indices)


def _maker(corpora, rows=slice(None), batch_size=8, seed=0, weights=(1.0,), names=("a",)):
    return BatchMaker([corpora[n] for n in names], list(weights), batch_size=batch_size,
                      rows=rows, seed=seed)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 17, 1000, 4097])
def test_permutation_is_a_bijection_keyed_by_seed(n):
    p = permute(np.arange(n), n, key=5)
    assert sorted(p.tolist()) == list(range(n))
    if n > 16:
        assert not np.array_equal(p, permute(np.arange(n), n, key=6))
        assert not np.array_equal(p, np.arange(n))


def test_every_epoch_visits_every_window_once_in_a_new_order():
    w = stream_windows(np.arange(3 * 50), 50, seed=3)
    epochs = w.reshape(3, 50)
    assert all(sorted(e) == list(range(50)) for e in epochs)
    assert not np.array_equal(epochs[0], epochs[1])


@pytest.mark.parametrize("processes", [2, 4])
def test_each_process_reads_only_its_rows_and_they_make_the_global_batch(corpora, processes):
    full = _maker(corpora)
    per = 8 // processes
    for t in (0, 5, 123):
        want = full(t)
        for p in range(processes):
            c = CountingCorpus(corpora["a"].path)
            mine = BatchMaker([c], [1.0], batch_size=8, rows=slice(p * per, (p + 1) * per),
                              seed=0)(t)
            for k, v in want.items():
                np.testing.assert_array_equal(mine[k], v[p * per:(p + 1) * per], err_msg=k)
            windows = stream_windows(t * 8 + np.arange(p * per, (p + 1) * per),
                                     c.num_windows("train"), 0)
            assert c.reads == windows.tolist()  # its own rows' windows, nothing else


def test_batches_depend_on_seed_and_step_only(corpora):
    a, b = _maker(corpora)(7), _maker(corpora)(7)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["input_ids"], _maker(corpora)(8)["input_ids"])
    assert not np.array_equal(a["input_ids"], _maker(corpora, seed=1)(7)["input_ids"])
    assert a["input_ids"].shape == (8, 32) and a["attention_mask"].sum() > 200


def test_resume_from_state_and_refuse_another_corpus(corpora):
    it = CorpusBatches(_maker(corpora))
    first = [next(it) for _ in range(5)]
    state = it.get_state()
    rest = [next(it) for _ in range(3)]
    again = CorpusBatches(_maker(corpora, rows=slice(0, 4)))  # another process layout
    again.set_state(state)
    for got, want in zip([next(again) for _ in range(3)], rest, strict=True):
        np.testing.assert_array_equal(got["input_ids"], want["input_ids"][:4])
    assert state == {"batch": 5, "fingerprints": [corpora["a"].fingerprint]} and len(first) == 5
    other = CorpusBatches(_maker(corpora, names=("b",)))
    with pytest.raises(DataError, match=corpora["a"].fingerprint):
        other.set_state(state)


@pytest.mark.slow
def test_grain_worker_processes_give_the_same_batches(corpora):
    threads = CorpusBatches(_maker(corpora), start=3)
    workers = CorpusBatches(_maker(corpora), start=3, workers=1)
    for _ in range(3):
        a, b = next(threads), next(workers)
        assert all(np.array_equal(a[k], b[k]) for k in a)
    workers.close()


def test_mixture_proportions_exact_in_every_block(corpora):
    k, n = block_counts([0.7, 0.3], 64)
    assert (k, n.tolist()) == (320, [224, 96])
    m = Mixture([0.7, 0.3], 64)
    corpus, rows = m.locate(np.arange(5 * k))
    for b in range(5):
        assert np.bincount(corpus[b * k:(b + 1) * k]).tolist() == [224, 96]
    for i in range(2):  # each corpus's rows are 0, 1, 2, ... in stream order
        assert rows[corpus == i].tolist() == list(range((corpus == i).sum()))
    for end in (0, 1, 100, 321, 1599):
        assert m.rows_drawn(end).tolist() == np.bincount(corpus[:end], minlength=2).tolist()
    k3, n3 = block_counts([1, 1, 1], 8)  # 1/3 each: 3 batches of 8 rows
    assert (k3, n3.tolist()) == (24, [8, 8, 8])


def test_mixture_batches_draw_from_the_right_corpus(corpora):
    maker = _maker(corpora, batch_size=10, weights=(0.6, 0.4), names=("a", "b"))
    b_ids = set(np.unique(np.concatenate([
        decode_windows(corpora["b"].read("train", range(corpora["b"].num_windows("train"))),
                       32, corpora["b"].dtype)[0].ravel()])).tolist())
    corpus, _ = maker.mixture.locate(np.arange(10))
    batch = maker(0)
    orig = np.where(batch["mlm_weights"] > 0, batch["mlm_targets"], batch["input_ids"])
    for row, c in zip(orig, corpus, strict=True):
        from_b = set(row[row > 0].tolist()) <= b_ids
        assert from_b == (c == 1)
    assert maker.rows_drawn(3) == {"a": 18, "b": 12}


def test_dev_batches_cover_every_dev_window_once(corpora):
    maker = _maker(corpora, batch_size=8, weights=(1, 1), names=("a", "b"))
    batches = list(maker.dev_batches())
    n = maker.dev_windows()
    assert len(batches) == -(-n // 8) and n > 8
    real = np.concatenate([b["attention_mask"].any(1) for b in batches])
    assert real.sum() == n and not real[n:].any()
    again = list(maker.dev_batches())
    assert all(np.array_equal(x["input_ids"], y["input_ids"]) for x, y in zip(batches, again,
                                                                              strict=True))


def _windows(corpus, n):
    ids, starts, _ = decode_windows(corpus.read("train", range(n)), 32, corpus.dtype)
    return ids, starts


def test_masking_statistics_match_todays_masker_on_the_same_windows(corpora):
    """Unit pick rate, 80/10/10 split and specials against mask_units (one row at a time,
    numpy's generator) on the same windows; decisions per unit, replacement ids per token."""
    maker = _maker(corpora)
    ids, starts = _windows(corpora["a"], 200)
    special = np.isin(ids, maker.special_ids)
    prev_special = np.c_[np.ones(len(ids), bool), special[:, :-1]]
    units = np.where(special, -1, np.cumsum(~special & (starts | prev_special), axis=1) - 1)
    stats = {"new": [], "old": []}
    rng = np.random.default_rng(0)
    for rep in range(10):
        keys = np.arange(len(ids)) + rep * len(ids)
        masked, _, w = mask_windows(ids, starts, keys, 0, mask_id=maker.mask_id,
                                    special_ids=maker.special_ids, random_ids=maker.random_ids)
        stats["new"].append((masked, w))
        old = [mask_units(r, u, rng, mask_id=maker.mask_id, random_ids=maker.random_ids)
               for r, u in zip(ids, units, strict=True)]
        stats["old"].append((np.stack([o[0] for o in old]), np.stack([o[2] for o in old])))
    for name, runs in stats.items():
        picked_units, kinds, split_units = 0, np.zeros(3), 0
        for masked, w in runs:
            assert not w[special].any(), name
            for r in range(len(ids)):
                for u in range(units[r].max() + 1):
                    pos = units[r] == u
                    wu = w[r, pos]
                    split_units += wu.min() != wu.max()
                    if wu[0] > 0:
                        picked_units += 1
                        m = masked[r, pos]
                        kinds += [(m == maker.mask_id).all(), (m == ids[r, pos]).all(), 0]
        n_units = sum(units[r].max() + 1 for r in range(len(ids))) * len(runs)
        assert split_units == 0, name  # a unit is picked whole
        rate = picked_units / n_units
        assert abs(rate - 0.15) < 0.01, (name, rate)
        mask_frac, keep_frac = kinds[:2] / picked_units
        assert abs(mask_frac - 0.8) < 0.03 and abs(keep_frac - 0.1) < 0.03, (name, kinds)


def test_random_replacements_are_drawn_per_token_and_keyed_per_window(corpora):
    maker = _maker(corpora)
    ids = np.full((400, 32), 0, np.int32)
    ids[:, 0], ids[:, 31] = 2, 3  # [CLS] 30 tokens [SEP]
    ids[:, 1:31] = 10
    starts = np.zeros_like(ids, bool)
    starts[:, 1::6] = True  # units of 6 tokens
    masked, _, w = mask_windows(ids, starts, np.arange(400), 0, mask_id=maker.mask_id,
                                special_ids=maker.special_ids, random_ids=maker.random_ids)
    replaced = (w > 0) & (masked != maker.mask_id) & (masked != 10)
    rows = [masked[r, replaced[r]] for r in range(400) if replaced[r].sum() >= 6]
    assert rows and np.mean([len(set(r.tolist())) > 1 for r in rows]) > 0.9  # per token
    # the 80/10/10 action is drawn per unit, not per row: rows with several picked units mix
    long = np.full((200, 202), 10, np.int32)
    long[:, 0], long[:, -1] = 2, 3
    unit_starts = np.zeros_like(long, bool)
    unit_starts[:, 1:-1:2] = True  # 100 units of 2 tokens: 15 picked a row
    masked, _, w = mask_windows(long, unit_starts, np.arange(200), 0, mask_id=maker.mask_id,
                                special_ids=maker.special_ids, random_ids=maker.random_ids)
    first = np.arange(1, 201, 2)
    kinds = [set((masked[r, first][w[r, first] > 0] == maker.mask_id).tolist())
             for r in range(200)]
    assert np.mean([len(k) > 1 for k in kinds]) > 0.5
