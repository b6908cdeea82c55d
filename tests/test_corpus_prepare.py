"""`python -m gau_jax.data.prepare_corpus`: what it writes, against independent references.

The windows are checked against ChineseTokenizer.encode and masking.word_units (today's
masker) on the same documents; counts against corpora built here with known duplicates and bad
lines; the shards byte for byte across worker counts and across a kill and rerun.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gau_jax.data import corpus_prepare as prep
from gau_jax.data.corpus import people_daily_texts
from gau_jax.data.corpus_format import PreparedCorpus, decode_windows
from gau_jax.data.masking import jieba_word_spans, rjieba_word_spans, word_units
from gau_jax.data.prepare_corpus import build_vocab, main, prepare
from gau_jax.data.readers import DataError
from gau_jax.data.tokenizer import build_char_vocab, load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
DOCS = list({" ".join(d.split()): d for d in people_daily_texts()[:700]}.values())[:600]
SMALL = prep.Settings(max_length=64, dev_fraction=0.1, shard_mb=0.02)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> dict:
    """A text file (3 shards), a JSON Lines file and a .gz text file; a vocabulary."""
    tmp = tmp_path_factory.mktemp("raw")
    (tmp / "a.txt").write_text("\n".join(DOCS[:400]) + "\n", encoding="utf-8")
    rows = [json.dumps({"text": d, "id": i}, ensure_ascii=False) for i, d in enumerate(DOCS[400:])]
    (tmp / "b.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with gzip.open(tmp / "c.txt.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(DOCS[:50] + ["unique gz document 独一无二"]) + "\n")  # 50 duplicates
    vocab = tmp / "vocab.txt"
    build_char_vocab(DOCS, 1500, save_path=vocab)
    return {"dir": tmp, "vocab": vocab, "inputs": [tmp / "a.txt", tmp / "b.jsonl",
                                                   tmp / "c.txt.gz"]}


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "corpus"
    prepare(raw["inputs"], out, raw["vocab"], SMALL, workers=0)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.array_record"))}


def test_counts_and_windows_equal_the_tokenizer_and_todays_word_units(raw, prepared):
    m = json.loads((prepared / "manifest.json").read_text())
    assert m["input_shards"] >= 4  # a.txt is cut into several byte ranges
    assert (m["documents"], m["duplicates"], m["bad_lines"]) == (651, 50, 0)
    corpus = PreparedCorpus(prepared)
    tok = load_tokenizer(raw["vocab"])
    kept = DOCS + ["unique gz document 独一无二"]
    for split in ("train", "dev"):
        in_split = [d for d in kept if (prep.doc_key(d) < 0.1 * 2.0**64) == (split == "dev")]
        assert m["documents_kept"][split] == len(in_split) > 0
        want_ids, want_starts = [], []
        for d in in_split:  # the stream: [CLS] d [SEP] ..., word units as today's masker
            enc = tok.encode(d)
            special = np.asarray([s is None for s in enc.sequence_ids])
            cont = np.asarray([t.startswith("##") for t in enc.tokens])
            units = word_units(enc.offsets, special, jieba_word_spans(d), len(d), cont)
            starts = np.r_[units[0] >= 0, (units[1:] != units[:-1]) & (units[1:] >= 0)]
            want_ids += enc.input_ids
            want_starts += list(starts)
        records = corpus.read(split, range(corpus.num_windows(split)))
        ids, starts, lengths = decode_windows(records, 64, corpus.dtype)
        got_ids = np.concatenate([r[:n] for r, n in zip(ids, lengths, strict=True)])
        got_starts = np.concatenate([r[:n] for r, n in zip(starts, lengths, strict=True)])
        np.testing.assert_array_equal(got_ids, want_ids)
        np.testing.assert_array_equal(got_starts, want_starts)
        assert m["tokens"][split] == len(want_ids) and (lengths[:-1] <= 64).all()
    assert m["id_dtype"] == "uint16"
    assert m["disk_bytes"] == sum(p.stat().st_size for p in prepared.glob("*.array_record"))


TRICKY = ["hello world 12345 abc中文test", "  空格 测试 ", "1998年GDP增长8.5%，ｆｕｌｌ宽",
          "😀表情😀", "[MASK] 特殊", "Ｅｘｃｅｌ表格 unknownwordxyz 了", "a\tb\u3000c",
          "é accents café 咖啡"]


def test_vectorised_word_starts_equal_word_units(raw):
    """The preparation's batched word starts against today's per-token loop, on text with
    WordPiece continuations, [UNK], spaces, full-width forms and emoji."""
    encoder = prep._Encoder(raw["vocab"], "jieba")
    texts = TRICKY + DOCS[:100]
    for text, (ids, starts) in zip(texts, encoder(texts), strict=True):
        enc = encoder.tok.encode(text)
        assert ids.tolist() == enc.input_ids
        special = np.asarray([s is None for s in enc.sequence_ids])
        cont = np.asarray([t.startswith("##") for t in enc.tokens])
        units = word_units(enc.offsets, special, jieba_word_spans(text), len(text), cont)
        want = np.r_[units[0] >= 0, (units[1:] != units[:-1]) & (units[1:] >= 0)]
        np.testing.assert_array_equal(starts, want, err_msg=text)


def test_segmenters_agree_on_word_boundaries():
    """rjieba (the default segmenter) is jieba's algorithm in Rust: the same words."""
    same = sum(jieba_word_spans(d) == rjieba_word_spans(d) for d in DOCS[:300])
    assert same == 300


def test_shards_byte_identical_at_one_and_two_workers(raw, prepared, tmp_path):
    prepare(raw["inputs"], tmp_path / "w2", raw["vocab"], SMALL, workers=2)
    one, two = _files(prepared), _files(tmp_path / "w2")
    assert len(one) >= 8 and one == two


def test_bad_lines_duplicates_and_blank_lines_counted(tmp_path, raw, caplog):
    """Line numbers are absolute in their file even when the bad line is in a later shard."""
    lines = [d.encode() for d in DOCS[:200]]
    lines[150] = b"bad \xff\xfe utf-8"
    lines[30] = b"   "  # blank
    lines[40] = (" " + DOCS[41] + "  ").encode()  # a whitespace variant of line 42: duplicate
    (tmp_path / "t.txt").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "j.jsonl").write_text('{"text": "好的文本"}\n{"txt": "x"}\nnot json\n["a"]\n',
                                      encoding="utf-8")
    with caplog.at_level("WARNING"):
        m = prepare([tmp_path / "t.txt", tmp_path / "j.jsonl"], tmp_path / "out", raw["vocab"],
                    SMALL)
    assert m["input_shards"] >= 3
    assert (m["lines"], m["bad_lines"], m["duplicates"]) == (204, 4, 1)
    assert m["documents"] == 200 - 2 + 1  # less the bad and blank lines, plus 好的文本
    assert m["bad_examples"][0].startswith(f"{tmp_path / 't.txt'}:151: UnicodeDecodeError")
    assert [e.split(": ")[0] for e in m["bad_examples"][1:]] == [
        f"{tmp_path / 'j.jsonl'}:{i}" for i in (2, 3, 4)]
    assert "t.txt:151" in caplog.text


def test_changed_vocabulary_or_input_is_refused_naming_both(raw, prepared, tmp_path):
    fp = json.loads((prepared / "manifest.json").read_text())["fingerprint"]
    assert prepare(raw["inputs"], prepared, raw["vocab"], SMALL)["fingerprint"] == fp  # no-op
    other = tmp_path / "vocab.txt"
    build_char_vocab(DOCS, 1400, save_path=other)
    with pytest.raises(DataError, match=f"fingerprint {fp}; this command's is ") as e:
        prepare(raw["inputs"], prepared, other, SMALL)
    assert str(prepared) in str(e.value)
    with pytest.raises(DataError, match="fingerprint"):
        prepare(raw["inputs"], prepared, raw["vocab"], prep.Settings(max_length=32))


def test_vocabulary_past_65535_ids_stored_as_uint32(tmp_path):
    chars = [chr(0x4E00 + i) for i in range(300)]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [f"[unused{i}]" for i in range(70_000 - len(tokens) - len(chars))] + chars
    (tmp_path / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    docs = ["".join(np.random.default_rng(i).choice(chars, 30)) for i in range(40)]
    (tmp_path / "c.txt").write_text("\n".join(docs) + "\n", encoding="utf-8")
    m = prepare([tmp_path / "c.txt"], tmp_path / "out", tmp_path / "vocab.txt",
                prep.Settings(max_length=32, dev_fraction=0.0))
    corpus = PreparedCorpus(tmp_path / "out")
    assert m["id_dtype"] == "uint32" and m["unk_rate"] == 0
    ids, _, lengths = decode_windows(corpus.read("train", [0]), 32, corpus.dtype)
    want = load_tokenizer(tmp_path / "vocab.txt").encode(docs[0]).input_ids
    assert ids[0, :len(want)].tolist() == want and max(want) > 65_535


def test_streamed_vocabulary_equals_the_in_memory_builder(raw, tmp_path):
    """build_vocab folds word counts into unit counts as it goes: the same vocabulary."""
    path = build_vocab(raw["inputs"][:2], 900, tmp_path / "v.txt")
    want = build_char_vocab(DOCS, 900)
    assert load_tokenizer(path).vocab == want.vocab
    sample = build_vocab(raw["inputs"][:2], 900, tmp_path / "s.txt", sample=0.3)
    assert load_tokenizer(sample).vocab != want.vocab  # a sample counts fewer documents


_KILLER = """
import os, signal, sys
from gau_jax.data import corpus_prepare as prep
from gau_jax.data.prepare_corpus import main
calls = [0]
add = prep._WindowWriter.add
def dying_add(self, ids, starts):
    calls[0] += 1
    if calls[0] == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)  # mid-shard: its files half-written
    add(self, ids, starts)
prep._WindowWriter.add = dying_add
sys.exit(main(sys.argv[1:]))
"""


def test_killed_mid_shard_and_rerun_equals_an_uninterrupted_run(raw, prepared, tmp_path):
    args = [*map(str, raw["inputs"]), "--output", str(tmp_path / "k"), "--vocab",
            str(raw["vocab"]), "--workers", "0", "--max_length", "64", "--dev_fraction", "0.1",
            "--shard_mb", "0.02"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), KILL_AT="500")
    r = subprocess.run([sys.executable, "-c", _KILLER, *args], env=env, capture_output=True,
                       timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()[-2000:]
    ledger = next((tmp_path / "k").glob(".prepare-*"))
    done = sorted(p.name for p in ledger.glob("encode-*.json"))
    assert 0 < len(done) < len(list(ledger.glob("scan-*.json")))
    before = {n: (tmp_path / "k" / n).stat().st_mtime_ns for n in _files(tmp_path / "k")}
    assert main(args) == 0
    assert _files(tmp_path / "k") == _files(prepared)
    kept = [n for n, t in before.items() if (tmp_path / "k" / n).stat().st_mtime_ns == t]
    assert len(kept) == 2 * len(done)  # the finished shards were not redone
    assert not list((tmp_path / "k").glob(".*"))  # ledger and half-written files gone
