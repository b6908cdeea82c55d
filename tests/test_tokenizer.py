"""Tokenizer: Chinese round trip, offsets, pairs/truncation, vocab building and vocab errors."""

from __future__ import annotations

import pytest

from gau_jax.data.readers import DataError, read_text_corpus
from gau_jax.data.tokenizer import SPECIAL_TOKENS, build_char_vocab, load_tokenizer

CORPUS = [
    "迈向充满希望的新世纪——一九九八年新年讲话",
    "中共中央总书记、国家主席江泽民发表１９９８年新年讲话。",
    "今天天气不错，我们去北京天安门看升旗。Hello World 2023年！",
    "模型GAU-alpha在CLUE上的表现很好。",
]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    return build_char_vocab(CORPUS, 200, save_path=path), path


def test_built_vocab_has_requested_size_and_specials(tok):
    t, path = tok
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(lines) == 200 == t.vocab_size
    assert lines[:5] == list(SPECIAL_TOKENS)
    assert (t.pad_id, t.unk_id, t.cls_id, t.sep_id, t.mask_id) == (0, 1, 2, 3, 4)
    assert "[unused1]" in lines  # fewer distinct units than 200 -> filled up
    reloaded = load_tokenizer(path)
    assert reloaded.vocab == t.vocab
    small = build_char_vocab(CORPUS, 20)
    assert small.vocab_size == 20 and "[unused1]" not in small.vocab
    # most frequent units survive: "年" occurs 5 times
    assert "年" in small.vocab


def test_chinese_round_trip(tok):
    t, _ = tok
    texts = ["今天天气不错，我们去北京天安门看升旗。",
             "中共中央总书记、国家主席江泽民发表１９９８年新年讲话。"]
    for text in texts:
        enc = t.encode(text)
        assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
        assert "[UNK]" not in enc.tokens
        assert t.decode(enc.input_ids) == text


def test_offsets_map_back_to_characters(tok):
    t, _ = tok
    text = "模型GAU-alpha在CLUE上的表现很好。"
    enc = t.encode(text)
    for token, (s, e), seq in zip(enc.tokens, enc.offsets, enc.sequence_ids, strict=True):
        if seq is None:
            continue
        assert text[s:e].lower() == token.removeprefix("##"), (token, s, e)
    pieces = [text[s:e] for (s, e), q in zip(enc.offsets, enc.sequence_ids, strict=True) if q == 0]
    assert "".join(pieces) == text


def test_pairs_segments_and_truncation(tok):
    t, _ = tok
    enc = t.encode("今天天气", "不错")
    assert enc.tokens == ["[CLS]", "今", "天", "天", "气", "[SEP]", "不", "错", "[SEP]"]
    assert enc.segment_ids == [0] * 6 + [1] * 3
    assert enc.sequence_ids == [None, 0, 0, 0, 0, None, 1, 1, None]
    cut = t.encode("今天天气不错我们", "北京", max_len=8)
    assert cut.tokens == ["[CLS]", "今", "天", "天", "[SEP]", "北", "京", "[SEP]"]
    assert cut.segment_ids.count(1) == 3  # the shorter second text survives: 北 京 [SEP]
    assert t.encode("今天天气不错", max_len=4).tokens == ["[CLS]", "今", "天", "[SEP]"]
    assert t.decode(t.encode("今天", "不错").input_ids) == "今天不错"


def test_vocab_file_errors(tmp_path):
    p = tmp_path / "vocab.txt"
    p.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab.txt: vocab lacks special tokens \['\[MASK\]'\]"):
        load_tokenizer(p)
    p.write_text("[PAD]\n[UNK]\n[UNK]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab.txt:3: duplicate token"):
        load_tokenizer(p)


@pytest.mark.shared_data
def test_bert_vocab(shared_data):
    t = load_tokenizer(shared_data / "vocab" / "vocab.txt")
    assert t.vocab_size == 21128 and (t.pad_id, t.unk_id, t.cls_id, t.sep_id, t.mask_id) == (
        0, 100, 101, 102, 103)
    text = "今天天气不错，我们去北京天安门看升旗。"
    assert t.decode(t.encode(text).input_ids) == text


def test_text_corpus_reader(tmp_path):
    (tmp_path / "a.txt").write_text("第一篇\n\n第二篇\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("第三篇", encoding="utf-8")
    assert read_text_corpus(tmp_path) == ["第一篇", "第二篇", "第三篇"]
    assert read_text_corpus(tmp_path, doc_per="file") == ["第一篇\n\n第二篇", "第三篇"]
    (tmp_path / "c.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"c.txt: file is empty"):
        read_text_corpus(tmp_path)
    with pytest.raises(DataError, match=r"corpus path not found"):
        read_text_corpus(tmp_path / "missing")
