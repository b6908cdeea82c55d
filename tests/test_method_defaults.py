"""The PEFT methods learn with their defaults (configs/finetune.py LEARNING_RATES, LSTConfig,
LoRAConfig, ADAPTER_SIZE): from a tiny pretrained trunk, `task=sentiment,model=gau_alpha_tiny,
method=M` with only the run length shortened beats the majority class of the sentiment dev set
(counted here from the dev labels) by a margin. (method=full keeps 1e-3, the released
checkpoints' rate, which is slow at this size; it is the reference, not tested here.)"""

import collections

import pytest

from configs import finetune, pretrain
from gau_jax.data import corpus
from gau_jax.models.encoder import encoder_config
from gau_jax.models.lst import LSTConfig, side_reduction
from gau_jax.models.presets import get_model_config
from gau_jax.train.loop import Trainer

FINETUNE_STEPS, LENGTH = 120, 32
LOOP = {"progress_bar": False, "tensorboard": False, "async_checkpoints": False,
        "log_every_steps": 1000}


def _run(config, workdir) -> dict:
    trainer = Trainer(config, workdir)
    try:
        return trainer.run()
    finally:
        trainer.close()


@pytest.fixture(scope="module")
def trunk(tmp_path_factory):
    """steps -> workdir of gau_alpha_tiny with biases (BitFit needs them), MLM-pretrained that
    many steps on People's Daily; each length is pretrained once per module."""
    built = {}

    def pretrained(steps: int):
        if steps not in built:
            out = tmp_path_factory.mktemp(f"trunk{steps}")
            c = pretrain.get_config("gau_alpha_tiny")
            c.model.update(use_bias=True, vocab_size=2000, scan_layers=False)
            c.update(total_steps=steps, batch_size=32, max_length=LENGTH, learning_rate=1e-2,
                     warmup_steps=10, eval_every_steps=steps, eval_batches=1,
                     checkpoint_every_steps=steps, **LOOP)
            _run(c, out)
            built[steps] = out
        return built[steps]

    return pretrained


def test_small_trunk_side_width_floor():
    """d = 64 at r = 8 would be 8 wide; the floor of 32 lowers r to 2. Base size: unchanged."""
    tiny = encoder_config(get_model_config("gau_alpha_tiny"))
    base = encoder_config(get_model_config("gau_alpha_base"))
    assert side_reduction(tiny, LSTConfig()) == 2          # 64 / 2 = 32
    assert side_reduction(tiny, LSTConfig(min_side_width=0)) == 8
    assert side_reduction(tiny, LSTConfig(min_side_width=100)) == 1  # capped at the trunk width
    assert side_reduction(base, LSTConfig()) == 8          # 768 / 8 = 96 >= 32


# method: (trunk pretraining steps, fine-tuning steps, margin in accuracy points above the
# majority class, 53.1 % of dev). LST learns in 120 steps from a 150-step trunk. LoRA at 3e-1
# learns or stays at the majority class after 120 steps depending on the trunk's seed (trunks
# of seeds 0, 1, 2 on the prepared People's Daily: 53.1 / 53.1 / 61.4 %); after 300 steps it
# learns from both seeds tried (66.6 / 65.8 %).
# Adapters learn more slowly (120 steps: 53.0 %, at the majority class; 600 steps: 64.4 %).
# BitFit trains 1.8k parameters at d = 64 (biases and head): from the 150-step trunk it stays
# at the majority class at any rate (3e-2 to 3e-1, 120 and 600 steps); from a 600-step trunk,
# 600 steps at its default 2e-2 reach 63.0 / 59.8 % (seeds 0 / 1), hence its smaller margin.
RUNS = {"lst": (150, FINETUNE_STEPS, 0.08), "lora": (150, 300, 0.08),
        "adapter": (150, 600, 0.08), "bitfit": (600, 600, 0.05)}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(RUNS))
def test_defaults_beat_the_majority_class(trunk, method, tmp_path):
    pretrain_steps, steps, margin = RUNS[method]
    c = finetune.get_config(f"task=sentiment,model=gau_alpha_tiny,method={method}")
    assert c.learning_rate == finetune.LEARNING_RATES[method]  # the default under test
    c.update(init_from=str(trunk(pretrain_steps)), total_steps=steps, max_length=LENGTH,
             eval_every_steps=steps, checkpoint_every_steps=steps, keep_best=False, **LOOP)
    summary = _run(c, tmp_path / method)
    labels = collections.Counter(r["label"] for r in corpus.sentiment_splits()["dev"])
    majority = max(labels.values()) / sum(labels.values())
    assert summary["dev"]["accuracy"] > majority + margin, (method, summary["dev"], majority)
