"""Port side of experiments/bench_peers.py: the PyTorch ports' MLM train step, timed on request.

Runs in the parity venv (torch, transformers 4.x, `roformer`, `gau-alpha`) and never imports
gau_jax. It reads one JSON command per line on stdin and answers one JSON line on stdout:

    {"op": "setup", "kind": "roformer"|"gau_alpha", "config": {...}, "batch": b, "n": n,
     "seed": s, "lr": 1e-4, "weight_decay": 0.01}
        → {"params": P, "torch": version, "threads": T}
          random-init *ForMaskedLM in train mode (dropout probabilities are the config's),
          torch.optim.AdamW, a random batch: all tokens real, every token a label
    {"op": "steps", "count": k}
        → {"times": [s_1, …, s_k], "loss": last loss}
          k train steps  loss = CE(logits[b·n, V], labels) ; backward ; AdamW step ; zero_grad
    {"op": "quit"}

The step is what a user of the port writes: `model(..., labels=...).loss.backward()`,
`optimizer.step()`, `optimizer.zero_grad(set_to_none=True)`; float32, no autocast.
"""

import json
import os
import sys
import time


def _setup(job):
    import torch

    if job["kind"] == "roformer":
        from roformer import RoFormerConfig as Config
        from roformer import RoFormerForMaskedLM as Model
    else:
        from gau_alpha import GAUAlphaConfig as Config
        from gau_alpha import GAUAlphaForMaskedLM as Model
    torch.manual_seed(job.get("seed", 0))
    model = Model(Config(**job["config"])).train()
    opt = torch.optim.AdamW(model.parameters(), lr=job.get("lr", 1e-4),
                            weight_decay=job.get("weight_decay", 0.01), eps=1e-6)
    b, n, v = job["batch"], job["n"], job["config"]["vocab_size"]
    g = torch.Generator().manual_seed(job.get("seed", 0))
    ids = torch.randint(5, v, (b, n), generator=g)
    batch = dict(input_ids=ids, attention_mask=torch.ones_like(ids),
                 token_type_ids=torch.zeros_like(ids), labels=ids.clone())
    params = sum(p.numel() for p in model.parameters())
    return model, opt, batch, {"params": int(params), "torch": torch.__version__,
                               "threads": torch.get_num_threads()}


def _steps(state, count):
    model, opt, batch = state
    times, loss = [], float("nan")
    for _ in range(count):
        t0 = time.perf_counter()
        out = model(**batch, return_dict=True)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss = float(out.loss.detach())
        times.append(time.perf_counter() - t0)
    return {"times": times, "loss": loss}


def main():
    import torch

    os.environ.setdefault("USE_TF", "0")
    threads = int(os.environ.get("PEERS_THREADS", 0))
    if threads:  # the same cores as the gau_jax side (bench_peers --threads)
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    state = None
    for line in sys.stdin:
        job = json.loads(line)
        if job["op"] == "quit":
            break
        if job["op"] == "setup":
            *state, reply = _setup(job)
        elif job["op"] == "steps":
            reply = _steps(state, int(job["count"]))
        else:
            reply = {"error": f"unknown op {job['op']!r}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("USE_TF", "0")  # transformers: don't import TensorFlow
    main()
