"""GAU-α vs RoFormerV2 at equal parameters and equal train FLOPs per token, pretrained alike and
fine-tuned on every local CLUE task.

    python -m experiments.arch_clue --config configs/arch_clue.py:full \
        --workdir runs/arch_clue --config.data_dir=../shared/data/clue
    # the committed file: add --config.results_dir=experiments/results
    # in pieces: both trunks to step 4000, stop; the same command without the flag (or with
    # a later step) resumes them from their checkpoints
    python -m experiments.arch_clue --config configs/arch_clue.py:full --workdir runs/arch_clue \
        --config.data_dir=../shared/data/clue --config.pretrain_stop_at=4000
    python -m experiments.arch_clue --config configs/arch_clue.py:smoke \
        --workdir /tmp/arch_clue --config.data_dir=../shared/data/clue   # tests: tiny, csl

`arg` is "full" (experiments/results/arch_clue.md) or "smoke" (tests: tiny trunks, 2 MLM steps
each, csl, 1 seed, 2 fine-tuning steps). data_dir is the CLUE folder and must be set.

The pair (`models`): GAU-α has two GAU layers per RoFormerV2 block (Su's GAU-α: 24 GAU layers
for RoFormerV2-base's 12 blocks), both d = 256 with the same 6000-character vocabulary; GAU-α
keeps its shape (e = 2d, s = 64) and RoFormerV2's FFN width f is the one free knob. Equal
parameters and equal FLOPs exactly would need e + s = d (per GAU pair 4n(s + e) attention
FLOPs a token against RoFormerV2's 4nd at the same parameters), so at n = 64 f = 1136 splits the
difference: GAU-α has 1.5 % fewer parameters and 1.6 % more train FLOPs a token
(gau_jax/models/costs.py; the experiment refuses a pair off by more than pair_tolerance).

Fine-tuning recipes (`recipes`): Su's CLUE recipes (gau_jax/data/tasks.py `Recipe`:
bojone/CLUE-bert4keras) scaled to a 3M-parameter trunk pretrained at 64 tokens on a 2-core CPU:
his update batch (accumulation folded in: grad_accum_steps = 1), his max_length capped (64 for
short texts, 128 for long ones, 256 for CMRC2018's contexts), his epochs on cluewsc2020, more
on the few-shot csl / chid_fewclue (a small trunk needs more updates), and 300-600 updates on
the large tasks; AdaFactor at 1e-2 (the full fine-tuning rate chosen on tnews for a trunk of
this size: experiments/results/lst_clue.md). Both trunks run every recipe, same steps and seeds.

Cost, from short runs on this 2-core machine while another job ran (idle: up to 2x faster):
MLM steps/s GAU-α 0.7, RoFormerV2 1.3 (GAU-α runs slower here at the same FLOPs), so about
4 h + 2 h of pretraining. The recipes add up to about 7,200 fine-tuning steps of 32 x 64 tokens
per trunk and seed; GAU-α ran 0.9 of those a second (0.45 steps/s at 32 x 128): about 7 h for
its 3 seeds, RoFormerV2 about 4 h (estimated from its MLM rate). Every stage resumes where it
stopped (trunks from their checkpoints, finished runs from runs.jsonl): run it in pieces.
"""

from __future__ import annotations

import ml_collections

from gau_jax.models.presets import get_model_config

# The local CLUE tasks: the snapshot has no CMNLI, and its chid folder is FewCLUE's ChID.
TASKS = ("afqmc", "tnews", "iflytek", "ocnli", "cluewsc2020", "csl", "cmrc2018", "c3",
         "chid_fewclue", "cluener")
ARCHS = ("gau_alpha", "roformer_v2")  # keys of config.models, in table order
LABELS = {"gau_alpha": "GAU-α", "roformer_v2": "RoFormerV2"}


def trunk_pair(c: ml_collections.ConfigDict,
               vocab_size: int | None = None) -> dict[str, ml_collections.ConfigDict]:
    """config.models as model configs: preset + overrides, vocab_size (default c.vocab_size;
    the experiment passes its corpus's); ValueError names a missing entry."""
    pair = {}
    for arch in ARCHS:
        if arch not in c.models:
            raise ValueError(f"config.models has no entry {arch!r} (have {sorted(c.models)})")
        pair[arch] = get_model_config(c.models[arch].preset)
        pair[arch].update(dict(c.models[arch].overrides), vocab_size=vocab_size or c.vocab_size)
    return pair


def _recipe(steps: int, batch_size: int, max_length: int, learning_rate: float = 1e-2,
            **task_options) -> ml_collections.ConfigDict:
    """One task's fine-tuning: steps and rate, then configs/finetune.py fields."""
    return ml_collections.ConfigDict(dict(steps=steps, learning_rate=learning_rate,
                                          batch_size=batch_size, max_length=max_length,
                                          **task_options))


def get_config(arg: str = "full") -> ml_collections.ConfigDict:
    """Experiment config; arg is "full" or "smoke"."""
    if arg not in ("full", "smoke"):
        raise ValueError(f"configs/arch_clue.py: arg {arg!r} is not 'full' or 'smoke'")
    c = ml_collections.ConfigDict()
    c.data_dir = ""                  # the CLUE folder (required)
    # The corpus, prepared once into WORKDIR (gau_jax/data/prepare_corpus.py): People's Daily
    # 1998 + the train texts of corpus_tasks, de-duplicated, dev_fraction of it held out.
    c.corpus_tasks = TASKS
    c.corpus_max_lines = 0           # > 0: keep the first lines only (smoke); 0 = all
    c.vocab_size = 6000              # character vocabulary built from that corpus
    c.dev_fraction = 0.01            # documents (by hash) held out as the MLM dev split
    # The trunks: a preset (configs/models.py) + field overrides; vocab_size is the corpus's.
    c.models = ml_collections.ConfigDict({
        "gau_alpha": {"preset": "gau_alpha_tiny", "overrides": {
            "hidden_size": 256, "num_layers": 4, "intermediate_size": 512, "key_size": 64,
            "num_heads": 1, "scan_layers": False}},
        "roformer_v2": {"preset": "roformer_v2_tiny", "overrides": {
            "hidden_size": 256, "num_layers": 2, "intermediate_size": 1136, "key_size": 64,
            "num_heads": 4, "scan_layers": False}},
    })
    c.pair_tolerance = 0.02          # refuse a pair whose params or FLOPs/token differ by more
    #                                  (0 = unchecked)
    # MLM pretraining (configs/pretrain.py fields), the same for both trunks.
    c.pretrain = ml_collections.ConfigDict({
        "total_steps": 10000,        # updates (LAMB, warmup 1/20, linear decay to 0): 20M
        #                              tokens, 3.2 passes over the corpus's 6.5M train tokens
        "batch_size": 32,            # rows of max_length tokens an update
        "max_length": 64,            # tokens a row: the length the pair is matched at
        "max_predictions": 10,       # masked tokens scored a row (the head's cost)
        "mask_unit": "token",        # token-level masking (lst_clue's trunk recipe)
        "learning_rate": 5e-3,
        "eval_every_steps": 500,     # dev MLM accuracy: the points of the plot
        "eval_batches": 20,          # dev batches an evaluation (the same ones each time)
        "checkpoint_every_steps": 500,  # resume points
        "seed": 0,
    })
    c.pretrain_stop_at = 0           # > 0: this invocation only pretrains, both trunks up to
    #                                  this step, and writes the plot (pieces); 0 = everything
    # Fine-tuning: configs/finetune.py:task=T,method=full from each trunk, per task `recipes`.
    c.tasks = TASKS
    c.seeds = (0, 1, 2)              # fine-tuning seeds (head init, dropout, data order)
    c.dev_rows = 2000                # dev rows scored a run, the first ones (0 = all)
    c.finetune = ml_collections.ConfigDict({  # configs/finetune.py fields of every run
        "grad_accum_steps": 1, "eval_batches": 1})  # (the score is experiments.evaluate's)
    # Per task: Su's (max_length, batch, epochs) → ours; train rows of the local snapshot.
    c.recipes = ml_collections.ConfigDict({
        "afqmc": _recipe(600, 32, 64),         # (128, 32, 10); 10k rows: 1.9 epochs
        "tnews": _recipe(600, 32, 64),         # (128, 32, 10); 53k rows: 0.4 epochs
        "iflytek": _recipe(500, 32, 128),      # (128, 32, 10); 3k rows: 5.3 epochs
        "ocnli": _recipe(600, 32, 64),         # (128, 32, 10); 10k rows: 1.9 epochs
        "cluewsc2020": _recipe(150, 32, 128),  # (128, 32, 30); 160 rows: his 30 epochs
        "csl": _recipe(100, 32, 128),          # (128, 32, 10); 160 rows: 20 epochs
        "chid_fewclue": _recipe(100, 24, 64),  # (64, 24, 5); 202 rows: 12 epochs
        "c3": _recipe(400, 16, 128),           # (512, 16, 10); 11.9k questions: 0.5 epochs
        "cmrc2018": _recipe(300, 32, 256, stride=128, max_question_length=32),  # (512, 32, 10);
        #                                        1002 questions, ~3.5k windows: 2.7 epochs
        "cluener": _recipe(600, 32, 64),       # (256, 32, 10); 10.7k rows of <= 50 chars: 1.8
    })
    c.results_dir = ""               # arch_clue.md / .png ("" = the workdir)
    c.command = ("python -m experiments.arch_clue --config configs/arch_clue.py:full "
                 "--workdir runs/arch_clue --config.data_dir=../shared/data/clue")  # set by CLI
    if arg == "smoke":
        c.corpus_tasks = ("csl",)
        c.corpus_max_lines = 2000
        c.vocab_size = 1000
        c.models.gau_alpha.overrides.update(hidden_size=64, num_layers=2, intermediate_size=128,
                                            key_size=32)
        c.models.roformer_v2.overrides.update(hidden_size=64, num_layers=1,
                                              intermediate_size=288, key_size=32, num_heads=2)
        c.pair_tolerance = 0.0       # at d = 64 the n² part dominates: no matched pair
        c.pretrain.update(total_steps=2, batch_size=8, max_length=32, max_predictions=5,
                          eval_every_steps=1, eval_batches=1, checkpoint_every_steps=2)
        c.tasks = ("csl",)
        c.seeds = (0,)
        c.dev_rows = 16
        c.recipes = ml_collections.ConfigDict({"csl": _recipe(2, 8, 32)})
        c.command = ("python -m experiments.arch_clue --config configs/arch_clue.py:smoke "
                     "--workdir /tmp/arch_clue --config.data_dir=../shared/data/clue")
    return c
