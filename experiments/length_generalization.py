"""Length generalisation: MLM accuracy at test lengths above the training length (issue 7).

    python -m experiments.length_generalization \
        --config configs/length_generalization.py:full --workdir runs/length_generalization

For each block type (roformer_v2, gau), normalisation (softmax, softmax_plus, relu2) and seed, a
small encoder is trained by MLM (token-level masking by default) on rows of `train_length`
tokens and evaluated on windows of each of `eval_lengths` tokens cut from the concatenated
held-out documents (the same masked tokens at every length, so lengths differ only in the
context each token sees); relu2 models are evaluated twice: n = the row's visible length (as
trained) and n fixed at train_length.

    accuracy(L) = Σ_masked [argmax_v h_i·E_v = target_i] / #masked     (tied MLM head)

Only the masked positions go through the tied head (the top-k positions by mlm_weight; k is
checked to cover every masked token), which is the same head as Encoder's, run on fewer rows.
Each finished run appends a line to WORKDIR/runs.jsonl (a re-run skips finished runs); the tables
and the plot go to results_dir/length_generalization.{md,png}.
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

from experiments.reporting import machine_line, markdown_table, mean_spread
from gau_jax.data import sources
from gau_jax.data.masking import WholeWordMasker, mask_units
from gau_jax.data.tokenizer import ChineseTokenizer, build_char_vocab
from gau_jax.models import build_encoder, presets
from gau_jax.train import optim
from gau_jax.train import state as train_state
from gau_jax.train import step as train_step

Rows = dict[str, np.ndarray]


def model_config(c: ml_collections.ConfigDict, block: str, norm: str,
                 fixed_n: int = 0) -> ml_collections.ConfigDict:
    """The encoder config of one variant (dropout off: short runs do not overfit)."""
    m = presets.get_model_config("roformer_v2_tiny" if block == "roformer_v2" else
                                 "gau_alpha_tiny")
    m.update(vocab_size=c.vocab_size, hidden_size=c.hidden_size, attention_norm=norm,
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
    """Masked rows padded to `length` (CONTRACT mlm batch layout); 15% of units, 80/10/10.

    unit "word": whole-word masking (jieba words, gau_jax.data.masking); "token": every token is
    its own unit (BERT's original masking), through the same mask_units.
    """
    masker, rng = WholeWordMasker(tok, length, unit=unit), np.random.default_rng(seed)
    out = {k: np.zeros((len(texts), length), np.int32) for k in
           ("input_ids", "segment_ids", "attention_mask", "mlm_targets")}
    out["mlm_weights"] = np.zeros((len(texts), length), np.float32)
    for i, t in enumerate(texts):
        ids, units = masker.encode(t)
        r = dict(zip(("input_ids", "mlm_targets", "mlm_weights"),
                     mask_units(ids, units, rng, mask_id=tok.mask_id,
                                random_ids=masker.random_ids), strict=True))
        n = len(ids)
        out["input_ids"][i, :n], out["attention_mask"][i, :n] = r["input_ids"], 1
        out["mlm_targets"][i, :n], out["mlm_weights"][i, :n] = r["mlm_targets"], r["mlm_weights"]
    out["input_ids"][out["attention_mask"] == 0] = tok.pad_id
    return out


def head_rows(rows: Rows) -> int:
    """Rows of the tied head per sequence: enough for the most-masked row, a multiple of 8."""
    return int(8 * math.ceil(max(1.0, rows["mlm_weights"].sum(1).max()) / 8))


def eval_rows(tok: ChineseTokenizer, text: str, lengths: Sequence[int], n_tokens: int,
              seed: int, unit: str = "token") -> dict[int, Rows]:
    """{L: rows}: the SAME masked tokens at every length, cut into [CLS] w [SEP] windows.

    The held-out text is masked once (whole words, in chunks of the longest length), [CLS]/[SEP]
    dropped to give one token stream; each length cuts it into windows of L-2 tokens. Only the
    first T stream tokens are scored (T = the fewest any length covers), so every length predicts
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


def evaluate(model, params, rows: Rows, batch_tokens: int) -> float:
    """MLM accuracy (%) over all masked tokens of `rows`."""
    n = rows["input_ids"].shape[1]
    bs = max(1, batch_tokens // n)
    sums = train_step.mlm_sums_fn(model, head_rows(rows))
    fn = jax.jit(lambda p, b: sums(p, b, None, None, False))
    correct = weight = 0.0
    for i in range(0, len(rows["input_ids"]), bs):
        s = fn(params, {k: v[i: i + bs] for k, v in rows.items()})
        correct, weight = correct + float(s["correct"]), weight + float(s["weight"])
    return 100.0 * correct / max(weight, 1.0)


def train_one(c: ml_collections.ConfigDict, block: str, norm: str, seed: int, pool: Rows):
    """Train one variant; returns (model, params, last-50-step mean loss, accuracy %)."""
    model = build_encoder(model_config(c, block, norm))
    params = model.init(jax.random.PRNGKey(seed), pool["input_ids"][:1])["params"]
    schedule = optim.piecewise_linear_schedule(c.learning_rate, c.steps, c.warmup_steps, 0.0)
    tx = optim.make_optimizer(c.optimizer, schedule, weight_decay=c.weight_decay,
                              grad_clip_norm=c.grad_clip_norm)
    ramp = int(c.steps * c.residual_ramp_fraction) if block == "roformer_v2" else 0
    step = jax.jit(train_step.make_train_step(train_step.mlm_sums_fn(model, head_rows(pool)), tx,
                                              residual_ramp_steps=ramp), donate_argnums=0)
    st = train_state.create_state(params, tx, seed)
    rng, order, hist = np.random.default_rng(seed), np.zeros(0, np.int64), []
    for _ in range(c.steps):
        if len(order) < c.batch_size:
            order = np.concatenate([order, rng.permutation(len(pool["input_ids"]))])
        idx, order = order[: c.batch_size], order[c.batch_size:]
        st, m = step(st, {k: v[idx] for k, v in pool.items()})
        hist.append(m)
    tail = jax.device_get(hist[-50:])
    return (model, st.params, float(np.mean([m["loss"] for m in tail])),
            float(100 * np.mean([m["accuracy"] for m in tail])))


def eval_variants(c: ml_collections.ConfigDict, norm: str) -> list[tuple[str, int]]:
    """(label, attention_fixed_n) pairs a model trained with `norm` is evaluated with."""
    if norm == "relu2":
        return [("relu2 (n = row length)", 0), (f"relu2 (fixed n = {c.train_length})",
                                                c.train_length)]
    return [(norm, 0)]


def run(c: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> list[dict]:
    """All runs (resuming from WORKDIR/runs.jsonl), then the results files. Returns records."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "runs.jsonl"
    records = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    done = {(r["block"], r["norm"], r["seed"]) for r in records}
    todo = [(b, n, s) for s in c.seeds for b in c.blocks for n in c.norms if (b, n, s) not in done]
    if todo:
        tok, pool, evals = prepare_data(c)
        c.vocab_size = tok.vocab_size
    for block, norm, seed in todo:
        t0 = time.time()
        model, params, loss, acc = train_one(c, block, norm, seed, pool)
        train_s = time.time() - t0
        for label, fixed_n in eval_variants(c, norm):
            m = model if not fixed_n else build_encoder(model_config(c, block, norm, fixed_n))
            accs = {str(L): evaluate(m, params, evals[L], c.eval_batch_tokens)
                    for L in c.eval_lengths}
            rec = dict(block=block, norm=norm, variant=label, seed=seed, steps=c.steps,
                       train_loss=loss, train_accuracy=acc, accuracy=accs,
                       train_seconds=round(train_s, 1), seconds=round(time.time() - t0, 1))
            records.append(rec)
            with log.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(json.dumps(rec), flush=True)
    write_report(c, records, pathlib.Path(c.results_dir))
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
    for b in c.blocks:
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
    """results_dir/length_generalization.md (tables) and .png (accuracy vs test length)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(records)
    lengths = [str(L) for L in c.eval_lengths]
    seeds = sorted({r["seed"] for r in records})
    parts = ["# Length generalisation of softmax / softmax_plus / relu2 (issue 7)", "",
             f"Command: `{c.command}`", "",
             f"Machine: {machine_line()}. Model size chosen for this CPU: hidden "
             f"{c.hidden_size}; roformer_v2 {dict(c.roformer_v2)}; gau {dict(c.gau)}; char "
             f"vocabulary {c.vocab_size}. Trained by MLM ({c.mask_unit}-level masking) at n = "
             f"{c.train_length} for "
             f"{c.steps} steps × {c.batch_size} rows ({c.optimizer}, lr {c.learning_rate}), "
             f"seeds {seeds}; evaluated on {c.eval_tokens} tokens per length, windows cut from "
             "the concatenated held-out documents. Cells: MLM accuracy %, mean ± sample sd over "
             "seeds.", ""]
    for b in c.blocks:
        rows = [[v] + [f"{s[L][0]:.2f} ± {s[L][1]:.2f}" for L in lengths]
                for (bb, v), s in summary.items() if bb == b]
        parts += [f"## {b}", "", markdown_table(["variant"] + lengths, rows), ""]
    su_rows = [[k] + [f"{x:.2f}" for x in v] for k, v in SU_TABLE.items()]
    parts += ["## Su's table (RoFormer small, trained at 64; DESIGN §4)", "",
              markdown_table(["variant", "64", "128", "256", "512", "1024"], su_rows), "",
              "## Expected directions, checked on the means", ""] + direction_checks(c, summary)
    run_rows = [[r["block"], r["variant"], r["seed"], f"{r['train_loss']:.3f}",
                 f"{r['train_accuracy']:.1f}"] + [f"{r['accuracy'][L]:.2f}" for L in lengths]
                + [r["train_seconds"]] for r in records]
    parts += ["", "## Every run", "", markdown_table(
        ["block", "variant", "seed", "train loss", "train acc"] + lengths + ["train s"],
        run_rows), ""]
    (out / "length_generalization.md").write_text("\n".join(parts))
    fig, axes = plt.subplots(1, len(c.blocks), figsize=(5 * len(c.blocks), 4), squeeze=False)
    for ax, b in zip(axes[0], c.blocks, strict=True):
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
    plt.close(fig)


def main(argv: Sequence[str]) -> None:
    del argv
    run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags

    _CONFIG = config_flags.DEFINE_config_file("config", None, "configs/length_generalization.py")
    _WORKDIR = flags.DEFINE_string("workdir", "runs/length_generalization", "runs.jsonl folder")
    flags.mark_flags_as_required(["config"])
    app.run(main)
