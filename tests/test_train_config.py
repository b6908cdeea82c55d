"""Configs: command-line overrides, argument parsing and clear errors before training."""

import sys
from unittest import mock

import pytest
from absl import flags
from ml_collections import config_flags

from configs import finetune, pretrain
from gau_jax.models import ConfigError
from gau_jax.train import methods
from gau_jax.train.loop import validate_config


def _parse(*argv):
    """What `python -m experiments.train <argv>` parses (config_flags reads sys.argv)."""
    argv = ["prog", *argv]
    with mock.patch.object(sys, "argv", argv):
        fv = flags.FlagValues()
        config_flags.DEFINE_config_file("config", None, "config", flag_values=fv,
                                        lock_config=True)
        fv(argv)
        return fv.config


def test_overrides_and_references():
    c = _parse("--config=configs/pretrain.py:roformer_v2_tiny", "--config.total_steps=200",
               "--config.batch_size=8", "--config.model.hidden_dropout=0.0")
    assert (c.total_steps, c.batch_size, c.model.hidden_dropout) == (200, 8, 0.0)
    assert c.model.block == "roformer_v2"
    assert c.warmup_steps == 10 and c.residual_ramp_steps == 20  # follow total_steps


def test_unknown_override_key_is_an_error():
    with pytest.raises(Exception, match="total_stepz"):
        _parse("--config=configs/pretrain.py:gau_alpha_tiny", "--config.total_stepz=5")


def test_finetune_argument():
    c = _parse("--config=configs/finetune.py:task=tnews,model=roformer_v2_tiny,method=full",
               "--config.init_from=/x")
    assert (c.task, c.method, c.model.preset, c.init_from) == ("tnews", "full",
                                                               "roformer_v2_tiny", "/x")
    assert c.optimizer == "adafactor" and c.keep_best
    assert finetune.get_config(None).task == "sentiment"


@pytest.mark.parametrize("arg, error, match", [
    ("task=nope", ValueError, "config.task='nope' unknown"),
    ("model=gau_alpha_huge", ConfigError, "gau_alpha_huge"),
    ("tsk=tnews", ValueError, "tsk=tnews"),
])
def test_finetune_bad_arguments(arg, error, match):
    with pytest.raises(error, match=match):
        finetune.get_config(arg)


def test_every_clue_task_has_su_recipe_defaults():
    # bojone/CLUE-bert4keras src/<task>.py: maxlen, batch_size (x grad accumulation), epochs
    expected = {"afqmc": (128, 32, 10, 1), "cluewsc2020": (128, 32, 30, 1),
                "cmrc2018": (512, 32, 10, 2), "c3": (512, 16, 10, 4), "chid": (64, 24, 5, 2),
                "cluener": (256, 32, 10, 1)}
    for task in ("afqmc", "tnews", "iflytek", "cmnli", "ocnli", "cluewsc2020", "csl",
                 "cmrc2018", "c3", "chid", "cluener"):
        c = finetune.get_config(f"task={task},method=lst")
        got = (c.max_length, c.batch_size, c.epochs, c.grad_accum_steps)
        assert got == expected.get(task, (128, 32, 10, 1)), task
        assert c.total_steps == 0  # from epochs
    assert finetune.get_config("task=cmrc2018").stride == 128
    assert finetune.get_config("task=sentiment").total_steps > 0


def test_unknown_method_is_an_error_before_anything_is_built():
    # configs import nothing from the trainer: the method name is checked by validate_config
    with pytest.raises(ValueError, match="config.method='prefix' unknown"):
        validate_config(finetune.get_config("method=prefix"))


def test_unknown_preset_for_pretraining():
    with pytest.raises(ConfigError, match="roformer_v3"):
        pretrain.get_config("roformer_v3")


def test_method_registry_extension_point():
    assert "full" in methods.available() and "lst" in methods.available()

    def build(config, model_config, num_classes):
        spec = methods.get("full").build(config, model_config, num_classes)
        return methods.Built(spec.model, model_config, lambda p: {k: k != "encoder" for k in p})

    methods.register(methods.Method("test_frozen_trunk", build))
    c = finetune.get_config("model=gau_alpha_tiny")
    spec = methods.get("test_frozen_trunk").build(c, c.model, 3)
    assert spec.encoder_path == ("encoder",)
    assert spec.trainable({"encoder": 1, "classifier": 2}) == {"encoder": False,
                                                                "classifier": True}


@pytest.mark.parametrize("field, value, match", [
    ("parallel", "pmapp", "config.parallel"),
    ("total_steps", 0, "config.total_steps"),
    ("grad_accum_steps", 3, "grad_accum_steps=3"),
])
def test_validate_config_errors(field, value, match):
    c = pretrain.get_config("gau_alpha_tiny")
    c[field] = value
    with pytest.raises(ValueError, match=match):
        validate_config(c)
