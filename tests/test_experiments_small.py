"""Small versions of the experiments: length generalisation and the architecture bench.

Each runs end to end on tiny models (2 lengths, 1 seed, a few steps) and must write well-formed
results files; the bench's compiled FLOP counts must match the closed-form matmul count within
10%, and the length-generalisation windows must score the same masked tokens at every length.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from configs import bench_arch as bench_config
from configs import length_generalization as lg_config
from experiments import bench_arch, length_generalization
from gau_jax.data import sources
from gau_jax.data.tokenizer import build_char_vocab
from gau_jax.models.costs import train_matmul_flops

PNG = b"\x89PNG\r\n\x1a\n"


def test_eval_rows_score_the_same_tokens_at_every_length():
    docs = sources.load_corpus(None)[:200]
    tok = build_char_vocab(docs, 800)
    rows = length_generalization.eval_rows(tok, "".join(docs), (64, 256), 1024, seed=0)
    scored = {}
    for L, r in rows.items():
        assert r["input_ids"].shape[1] == L
        assert (r["input_ids"][:, 0] == tok.cls_id).all() and (r["input_ids"][:, -1] ==
                                                                tok.sep_id).all()
        w = r["mlm_weights"]
        assert w[:, [0, -1]].sum() == 0 and w.sum() > 0
        scored[L] = np.sort(r["mlm_targets"][w > 0])
    np.testing.assert_array_equal(scored[64], scored[256])


@pytest.mark.slow
def test_length_generalization_smoke(tmp_path):
    c = lg_config.get_config("smoke")
    c.results_dir = str(tmp_path / "results")
    records = length_generalization.run(c, tmp_path / "work")
    assert len(records) == 4 and {(r["block"], r["variant"]) for r in records} == {
        (b, v) for b in ("roformer_v2", "gau")
        for v in ("relu2 (n = row length)", "relu2 (fixed n = 64)")}
    for r in records:
        assert set(r["accuracy"]) == {"64", "128"}
        assert np.isfinite(r["train_loss"])
    for block in ("roformer_v2", "gau"):  # one trained state per block, evaluated two ways: at
        # the training length (64) a fixed n = 64 is the row length, so both score the same
        acc = [r["accuracy"]["64"] for r in records if r["block"] == block]
        assert len(acc) == 2 and acc[0] == acc[1], (block, acc)
    md = (tmp_path / "results" / "length_generalization.md").read_text()
    assert "| variant | 64 | 128 |" in md and "## gau" in md and "## roformer_v2" in md
    assert sum(x.startswith("| relu2 (fixed n = 64) |") for x in md.splitlines()) == 2
    assert (tmp_path / "results" / "length_generalization.png").read_bytes()[:8] == PNG
    again = length_generalization.run(c, tmp_path / "work")  # resumes: nothing left to train
    assert again == records
    runs = {r["run"] for r in records}
    assert {p.name for p in (tmp_path / "work" / "runs").iterdir()} == runs
    for name in runs:  # each run trained by the Trainer in its own workdir, to the last step
        summary = json.loads((tmp_path / "work" / "runs" / name / "summary.json").read_text())
        assert summary["step"] == c.steps
    c.steps += 1  # another setting: new runs, not the finished ones read back
    assert {r["run"] for r in length_generalization.run(c, tmp_path / "work")}.isdisjoint(runs)
    assert not (tmp_path / "work" / "length_generalization.md").exists()  # results_dir only


def test_mask_rows_pads_with_the_library_collator():
    docs = sources.load_corpus(None)[:50]
    tok = build_char_vocab(docs, 500)
    texts = ["".join(docs)[:20], "".join(docs)[20:25]]
    rows = length_generalization.mask_rows(tok, texts, 32, seed=0)
    assert rows["input_ids"].shape == (2, 32)
    np.testing.assert_array_equal(rows["attention_mask"].sum(1), [22, 7])  # [CLS] text [SEP]
    assert (rows["input_ids"][1, 7:] == tok.pad_id).all()
    assert (rows["mlm_weights"][rows["attention_mask"] == 0] == 0).all()


@pytest.mark.slow
def test_bench_arch_smoke_flops_match_closed_form(tmp_path):
    c = bench_config.get_config("smoke")
    (tmp_path / "arch_notes.md").write_text("- a hand-written note\n")  # survives the rerun
    records = bench_arch.run(c, tmp_path)  # results_dir "": the workdir
    assert {(r["model"], r["n"]) for r in records} == {
        ("roformer_v2_tiny", 128), ("roformer_v2_tiny", 256), ("gau_alpha_tiny", 128),
        ("gau_alpha_tiny", 256), ("gau_alpha_tiny_chunk64", 256)}
    for r in records:
        assert abs(r["flops"] / r["closed_form_flops"] - 1) < 0.10, r
        assert r["temp_bytes"] > 0 and r["argument_bytes"] > 0
    timed = [r for r in records if "step_s" in r]
    assert {(r["model"], r["n"]) for r in timed} == {
        ("roformer_v2_tiny", 128), ("gau_alpha_tiny", 128), ("gau_alpha_tiny_chunk64", 256)}
    assert all(r["step_s"] > 0 and r["efficiency"] > 0 for r in timed)
    gau = next(r for r in records if r["model"] == "gau_alpha_tiny" and r["n"] == 128)
    assert gau["speed_ratio"] > 0 and gau["memory_ratio"] > 0
    md = (tmp_path / "arch.md").read_text()
    assert "## Targets" in md and "| gau_alpha_tiny_chunk64 | 256 |" in md
    assert md.index("## Reading notes") > md.index("## Targets")
    assert md.rstrip().endswith("- a hand-written note")
    assert (tmp_path / "arch.png").read_bytes()[:8] == PNG


def test_closed_form_flops_scale_as_expected():
    cfg = bench_arch.model_config(bench_config.get_config("smoke"), "gau_alpha_tiny")
    lin = train_matmul_flops(cfg, 1, 256) - train_matmul_flops(cfg, 1, 128)
    # f(n) = a n + b n²: f(256) - 2 f(128) = b (256² - 2·128²) = 2·b·128², b = 3·L·2(s+e)
    b = 3 * cfg.num_layers * 2 * (cfg.key_size + cfg.intermediate_size)
    assert lin - train_matmul_flops(cfg, 1, 128) == pytest.approx(b * 2 * 128**2)
