r"""CLUE's metrics as CLUE computes them: pure functions on python objects, scores in percent.

    accuracy      = 100 · #{i : predicted_i == gold_i} / n       (classification, C3, ChID)
    CMRC2018      official evaluation script v5 (cmrc2018_evaluate.py, Cui et al. 2019,
                  "A Span-Extraction Dataset for Chinese Machine Reading Comprehension"):
                  EM_q = max_a [strip_punct(lower(a)) == strip_punct(lower(p))]
                  F1_q = max_a 2·P·R / (P + R),  P = L / |seg(p)|,  R = L / |seg(a)|,
                         L = length of the longest common *contiguous* run of segments
                         (seg = mixed segmentation with the punctuation list removed)
                  EM = 100 · Σ_q EM_q / #questions, F1 likewise; a question without a
                  prediction scores 0 on both.
    CLUENER       two scores that are not comparable:
                  "f1" (`entity_f1`): exact-span micro F1, what Su's CLUE scripts
                  (bojone/CLUE-bert4keras src/cluener.py) and so the GAU-α table report: an
                  entity is (type, start, end); it counts only when type and both boundaries
                  match. F1 = 2·TP / (#predicted + #gold), P = TP / #predicted, R = TP / #gold.
                  "f1_leaderboard" (`leaderboard_f1`): the CLUE leaderboard's scorer
                  (CLUEbenchmark/CLUENER2020 score.py, `get_f1_score`): per type t and row,
                  the predicted entity *texts* (label[t].keys(), positions ignored, a text
                  counted once however often it occurs) against the gold texts; TP / FP / FN
                  summed over rows, F1_t = 2·P·R / (P + R); the score is the mean of F1_t over
                  the 10 types (macro).

Mixed segmentation (the official script's `mixed_segmentation`): the text is lower-cased and
stripped; every character in U+4E00..U+9FA5 and every mark of PUNCTUATION is one segment; the
runs of other characters between them (Latin words, digits, spaces, other marks) are split
into words by `nltk.word_tokenize`. With punctuation removal (what F1 uses) the marks are
dropped *without* ending the run they sit in ("a-b" is one run "ab"). The script's list has
the two-character entry '……', which a single character never equals: '…' is not removed.

English runs: `nltk.word_tokenize` = Punkt sentence splitting (needs downloaded model data),
then `nltk.tokenize.NLTKWordTokenizer` on each sentence. `words()` below reproduces
NLTKWordTokenizer of nltk 3.10 (the same ordered regular-expression rewrites, then a whitespace
split) on the whole run, without Punkt, so it differs from the script run with nltk 3.10 in:
  - sentence ends inside a run: where Punkt ends a sentence (a period, a space, more text:
    "end. next") nltk splits the period off ("end", "."), `words()` keeps it ("end."); a final
    period is split off by both;
  - the regex engine: nltk 3.10 compiles the patterns with the third-party `regex` module, whose
    \w also matches combining marks (U+0300...) and connector punctuation; here Python's `re`
    (letters, digits, "_"). Only an apostrophe next to such a character splits differently
    (53 of 20,000 random strings of Latin, combining-mark, CJK and fullwidth characters; 0 of
    20,000 strings of ASCII letters, digits and punctuation, checked against nltk 3.10.4).
Older nltk rules differ more (3.9 has no dash rule, another apostrophe rule), so the script's
own numbers depend on its nltk version too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# The official script's sp_char list, in its order ('……' is one two-character entry).
PUNCTUATION_LIST = ('-', ':', '_', '*', '^', '/', '\\', '~', '`', '+', '=',
                    '，', '。', '：', '？', '！', '“', '”', '；', '’', '《', '》', '……', '·', '、',
                    '「', '」', '（', '）', '－', '～', '『', '』')
PUNCTUATION = frozenset(p for p in PUNCTUATION_LIST if len(p) == 1)  # what a character can be
_CJK = re.compile(r"[\u4e00-\u9fa5]")

# ------------------------------------------------------------------ NLTKWordTokenizer rules
_R = re.compile
_STARTING_QUOTES = (
    (_R("([«“‘„]|[`]+)"), r" \1 "),
    (_R(r'^"'), r"``"),
    (_R(r"(``)"), r" \1 "),
    (_R(r"([ \(\[{<])(\"|\'{2})"), r"\1 `` "),
    (_R(r"(?i)(?<!\w)(')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)"), r"\1 "),
)
_PUNCT_RULES = (
    (_R(r"([^\.])(\.)([\]\)}>\"'»”’ ]*+)\s*$"), r"\1 \2 \3 "),
    (_R(r"([:,])([^\d])"), r" \1 \2"),
    (_R(r"([:,])$"), r" \1 "),
    (_R(r"\.{2,}"), r" \g<0> "),
    (_R(r"[;@#$%&]"), r" \g<0> "),
    (_R("[\u2012-\u2015]"), r" \g<0> "),
    (_R(r"([^\.])(\.)([\]\)}>\"']*)\s*$"), r"\1 \2\3 "),
    (_R(r"[?!]"), r" \g<0> "),
    (_R(r"([^'])' "), r"\1 ' "),
    (_R(r"[*]"), r" \g<0> "),
    (_R(r"[\]\[\(\)\{\}\<\>]"), r" \g<0> "),  # brackets
    (_R(r"--"), r" -- "),                     # double dashes
)
_ENDING_QUOTES = (
    (_R("([»”’])"), r" \1 "),
    (_R(r"''"), " '' "),
    (_R(r'"'), " '' "),
    (_R(r"\s+"), " "),
    (_R(r"([^' ])('[sS]|'[mM]|'[dD]|') "), r"\1 \2 "),
    (_R(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 "),
)
_CONTRACTIONS = tuple(_R(p) for p in (
    r"(?i)\b(can)(not)\b", r"(?i)\b(d)('ye)\b", r"(?i)\b(gim)(me)\b", r"(?i)\b(gon)(na)\b",
    r"(?i)\b(got)(ta)\b", r"(?i)\b(lem)(me)\b", r"(?i)\b(more)('n)\b",
    r"(?i)\b(wan)(na)(?=\s)", r"(?i) ('t)(is)\b", r"(?i) ('t)(was)\b"))


def words(text: str) -> list[str]:
    """NLTKWordTokenizer's tokens of `text` (module docstring: no Punkt sentence split)."""
    for rx, sub in _STARTING_QUOTES + _PUNCT_RULES:
        text = rx.sub(sub, text)
    text = f" {text} "
    for rx, sub in _ENDING_QUOTES:
        text = rx.sub(sub, text)
    for rx in _CONTRACTIONS:
        text = rx.sub(r" \1 \2 ", text)
    return text.split()


# ------------------------------------------------------------------ CMRC2018
def cmrc2018_segments(text: str, remove_punctuation: bool = False) -> list[str]:
    """The official mixed segmentation (module docstring) of `text`."""
    out, run = [], ""
    for ch in str(text).lower().strip():
        if remove_punctuation and ch in PUNCTUATION:
            continue
        if _CJK.match(ch) or ch in PUNCTUATION:
            if run:
                out += words(run)
                run = ""
            out.append(ch)
        else:
            run += ch
    return out + (words(run) if run else [])


def strip_punctuation(text: str) -> str:
    """Lower-cased, stripped `text` without the marks of PUNCTUATION (what EM compares)."""
    return "".join(ch for ch in str(text).lower().strip() if ch not in PUNCTUATION)


def longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest contiguous run of items shared by `a` and `b`."""
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                best = max(best, cur[j + 1])
        prev = cur
    return best


def cmrc2018_em(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the prediction equals one answer after lower/strip/punctuation removal."""
    p = strip_punctuation(prediction)
    return float(any(strip_punctuation(a) == p for a in answers))


def cmrc2018_f1(prediction: str, answers: Sequence[str]) -> float:
    """The best F1 (0..1) over the answers of the longest common run of segments."""
    pred = cmrc2018_segments(prediction, remove_punctuation=True)
    best = 0.0
    for a in answers:
        gold = cmrc2018_segments(a, remove_punctuation=True)
        common = longest_common_run(gold, pred)
        if common:
            p, r = common / len(pred), common / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


def cmrc2018_scores(predictions: Mapping[str, str],
                    answers: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """EM and F1 in percent over the questions of `answers` ({question id: [texts]}); ids are
    stripped as the official script strips them; a question absent from `predictions` scores
    0 and is counted in "unanswered". Predictions for unknown questions are ignored."""
    em = f1 = 0.0
    unanswered = 0
    for qid, texts in answers.items():
        qid = str(qid).strip()
        if qid not in predictions:
            unanswered += 1
            continue
        pred = str(predictions[qid])
        em += cmrc2018_em(pred, texts)
        f1 += cmrc2018_f1(pred, texts)
    n = len(answers)
    return {"em": 100.0 * em / n if n else 0.0, "f1": 100.0 * f1 / n if n else 0.0,
            "total": n, "unanswered": unanswered}


# ------------------------------------------------------------------ accuracy, entities
def accuracy(predicted: Sequence[Any], gold: Sequence[Any]) -> float:
    """Percent of positions where predicted equals gold (the sequences align one to one)."""
    if len(predicted) != len(gold):
        raise ValueError(f"accuracy: {len(predicted)} predictions for {len(gold)} gold labels")
    if not gold:
        return 0.0
    return 100.0 * sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)


def entity_set(label: Mapping[str, Mapping[str, Iterable[Sequence[int]]]]
               ) -> set[tuple[str, int, int]]:
    """{(type, start, end)} of a CLUENER label {type: {text: [[start, end], ...]}}; end is
    inclusive as in the data."""
    return {(etype, int(s), int(e)) for etype, mentions in label.items()
            for spans in mentions.values() for s, e in spans}


def entity_f1(predicted: Sequence[set], gold: Sequence[set]) -> dict[str, float]:
    """Micro F1 / precision / recall in percent over rows of entity sets (module docstring);
    no predicted and no gold entities at all gives 100 (nothing missed, nothing wrong)."""
    if len(predicted) != len(gold):
        raise ValueError(f"entity_f1: {len(predicted)} predicted rows for {len(gold)} gold rows")
    tp = sum(len(set(p) & set(g)) for p, g in zip(predicted, gold, strict=True))
    n_pred, n_gold = sum(len(p) for p in predicted), sum(len(g) for g in gold)
    if n_pred + n_gold == 0:
        return {"f1": 100.0, "precision": 100.0, "recall": 100.0}
    return {"f1": 200.0 * tp / (n_pred + n_gold),
            "precision": 100.0 * tp / n_pred if n_pred else 0.0,
            "recall": 100.0 * tp / n_gold if n_gold else 0.0}


def leaderboard_f1(predicted: Sequence[Mapping[str, Mapping[str, Any]]],
                   gold: Sequence[Mapping[str, Mapping[str, Any]]],
                   types: Sequence[str]) -> dict[str, Any]:
    """CLUENER's leaderboard F1 in percent (module docstring; CLUEbenchmark/CLUENER2020
    score.py): rows of CLUENER labels {type: {entity text: spans}}, aligned one to one (score.py
    pairs the files' lines in order; callers pair them by id), averaged over `types`.

    score.py divides by zero for a type with no predicted texts (P), no gold texts (R) or no
    true positive (F); here P or R with a zero denominator is 0 and F is 0 when P + R = 0,
    except that a type with neither predicted nor gold texts scores 100 (nothing missed,
    nothing wrong, as `entity_f1` does). Returns {"f1_leaderboard": mean, "f1_types": {type:
    F1_t}}."""
    if len(predicted) != len(gold):
        raise ValueError(f"leaderboard_f1: {len(predicted)} predicted rows for {len(gold)} "
                         "gold rows")
    per_type = {}
    for t in types:
        tp = fp = fn = 0
        for p, g in zip(predicted, gold, strict=True):
            p_texts, g_texts = set(p.get(t, {})), set(g.get(t, {}))
            tp += len(p_texts & g_texts)
            fp += len(p_texts - g_texts)
            fn += len(g_texts - p_texts)
        if tp + fp + fn == 0:
            per_type[t] = 100.0
            continue
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        per_type[t] = (200.0 * precision * recall / (precision + recall)
                       if precision + recall else 0.0)
    mean = sum(per_type.values()) / len(types) if types else 0.0
    return {"f1_leaderboard": mean, "f1_types": per_type}
