"""Mutation testing by hand: plant one-line bugs in a scratch copy, see which tests catch them.

    .venv/bin/python tests/mutation.py                     # each on its module's tests (GROUPS)
    .venv/bin/python tests/mutation.py --target            # each on the test meant to catch it
    .venv/bin/python tests/mutation.py --kinds             # one per KINDS entry, on its target
    .venv/bin/python tests/mutation.py --suite             # each on all of SUITE
    .venv/bin/python tests/mutation.py --only lora_scale,hf_swap_query_key --list

A mutation is (name, file, original text, mutated text[, target tests]); the original must occur
exactly once (else the mutation is reported "stale"). The repository is copied (without venvs,
.git and caches) to --copy; for each mutation the copy's file gets the mutated text,
`python -m pytest -x` runs the selection there with cwd and PYTHONPATH = the copy (so the
editable install of the working tree is shadowed; the script checks gau_jax.__file__ and that
the unmutated selection passes first), and the original file is written back and compared byte
for byte. The working tree is never edited. Exit 1 of pytest = killed, 0 = survived, anything
else = error. Results: a markdown row per mutation on stdout and --out (JSON). A habit, not a
CI step: run it after changing tests and write the score and survivors into tests/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ["tests/test_wiring.py", "tests/test_dropout_streams.py", "tests/test_hf_mapping.py",
         "tests/test_pretrain_defaults.py", "tests/test_layers.py", "tests/test_encoder.py",
         "tests/test_peft.py", "tests/test_lst.py", "tests/test_optim.py",
         "tests/test_train_step.py", "tests/test_masking.py", "tests/test_lst_cache.py",
         "tests/test_lst_init.py", "tests/test_convert.py"]
W, D, H = "tests/test_wiring.py", "tests/test_dropout_streams.py", "tests/test_hf_mapping.py"
PD = "tests/test_pretrain_defaults.py"
# The tests that exercise each module (the default selection; --suite runs SUITE instead).
T = {k: f"tests/test_{k}.py" for k in ("layers", "encoder", "peft", "lst", "optim", "train_step",
                                         "masking", "lst_cache", "lst_init", "convert",
                                         "pipeline")}
# The module's own unit tests come first: pytest -x stops at the first failure.
GROUPS = {
    "gau_jax/layers/": [T["layers"], T["encoder"], W, D, T["peft"]],
    "gau_jax/models/encoder.py": [T["encoder"], W, D, H, T["peft"], T["lst"]],
    "gau_jax/models/heads.py": [W, D, T["encoder"], T["peft"]],
    "gau_jax/models/peft.py": [T["peft"], W],
    "gau_jax/models/lst.py": [T["lst"], W, T["lst_cache"], T["lst_init"]],
    "gau_jax/train/step.py": [T["train_step"], W, D, T["optim"], T["lst"]],
    "gau_jax/tasks/losses.py": [T["train_step"], W, D, T["optim"], T["lst"]],
    "gau_jax/train/state.py": [T["train_step"], W, D],
    "gau_jax/train/optim.py": [T["optim"], W, T["train_step"], T["lst"]],
    "gau_jax/train/feature_cache.py": [W, T["lst_cache"]],
    "gau_jax/data/masking.py": [T["masking"], PD, T["pipeline"]],
    "configs/pretrain.py": [PD, T["masking"], T["pipeline"]],
    "gau_jax/convert/": [H, T["convert"]],
}


def tests_for(rel: str) -> list[str]:
    return next(v for k, v in GROUPS.items() if rel.startswith(k))

# The kinds of wiring bug a hand audit found no test for, each planted once by the mutation of
# that name (`--kinds` runs exactly these, each on its target tests).
KINDS = {
    "head_pools_last_token": "classifier pools a token other than [CLS]",
    "residual_dropout_off": "residual (hidden) dropout never applied",
    "dropout_key_fixed": "dropout key does not change from step to step",
    "lora_scale_alpha": "LoRA scale alpha/r replaced by alpha",
    "lst_temperature_default": "LST gate temperature changed (the default)",
    "lst_temperature_ignored": "LST gate temperature changed (config value not used)",
    "lst_gated_head_state": "LST gated head reads the wrong trunk state",
    "pretrain_mask_rate": "pretraining default changed: masking rate",
    "pretrain_token_masking": "pretraining default changed: whole-word -> token masking",
    "mlm_random_specials": "special tokens among MLM random replacements",
    "lr_one_step_late": "learning-rate schedule evaluated one step late",
    "hf_swap_query_key": "HF name mapping of two tensors swapped",
    "cache_rows_repeat": "cached LST batches repeat rows within an epoch",
}
# The five kinds of bug a planted-bug audit found the suite letting through, each planted by the
# mutations of that kind (`--only` with these names and `--target` runs each on the test added for
# it).
ISSUE32 = {
    "decode_threshold_inclusive": "1 threshold: a span at score == 0 decoded (> became >=)",
    "gp_exact_threshold_inclusive": "1 threshold: the step's exact match counts score == 0",
    "keep_best_on_ties": "1 threshold: an equal dev score replaces the best checkpoint",
    "entity_set_ignores_type": "2 metric: CLUENER entities keyed without their type",
    "entity_set_first_mention": "2 metric: only the first mention of an entity text kept",
    "corrupt_step_not_moved": "3 recovery: a damaged step is copied aside, not moved",
    "accum_mean_of_means": "4 scale: accumulated gradient divided by grad_accum_steps",
    "mlm_one_random_id_per_unit": "5 granularity: one random id per unit, not per token",
    "mlm_one_action_per_row": "5 granularity: one 80/10/10 draw per row, not per unit",
}
DM, CC = "tests/test_decode_metrics.py", "tests/test_checkpoint_corruption.py"
ISSUE32_MUTATIONS = [
    ("decode_threshold_inclusive", "gau_jax/models/global_pointer.py",
     "np.argwhere(s > threshold)", "np.argwhere(s >= threshold)",
     [DM + "::test_decode_spans_just_above_on_and_below_the_threshold",
      DM + "::test_ner_predictions_from_logits_scored_by_the_public_metric"]),
    ("gp_exact_threshold_inclusive", "gau_jax/tasks/losses.py", "jnp.all((logits > 0) == gold",
     "jnp.all((logits >= 0) == gold",
     [DM + "::test_global_pointer_exact_match_counts_scores_just_above_zero"]),
    ("keep_best_on_ties", "gau_jax/train/loop.py", "dev[name] > self.best.get(name, -math.inf)",
     "dev[name] >= self.best.get(name, -math.inf)",
     [DM + "::test_keep_best_replaces_only_on_a_strictly_higher_task_metric"]),
    ("entity_set_ignores_type", "gau_jax/data/clue_metrics.py",
     "return {(etype, int(s), int(e)) for etype", "return {(int(s), int(e)) for etype",
     [DM + "::test_entity_score_keys_on_type_and_offsets_by_example_id"]),
    ("entity_set_first_mention", "gau_jax/data/clue_metrics.py",
     "for spans in mentions.values() for s, e in spans}",
     "for spans in mentions.values() for s, e in spans[:1]}",
     [DM + "::test_entity_score_keys_on_type_and_offsets_by_example_id"]),
    ("corrupt_step_not_moved", "gau_jax/train/checkpoint.py",
     "shutil.move(str(self.dir / str(step)), dest)",
     "shutil.copytree(str(self.dir / str(step)), dest)",
     [CC + "::test_damaged_newest_checkpoint_is_skipped"]),
    ("accum_mean_of_means", "gau_jax/train/step.py", 'return sums["loss"] / denom, sums',
     'return sums["loss"] / denom / grad_accum_steps, sums', ["tests/test_grad_accum_sgd.py"]),
    ("mlm_one_random_id_per_unit", "gau_jax/data/masking.py",
     "rng.choice(random_ids, size=len(pos))", "rng.choice(random_ids)",
     [T["masking"] + "::test_random_replacement_draws_one_id_per_token_and_one_action_per_unit"]),
    ("mlm_one_action_per_row", "gau_jax/data/masking.py", "action = rng.random(n_pick)",
     "action = np.full(n_pick, rng.random())",
     [T["masking"] + "::test_random_replacement_draws_one_id_per_token_and_one_action_per_unit"]),
]
# (name, file, original, mutated, target tests); the first block are the KINDS.
MUTATIONS = [
    ("head_pools_last_token", "gau_jax/models/heads.py", "(h[:, 0], deterministic",
     "(h[:, -1], deterministic", [W + "::test_classifier_logits_are_cls_state_times_dense"]),
    ("residual_dropout_off", "gau_jax/models/encoder.py",
     "(branch, deterministic=self.deterministic)", "(branch, deterministic=True)",
     [D + "::test_every_dropout_site_at_its_rate"]),
    ("dropout_key_fixed", "gau_jax/train/state.py", "fold_in(state.rng, state.step)",
     "fold_in(state.rng, 0)",
     [D + "::test_consecutive_steps_draw_different_masks_and_a_replay_the_same"]),
    ("lora_scale_alpha", "gau_jax/models/peft.py", "(alpha / ab[0].shape[-1])", "alpha",
     [W + "::test_lora_output_equals_hand_merged_kernels"]),
    ("lst_temperature_default", "gau_jax/models/lst.py", "gate_temperature: float = 0.1",
     "gate_temperature: float = 1.0", [W + "::test_lst_gate_temperature_default_is_the_papers"]),
    ("lst_temperature_ignored", "gau_jax/models/lst.py", "alpha / self.lst.gate_temperature)",
     "alpha / 0.1)", [W + "::test_lst_gates_and_heads_by_hand"]),
    ("lst_gated_head_state", "gau_jax/models/lst.py", "feature(source, K - 1)[:, :t.shape[1]]",
     "feature(source, K - 2)[:, :t.shape[1]]", [W + "::test_lst_gates_and_heads_by_hand"]),
    ("pretrain_mask_rate", "configs/pretrain.py", "c.mlm_probability = 0.15",
     "c.mlm_probability = 0.2", [PD + "::test_default_batches_mask_whole_words_at_15_percent"]),
    ("pretrain_token_masking", "configs/pretrain.py", 'c.mask_unit = "word"',
     'c.mask_unit = "token"', [PD + "::test_default_batches_mask_whole_words_at_15_percent"]),
    ("mlm_random_specials", "gau_jax/data/masking.py",
     "self.random_ids = tokenizer.normal_token_ids()",
     "self.random_ids = np.arange(tokenizer.vocab_size, dtype=np.int32)",
     [PD + "::test_default_replacements_are_80_10_10_with_ordinary_tokens"]),
    ("lr_one_step_late", "gau_jax/train/optim.py", "config.optimizer,\n        schedule,",
     "config.optimizer,\n        lambda t: schedule(t - 1),",
     [W + "::test_sgd_updates_under_warmup_follow_lr_of_each_step"]),
    ("hf_swap_query_key", "gau_jax/convert/hf.py",
     '("attention", "query"): "attention.self.query", ("attention", "key"): "attention.self.key"',
     '("attention", "query"): "attention.self.key", ("attention", "key"): "attention.self.query"',
     [H]),
    ("cache_rows_repeat", "gau_jax/train/feature_cache.py",
     "default_rng((self.seed, self.epoch))", "default_rng((self.seed, self.epoch, self.index))",
     [W + "::test_cached_epochs_cover_each_row_once_with_its_features",
      "tests/test_lst_cache.py::test_cached_split_epochs_and_state"]),
    # layers
    ("mha_scale_k", "gau_jax/layers/attention.py", "normalize_attention(scores / math.sqrt(k),",
     "normalize_attention(scores / k,"),
    ("softmax_plus_base", "gau_jax/layers/attention.py", "math.log(512.0)", "math.log(256.0)"),
    ("relu2_not_squared", "gau_jax/layers/attention.py", "jnp.square(jax.nn.relu(scores)) / n",
     "jax.nn.relu(scores) / n"),
    ("min_visible_2", "gau_jax/layers/attention.py", "jnp.maximum(n_visible, 1.0)",
     "jnp.maximum(n_visible, 2.0)"),
    ("rope_sign", "gau_jax/layers/rope.py", "x1 * cos + x0 * sin", "x1 * cos - x0 * sin"),
    ("rope_freq", "gau_jax/layers/rope.py", "* 2.0 / dim", "* 1.0 / dim"),
    ("rms_sum", "gau_jax/layers/norms.py", "jnp.mean(jnp.square(x32)", "jnp.sum(jnp.square(x32)"),
    ("offset_init_one", "gau_jax/layers/norms.py", '"bias", nn.initializers.zeros',
     '"bias", nn.initializers.ones'),
    ("gau_uv_swap", "gau_jax/layers/gau.py", "u, v, z = jnp.split(", "v, u, z = jnp.split("),
    ("gau_gelu", "gau_jax/layers/gau.py", "uvz = nn.swish(", "uvz = nn.gelu("),
    ("gau_lin_unscaled", "gau_jax/layers/gau.py", "(kv / n_real)", "(kv)"),
    ("gau_lin_unmasked", "gau_jax/layers/gau.py", "lin_k * maskf[..., None]", "lin_k"),
    ("adapter_no_residual", "gau_jax/layers/adapter.py", "return x + nn.Dense(",
     "return nn.Dense("),
    ("init_order", "gau_jax/layers/initializers.py", "** (-2.0 / order)", "** (-1.0 / order)"),
    # models
    ("no_segment_embedding", "gau_jax/models/encoder.py",
     "self.token_embedding(input_ids) + self.segment_embedding(segment_ids)",
     "self.token_embedding(input_ids)"),
    ("residual_scale_ignored", "gau_jax/models/encoder.py",
     "x + residual_scale.astype(y.dtype) * y", "x + y"),
    ("ffn_gelu", "gau_jax/models/encoder.py", "(nn.relu(dense(", "(nn.gelu(dense("),
    ("mlm_head_dropout_off", "gau_jax/models/encoder.py",
     "h = nn.Dropout(c.hidden_dropout)(h, deterministic=deterministic)",
     "h = nn.Dropout(c.hidden_dropout)(h, deterministic=True)"),
    ("scan_same_dropout", "gau_jax/models/encoder.py", '"dropout": True}', '"dropout": False}'),
    ("classifier_dropout_fixed", "gau_jax/models/heads.py", "nn.Dropout(spec.dropout_rate)",
     "nn.Dropout(0.1)"),
    ("lora_trains_trunk", "gau_jax/models/peft.py", 'n[0] != "base" or is_head(n[1:])',
     'n[0] != "base" or n[1] == "encoder"'),
    ("bitfit_kernels", "gau_jax/models/peft.py", 'n[-1] == "bias")', 'n[-1] == "kernel")'),
    ("lst_additive_inside", "gau_jax/models/lst.py", "return run(s) + ladder",
     "return run(s + ladder)"),
    ("lst_gate_swapped", "gau_jax/models/lst.py", "mu * s + (1 - mu) * ladder",
     "(1 - mu) * s + mu * ladder"),
    ("lst_ladder_default", "gau_jax/models/lst.py", "(i + 1) * L // ls - 1", "i * L // ls"),
    ("lst_trunk_dropout", "gau_jax/models/lst.py", "hidden_dropout=0.0, attention_dropout=0.0,",
     "hidden_dropout=trunk.hidden_dropout, attention_dropout=0.0,"),
    ("lst_up_head_token", "gau_jax/models/lst.py", "t = s[:, :1] if reads_cls_only(",
     "t = s[:, -1:] if reads_cls_only("),
    # step / optimizer / state / masking / cache
    ("sums_unweighted", "gau_jax/tasks/losses.py", '"loss": jnp.sum(weights * xent)',
     '"loss": jnp.sum(xent)'),
    ("loss_not_normalised", "gau_jax/train/step.py", 'return sums["loss"] / denom, sums',
     'return sums["loss"], sums'),
    ("microbatch_contiguous", "gau_jax/train/step.py",
     "jnp.moveaxis(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 1, 0)",
     "x.reshape(k, x.shape[0] // k, *x.shape[1:])"),
    ("ramp_one_ahead", "gau_jax/train/step.py", "step.astype(jnp.float32) / ramp_steps",
     "(step.astype(jnp.float32) + 1) / ramp_steps"),
    ("train_deterministic", "gau_jax/tasks/losses.py",
     "deterministic=not train, **model_kwargs(residual_scale, None))\n        return "
     "weighted_sums(logits, batch[\"labels\"]",
     "deterministic=train, **model_kwargs(residual_scale, None))\n        return "
     "weighted_sums(logits, batch[\"labels\"]"),
    ("eval_with_dropout", "gau_jax/train/step.py",
     "sums_fn(state.params, batch, None, alpha, False)",
     "sums_fn(state.params, batch, step_key(state), alpha, True)"),
    ("example_keys_shared", "gau_jax/train/step.py", "offset + jnp.arange(rows, dtype=jnp.int32)",
     "offset + jnp.zeros(rows, dtype=jnp.int32)"),
    ("keys_by_microbatch_row", "gau_jax/train/step.py", "split_microbatches((batch, index),",
     "split_microbatches((batch, index % (rows // grad_accum_steps)),"),
    ("seed_ignored", "gau_jax/train/state.py", "PRNGKey(seed + 1)", "PRNGKey(1)"),
    ("decay_everything", "gau_jax/train/optim.py", 'path_names(p)[-1] == "kernel"',
     'path_names(p)[-1] != "kernel"'),
    ("clip_10x", "gau_jax/train/optim.py", "clip_by_global_norm(grad_clip_norm)",
     "clip_by_global_norm(10 * grad_clip_norm)"),
    ("warmup_start_nonzero", "gau_jax/train/optim.py",
     "knots_v = ([0.0] if warmup_steps", "knots_v = ([0.1] if warmup_steps"),
    ("frozen_trains", "gau_jax/train/optim.py", '"train" if t else "frozen"', '"train"'),
    ("adam_betas_swapped", "gau_jax/train/optim.py",
     "optax.adamw(schedule, b1=b1, b2=b2", "optax.adamw(schedule, b1=b2, b2=b1"),
    ("mask_70", "gau_jax/data/masking.py", "if a < 0.8:", "if a < 0.7:"),
    ("random_5", "gau_jax/data/masking.py", "elif a < 0.9:", "elif a < 0.85:"),
    ("pick_round", "gau_jax/data/masking.py", "np.floor(mask_rate * n_units + rng.random())",
     "np.round(mask_rate * n_units)"),
    ("no_glue", "gau_jax/data/masking.py", "glued = continuation is not None and",
     "glued = False and"),
    ("token_unit_specials", "gau_jax/data/masking.py",
     "np.where(special, -1, np.cumsum(~special) - 1)", "np.cumsum(~special) - 1"),
    ("cache_filler_weighted", "gau_jax/train/feature_cache.py",
     "weights = (np.arange(size) < len(rows)).astype(np.float32)",
     "weights = np.ones(size, np.float32)"),
]
MUTATIONS += ISSUE32_MUTATIONS


def copy_tree(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    skip = shutil.ignore_patterns(".venv*", ".git", "runs", "__pycache__", ".pytest_cache",
                                  "*.egg-info")
    shutil.copytree(ROOT, dest, ignore=skip)


def env_for(dest: Path) -> dict:
    return dict(os.environ, PYTHONPATH=str(dest), JAX_COMPILATION_CACHE_DIR=str(
        dest / ".cache" / "jax"), XLA_FLAGS="--xla_force_host_platform_device_count=8")


def check_shadowing(dest: Path) -> None:
    out = subprocess.run([sys.executable, "-c", "import gau_jax; print(gau_jax.__file__)"],
                         cwd=dest, env=env_for(dest), capture_output=True, text=True, check=True)
    if not out.stdout.strip().startswith(str(dest)):
        raise SystemExit(f"gau_jax imports from {out.stdout.strip()}, not the copy {dest}")


SLOW = False  # --slow: tests marked slow run too


def run_tests(dest: Path, tests: list[str], timeout: int) -> tuple[int, list[str]]:
    """(pytest exit code, stdout lines) of `tests` in the copy; -1 on timeout."""
    marks = [] if SLOW else ["-m", "not slow"]
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                              *marks, *tests], cwd=dest, env=env_for(dest),
                             capture_output=True, text=True, timeout=timeout)
        return out.returncode, out.stdout.strip().splitlines()
    except subprocess.TimeoutExpired:
        return -1, ["timeout"]


def run_one(dest: Path, m: tuple, tests: list[str], timeout: int) -> dict:
    name, rel, old, new = m[:4]
    path = dest / rel
    original = path.read_bytes()
    text = original.decode()
    if text.count(old) != 1:  # the code moved on: fix the mutation's text
        return {"name": name, "file": rel, "status": "stale", "rc": None, "seconds": 0.0,
                "failed": [], "summary": f"original text found {text.count(old)} times"}
    path.write_text(text.replace(old, new))
    t0 = time.time()
    try:
        rc, lines = run_tests(dest, tests, timeout)
    finally:
        path.write_bytes(original)
        assert path.read_bytes() == original, f"{rel} not restored"
    failed = [ln.split(" ")[1] for ln in lines if rc == 1 and ln.startswith("FAILED ")]
    status = {0: "survived", 1: "killed"}.get(rc, "error")
    return {"name": name, "file": rel, "status": status, "rc": rc, "seconds": time.time() - t0,
            "failed": failed[:1], "summary": lines[-1] if lines else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copy", default="/tmp/gau_jax_mutation", help="scratch copy of the repo")
    ap.add_argument("--only", default="", help="comma-separated mutation names")
    ap.add_argument("--target", action="store_true",
                    help="run each mutation's own target tests (its module's when it has none)")
    ap.add_argument("--suite", action="store_true", help="run SUITE for every mutation")
    ap.add_argument("--kinds", action="store_true",
                    help="only the KINDS mutations, each on its target tests (implies --target)")
    ap.add_argument("--slow", action="store_true", help="include the tests marked slow")
    ap.add_argument("--tests", default="", help="comma-separated test selection (default SUITE)")
    ap.add_argument("--out", default="", help="write the results as JSON here")
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--baseline", choices=("full", "kills"), default="full",
                    help="full: the unmutated selection must pass first; kills (cheaper): "
                         "afterwards, each killing test must pass unmutated")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    global SLOW
    SLOW = a.slow
    by_name = {m[0]: m for m in MUTATIONS}
    chosen = [by_name[n] for n in a.only.split(",")] if a.only else MUTATIONS  # --only's order
    chosen = [m for m in chosen if not a.kinds or m[0] in KINDS]
    a.target = a.target or a.kinds
    if a.list:
        for m in chosen:
            found = (ROOT / m[1]).read_text().count(m[2])
            print(f"{m[0]:28} {m[1]:32} {'ok' if found == 1 else f'STALE ({found} found)':16}"
                  f" {KINDS.get(m[0], '')}")
        return
    dest = Path(a.copy)
    copy_tree(dest)
    check_shadowing(dest)
    selections = {}
    for m in chosen:
        selections[m[0]] = (a.tests.split(",") if a.tests else SUITE if a.suite else
                            m[4] if a.target and len(m) > 4 else tests_for(m[1]))
    needed = list(dict.fromkeys(t.split("::")[0] for ts in selections.values() for t in ts))
    if a.baseline == "full":
        rc, lines = run_tests(dest, needed, a.timeout)
        if rc != 0:  # the unmutated suite must pass, or nothing is measured
            raise SystemExit(f"the unmutated tests fail in {dest} (exit {rc}): {lines[-3:]}")
        print(f"baseline: {lines[-1]}", flush=True)
    results = []
    for m in chosen:
        r = run_one(dest, m, selections[m[0]], a.timeout)
        results.append(r)
        print(f"| {r['name']} | {r['file']} | {r['status']} | {' '.join(r['failed'])} | "
              f"{r['seconds']:.0f}s |", flush=True)
        if a.out:
            Path(a.out).write_text(json.dumps(results, indent=1) + "\n")
    kills = sorted({t for r in results if r["status"] == "killed" for t in r["failed"]})
    if a.baseline == "kills" and kills:  # a test failing unmutated kills nothing
        rc, lines = run_tests(dest, kills, a.timeout)
        bad = {ln.split(" ")[1] for ln in lines if ln.startswith("FAILED ")} if rc else set()
        for r in results:
            if set(r["failed"]) & bad:
                r["status"] = "error"
        print(f"baseline (killing tests, unmutated): {lines[-1] if lines else rc}", flush=True)
        if a.out:
            Path(a.out).write_text(json.dumps(results, indent=1) + "\n")
    killed = sum(r["status"] == "killed" for r in results)
    scored = [r for r in results if r["status"] != "stale"]
    print(f"\nscore: {killed}/{len(scored)} killed; stale: "
          f"{[r['name'] for r in results if r['status'] == 'stale']}; survivors: "
          f"{[r['name'] for r in results if r['status'] == 'survived']}; errors: "
          f"{[r['name'] for r in results if r['status'] == 'error']}")


if __name__ == "__main__":
    main()
