"""Length generalisation: MLM accuracy at test lengths above the training length.

    python -m experiments.length_generalization \
        --config configs/length_generalization.py:full --workdir runs/length_generalization

For each block type (roformer_v2, gau), normalisation (softmax, softmax_plus, relu2) and seed, a
small encoder is trained by MLM (token-level masking by default) on rows of `train_length`
tokens and evaluated on windows of each of `eval_lengths` tokens cut from the concatenated
held-out documents (the same masked tokens at every length, so lengths differ only in the
context each token sees); relu2 models are evaluated twice: n = the row's visible length (as
trained) and n fixed at train_length. Su, "从熵不变性看Attention的Scale操作",
kexue.fm/archives/8823 (the reference table, docs/math.md).

    accuracy(L) = Σ_masked [argmax_v h_i·E_v = target_i] / #masked     (tied MLM head)

Training is gau_jax.train.loop.Trainer on in-memory rows (masked once by gau_jax.data.masking,
batched by MLMCollator; ShuffledRows draws the order from the seed), one workdir per run:
WORKDIR/runs/<block>_<norm>_seed<s>-<hash of the config>; its own dev pass is empty (the
evaluation is the window scoring here). Evaluation runs the library's eval step
(make_eval_step ∘ mlm_sums_fn) with only the masked positions through the tied head (the top-k
by mlm_weight; k covers every masked token). Each evaluated variant appends a line to
WORKDIR/runs.jsonl (a re-run skips finished runs); the tables and the plot go to results_dir
(default: WORKDIR)/length_generalization.{md,png}.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np

from configs.common import trainer_config
from experiments import cli
from gau_jax.data import sources
from gau_jax.data.masking import WholeWordMasker
from gau_jax.data.pipeline import MLMCollator
from gau_jax.data.synthetic import ShuffledRows
from gau_jax.data.tokenizer import ChineseTokenizer, build_char_vocab
from gau_jax.models import build_encoder, presets
from gau_jax.train.inputs import RunSetup
from gau_jax.train.loop import Trainer
from gau_jax.train.runlog import RunLog, markdown_table, mean_spread, results_header, run_key
from gau_jax.train.step import make_eval_step, mlm_sums_fn

Rows = dict[str, np.ndarray]
# Fields that only say where output goes or which runs to do: not part of a run's identity.
NOT_IN_KEY = ("results_dir", "command", "blocks", "norms", "seeds")


def model_config(c: ml_collections.ConfigDict, block: str, norm: str, vocab_size: int,
                 fixed_n: int = 0) -> ml_collections.ConfigDict:
    """The encoder config of one variant (dropout off: short runs do not overfit)."""
    m = presets.get_model_config("roformer_v2_tiny" if block == "roformer_v2" else
                                 "gau_alpha_tiny")
    m.update(vocab_size=vocab_size, hidden_size=c.hidden_size, attention_norm=norm,
             attention_fixed_n=fixed_n, hidden_dropout=0.0, attention_dropout=0.0, **c[block])
    return m


def text_windows(text: str, length: int, count: int, start: int = 0) -> list[str]:
    """`count` consecutive slices of length-2 characters ([CLS] and [SEP] make `length`)."""
    w = length - 2
    if len(text) < start + w * count:
        raise ValueError(f"held-out text has {len(text)} characters; {count} windows of {length} "
                         "tokens need more (lower eval_tokens or raise eval_fraction)")
    return [text[start + i * w: start + (i + 1) * w] for i in range(count)]


def mask_rows(tok: ChineseTokenizer, texts: Sequence[str], length: int, seed: int,
              unit: str = "token") -> Rows:
    """Masked rows padded to `length` (MLM batch of docs/batches.md); 15% of units, 80/10/10.

    unit "word": whole-word masking (jieba words); "token": every token is its own unit (BERT's
    original masking). One generator masks the texts in order (gau_jax.data.masking).
    """
    masker, rng = WholeWordMasker(tok, length, unit=unit), np.random.default_rng(seed)
    collate = MLMCollator(tok.pad_id, length, pad_multiple=length, packed=False)
    return collate([masker(t, rng) for t in texts])


def head_rows(rows: Rows) -> int:
    """Rows of the tied head per sequence: enough for the most-masked row, a multiple of 8."""
    return int(8 * math.ceil(max(1.0, rows["mlm_weights"].sum(1).max()) / 8))


def eval_rows(tok: ChineseTokenizer, text: str, lengths: Sequence[int], n_tokens: int,
              seed: int, unit: str = "token") -> dict[int, Rows]:
    """{L: rows}: the SAME masked tokens at every length, cut into [CLS] w [SEP] windows.

    The held-out text is masked once (in chunks of the longest length), [CLS]/[SEP] dropped to
    give one token stream; each length cuts it into windows of L-2 tokens. Only the first T
    stream tokens are scored (T = the fewest any length covers), so every length predicts
    exactly the same masked tokens and differs only in the context around them.
    """
    top = max(lengths)
    counts = {L: max(1, n_tokens // L) for L in lengths}
    total = max(counts[L] * (L - 2) for L in lengths)
    chunks = mask_rows(tok, text_windows(text, top, total // (top - 2) + 2), top, seed, unit)
    keep = chunks["attention_mask"].astype(bool)
    keep[:, 0] = False
    keep[np.arange(len(keep)), keep.sum(1)] = False  # [SEP] (the row's last real token)
    stream = {k: chunks[k][keep] for k in ("input_ids", "mlm_targets", "mlm_weights")}
    scored = min(counts[L] * (L - 2) for L in lengths)
    stream["mlm_weights"][scored:] = 0.0
    out = {}
    for L in lengths:
        w, rows = L - 2, math.ceil(scored / (L - 2))
        r = {k: np.zeros((rows, L), np.int32) for k in
             ("input_ids", "segment_ids", "mlm_targets")}
        r["attention_mask"] = np.ones((rows, L), np.int32)
        r["mlm_weights"] = np.zeros((rows, L), np.float32)
        r["input_ids"][:, 0], r["input_ids"][:, -1] = tok.cls_id, tok.sep_id
        for k in stream:
            r[k][:, 1:-1] = stream[k][: rows * w].reshape(rows, w)
        out[L] = r
    return out


def prepare_data(c: ml_collections.ConfigDict) -> tuple[ChineseTokenizer, Rows, dict[int, Rows]]:
    """(tokenizer, training pool of steps·batch rows, {L: evaluation rows})."""
    docs = sources.load_corpus(c.data_dir or None)
    if c.max_documents:
        docs = docs[: c.max_documents]
    n_eval = max(1, int(len(docs) * c.eval_fraction))
    train_docs, eval_docs = docs[:-n_eval], docs[-n_eval:]
    tok = build_char_vocab(train_docs, c.vocab_size)
    train_text = "".join(train_docs)
    n_pool = min(c.steps * c.batch_size, len(train_text) // (c.train_length - 2))
    pool = mask_rows(tok, text_windows(train_text, c.train_length, n_pool), c.train_length,
                     c.data_seed, c.mask_unit)
    evals = eval_rows(tok, "".join(eval_docs), c.eval_lengths, c.eval_tokens, c.data_seed + 1,
                      c.mask_unit)
    return tok, pool, evals


def evaluate(model, state, rows: Rows, batch_tokens: int) -> float:
    """MLM accuracy (%) over all masked tokens of `rows` (the library's eval step)."""
    n = rows["input_ids"].shape[1]
    bs = max(1, batch_tokens // n)
    step = jax.jit(make_eval_step(mlm_sums_fn(model, head_rows(rows))))
    correct = weight = 0.0
    for i in range(0, len(rows["input_ids"]), bs):
        s = step(state, {k: v[i: i + bs] for k, v in rows.items()})
        correct, weight = correct + float(s["correct"]), weight + float(s["weight"])
    return 100.0 * correct / max(weight, 1.0)


def run_config(c: ml_collections.ConfigDict, block: str, norm: str, seed: int,
               vocab_size: int) -> ml_collections.ConfigDict:
    """The Trainer config of one run (configs/common.py fields; the optimizer of `c`)."""
    t = trainer_config()
    t.stage = "pretrain"
    t.model = model_config(c, block, norm, vocab_size)
    ramp = int(c.steps * c.residual_ramp_fraction) if block == "roformer_v2" else 0
    t.update(seed=seed, total_steps=c.steps, batch_size=c.batch_size, max_length=c.train_length,
             optimizer=c.optimizer, learning_rate=c.learning_rate, warmup_steps=c.warmup_steps,
             end_lr_factor=0.0, weight_decay=c.weight_decay, grad_clip_norm=c.grad_clip_norm,
             residual_ramp_steps=ramp, checkpoint_every_steps=c.steps, keep_checkpoints=1,
             async_checkpoints=False, eval_every_steps=c.steps, eval_batches=0,
             log_every_steps=min(c.log_every_steps, c.steps), progress_bar=False,
             tensorboard=False)
    return t


def train_one(c: ml_collections.ConfigDict, block: str, norm: str, seed: int, pool: Rows,
              tok: ChineseTokenizer, workdir: pathlib.Path):
    """Train (or resume) one run in `workdir`; returns (model, state, summary).

    summary["train_loss"] / ["train_accuracy"]: means over the last log period
    (log_every_steps)."""
    config = run_config(c, block, norm, seed, tok.vocab_size)
    model = build_encoder(config.model)
    inputs = RunSetup(model=model, sums_fn=mlm_sums_fn(model, head_rows(pool)),
                    train=ShuffledRows(pool, c.batch_size, seed), dev_batches=None,
                    model_config=config.model, tokenizer=tok)
    trainer = Trainer(config, workdir, inputs)
    try:
        summary = trainer.run()
        state = jax.device_get(trainer.host_state())
    finally:
        trainer.close()
    return model, state, summary


def eval_variants(c: ml_collections.ConfigDict, norm: str) -> list[tuple[str, int]]:
    """(label, attention_fixed_n) pairs a model trained with `norm` is evaluated with."""
    if norm == "relu2":
        return [("relu2 (n = row length)", 0), (f"relu2 (fixed n = {c.train_length})",
                                                c.train_length)]
    return [(norm, 0)]


def run_name(c: ml_collections.ConfigDict, block: str, norm: str, seed: int) -> str:
    """The run's key and folder: readable prefix + hash of every config field that shapes it."""
    fields = {k: v for k, v in c.to_dict().items() if k not in NOT_IN_KEY}
    return run_key(f"{block}_{norm}_seed{seed}", fields)


def run(c: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> list[dict]:
    """All runs of `c` (resuming from WORKDIR/runs.jsonl), then the results files; returns the
    records of `c`'s runs (one per evaluated variant)."""
    workdir = pathlib.Path(workdir)
    log = RunLog(workdir / "runs.jsonl", key_fields=("run", "variant"))
    plan = [(b, n, s, run_name(c, b, n, s)) for s in c.seeds for b in cli.names(c.blocks)
            for n in cli.names(c.norms)]
    todo = [p for p in plan if any(log.get({"run": p[3], "variant": v}) is None
                                   for v, _ in eval_variants(c, p[1]))]
    if todo:
        tok, pool, evals = prepare_data(c)
    for block, norm, seed, name in todo:
        t0 = time.time()
        model, state, summary = train_one(c, block, norm, seed, pool, tok,
                                          workdir / "runs" / name)
        train_s = time.time() - t0
        for label, fixed_n in eval_variants(c, norm):
            m = model if not fixed_n else build_encoder(
                model_config(c, block, norm, tok.vocab_size, fixed_n))
            accs = {str(L): evaluate(m, state, evals[L], c.eval_batch_tokens)
                    for L in c.eval_lengths}
            rec = dict(run=name, block=block, norm=norm, variant=label, seed=seed, steps=c.steps,
                       vocab_size=tok.vocab_size, train_loss=summary["train_loss"],
                       train_accuracy=100 * summary["train_accuracy"], accuracy=accs,
                       train_seconds=round(train_s, 1), seconds=round(time.time() - t0, 1))
            log.append(rec)
            print(json.dumps(rec), flush=True)
    records = [log.get({"run": name, "variant": v}) for b, n, s, name in plan
               for v, _ in eval_variants(c, n)]
    write_report(c, records, cli.results_dir(c, workdir))
    return records


SU_TABLE = {"softmax": (43.27, 36.53, 23.02, 15.12, 11.54),
            "softmax_plus": (43.11, 41.17, 34.04, 20.15, 13.58)}


def summarize(records: list[dict]) -> dict[tuple[str, str], dict[str, tuple[float, float, int]]]:
    """{(block, variant): {L: (mean, sd, seeds)}} over seeds."""
    groups: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in records:
        g = groups.setdefault((r["block"], r["variant"]), {})
        for L, a in r["accuracy"].items():
            g.setdefault(L, []).append(a)
    return {k: {L: (*mean_spread(v), len(v)) for L, v in g.items()} for k, g in groups.items()}


def direction_checks(c, summary) -> list[str]:
    """Plain-language checks of Su's expected directions (means over seeds)."""
    longer = [str(L) for L in c.eval_lengths if L > c.train_length]
    lines = []
    for b in cli.names(c.blocks):
        if (b, "softmax") in summary and (b, "softmax_plus") in summary:
            ok = [summary[b, "softmax_plus"][L][0] >= summary[b, "softmax"][L][0] for L in longer]
            lines.append(f"- {b}: softmax_plus ≥ softmax at {sum(ok)}/{len(ok)} lengths above "
                         f"{c.train_length}.")
        keep = {v: s[longer[-1]][0] / max(s[str(c.train_length)][0], 1e-9)
                for (bb, v), s in summary.items() if bb == b and longer}
        if keep:
            worst = min(keep, key=keep.get)
            lines.append(f"- {b}: accuracy kept at {longer[-1]} relative to {c.train_length}: "
                         + ", ".join(f"{v} {100 * r:.0f}%" for v, r in keep.items())
                         + f"; worst: {worst}.")
    return lines


def write_report(c: ml_collections.ConfigDict, records: list[dict], out: pathlib.Path) -> None:
    """out/length_generalization.md (tables) and .png (accuracy vs test length)."""
    out.mkdir(parents=True, exist_ok=True)
    blocks = cli.names(c.blocks)
    summary = summarize(records)
    lengths = [str(L) for L in c.eval_lengths]
    seeds = sorted({r["seed"] for r in records})
    vocab = max(r.get("vocab_size", 0) for r in records) or c.vocab_size
    parts = results_header("Length generalisation of softmax / softmax_plus / relu2",
                           c.command)
    parts += [f"Model size chosen for this CPU: hidden "
              f"{c.hidden_size}; roformer_v2 {dict(c.roformer_v2)}; gau {dict(c.gau)}; char "
              f"vocabulary {vocab}. Trained by MLM ({c.mask_unit}-level masking) at n = "
              f"{c.train_length} for "
              f"{c.steps} steps × {c.batch_size} rows ({c.optimizer}, lr {c.learning_rate}), "
              f"seeds {seeds}; evaluated on {c.eval_tokens} tokens per length, windows cut from "
              "the concatenated held-out documents. Cells: MLM accuracy %, mean ± sample sd over "
              "seeds.", ""]
    for b in blocks:
        rows = [[v] + [f"{s[L][0]:.2f} ± {s[L][1]:.2f}" for L in lengths]
                for (bb, v), s in summary.items() if bb == b]
        parts += [f"## {b}", "", markdown_table(["variant"] + lengths, rows), ""]
    su_rows = [[k] + [f"{x:.2f}" for x in v] for k, v in SU_TABLE.items()]
    parts += ["## Su's table (RoFormer small trained at 64; kexue.fm/archives/8823, "
              "docs/math.md)", "",
              markdown_table(["variant", "64", "128", "256", "512", "1024"], su_rows), "",
              "## Expected directions, checked on the means", ""] + direction_checks(c, summary)
    run_rows = [[r["block"], r["variant"], r["seed"], f"{r['train_loss']:.3f}",
                 f"{r['train_accuracy']:.1f}"] + [f"{r['accuracy'][L]:.2f}" for L in lengths]
                + [r["train_seconds"]] for r in records]
    parts += ["", "## Every run", "", markdown_table(
        ["block", "variant", "seed", "train loss", "train acc"] + lengths + ["train s"],
        run_rows), ""]
    (out / "length_generalization.md").write_text("\n".join(parts))
    fig, axes = cli.figure(1, len(blocks), figsize=(5 * len(blocks), 4))
    for ax, b in zip(axes[0], blocks, strict=True):
        for (bb, v), s in summary.items():
            if bb == b:
                ax.errorbar([int(L) for L in lengths], [s[L][0] for L in lengths],
                            yerr=[s[L][1] for L in lengths], marker="o", capsize=3, label=v)
        ax.set(xscale="log", xlabel="test length n", ylabel="MLM accuracy %", title=b)
        ax.set_xticks([int(L) for L in lengths], lengths)
        ax.minorticks_off()
        ax.axvline(c.train_length, color="grey", ls=":", lw=1)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "length_generalization.png", dpi=100)


if __name__ == "__main__":
    cli.main(run, "length_generalization")
