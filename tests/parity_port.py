"""Port side of the parity tests; runs in the parity venv (torch, transformers 4.x, roformer,
gau-alpha, tensorflow), never imports gau_jax. `python tests/parity_port.py JOBS.json` runs a
list of jobs in one process (torch is imported once):

    {"op": "make", "kind": "roformer"|"gau_alpha", "config": {...}, "out": DIR, "seed": int,
     "safetensors": bool}         random-weight *ForMaskedLM → save_pretrained(DIR)
    {"op": "run", "dir": DIR, "inputs": NPZ, "out": NPZ}
                                  from_pretrained(DIR) → last_hidden_state, logits, hidden_states
    {"op": "bert4keras", "dir": DIR, "out": DIR2}
                                  the port's weights under bert4keras' variable names (written
                                  here from bert4keras' variable_mapping, independently of
                                  gau_jax), saved with TensorFlow + bert_config.json
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch


def _classes(kind):
    if kind == "roformer":
        from roformer import RoFormerConfig, RoFormerForMaskedLM
        return RoFormerConfig, RoFormerForMaskedLM
    from gau_alpha import GAUAlphaConfig, GAUAlphaForMaskedLM
    return GAUAlphaConfig, GAUAlphaForMaskedLM


def make(job):
    config_cls, model_cls = _classes(job["kind"])
    torch.manual_seed(job.get("seed", 0))
    model = model_cls(config_cls(**job["config"])).eval()
    with torch.no_grad():  # random weights everywhere (init leaves ScaleOffset gammas at 1)
        for name, p in model.named_parameters():
            if "scaleoffset.weight" in name:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif p.ndim == 2:
                p.copy_(torch.randn_like(p) / p.shape[-1] ** 0.5)
    safe = job.get("safetensors", True)
    if safe:  # the ports declare no _tied_weights_keys: safetensors refuses shared tensors
        head = model.cls.predictions.decoder
        head.weight = torch.nn.Parameter(head.weight.detach().clone())
    model.save_pretrained(job["out"], safe_serialization=safe)


def run(job):
    config = json.loads((Path(job["dir"]) / "config.json").read_text())
    _, model_cls = _classes(config["model_type"])
    model = model_cls.from_pretrained(job["dir"]).eval()
    x = np.load(job["inputs"])
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(x["input_ids"]).long(),
                    attention_mask=torch.from_numpy(x["attention_mask"]).long(),
                    token_type_ids=torch.from_numpy(x["segment_ids"]).long(),
                    output_hidden_states=True, return_dict=True)
    np.savez(job["out"], last_hidden_state=out.hidden_states[-1].numpy(),
             logits=out.logits.numpy(), hidden_states=torch.stack(out.hidden_states).numpy())


def bert4keras(job):
    dst = Path(job["out"])
    dst.mkdir(parents=True, exist_ok=True)
    try:
        import tensorflow as tf
    except ImportError as e:  # the test skips this case, naming the reason
        (dst / "TENSORFLOW_MISSING").write_text(str(e))
        return

    config = json.loads((Path(job["dir"]) / "config.json").read_text())
    _, model_cls = _classes(config["model_type"])
    sd = {k: v.numpy() for k, v in model_cls.from_pretrained(job["dir"]).state_dict().items()}
    gau = config["model_type"] == "gau_alpha"
    p = "gau_alpha." if gau else "roformer."
    emb = p + "embeddings."
    out = {"bert/embeddings/word_embeddings": sd[emb + "word_embeddings.weight"],
           "bert/embeddings/token_type_embeddings": sd[emb + "token_type_embeddings.weight"]}
    for i in range(config["num_hidden_layers"]):
        t = f"{p}encoder.layer.{i}."
        if gau:
            b = f"GAU_alpha/encoder/layer_{i}/gau/"
            out[b + "i_dense/kernel"] = sd[t + "gau.i_dense.weight"].T
            out[b + "o_dense/kernel"] = sd[t + "gau.o_dense.weight"].T
            out[b + "q_scaleoffset/gamma"] = sd[t + "gau.q_scaleoffset.weight"]
            out[b + "k_scaleoffset/gamma"] = sd[t + "gau.k_scaleoffset.weight"]
        else:
            b = f"bert/encoder/layer_{i}/"
            for n in ("query", "key", "value"):
                out[b + f"attention/self/{n}/kernel"] = sd[t + f"attention.self.{n}.weight"].T
            out[b + "attention/output/dense/kernel"] = sd[t + "attention.output.dense.weight"].T
            out[b + "intermediate/dense/kernel"] = sd[t + "intermediate.dense.weight"].T
            out[b + "output/dense/kernel"] = sd[t + "output.dense.weight"].T
    names = sorted(out)
    tf.raw_ops.SaveV2(prefix=str(dst / "bert_model.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(np.ascontiguousarray(out[n])) for n in names])
    (dst / "checkpoint").write_text('model_checkpoint_path: "bert_model.ckpt"\n')
    bert_cfg = {k: config[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                       "intermediate_size", "type_vocab_size", "hidden_act",
                                       "hidden_dropout_prob", "attention_probs_dropout_prob")}
    if gau:
        bert_cfg["attention_key_size"] = config["attention_key_size"]
    else:
        bert_cfg["num_attention_heads"] = config["num_attention_heads"]
    (dst / "bert_config.json").write_text(json.dumps(bert_cfg, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("USE_TF", "0")  # transformers: don't import TensorFlow for the ports
    torch.set_num_threads(2)
    for job in json.loads(Path(sys.argv[1]).read_text()):
        {"make": make, "run": run, "bert4keras": bert4keras}[job["op"]](job)
