"""NumPy re-implementations of the model's formulas (docs/math.md; the module docstrings of
gau_jax/layers/*.py and gau_jax/models/encoder.py), written from the formulas, not the Flax code.

Used by the *_vs_reference tests. Everything in float64.
"""

import numpy as np


def rope(x, positions=None, base=10000.0):
    """x [b, n, ..., k]; rotate adjacent pairs (x_2i, x_2i+1) by p·θ_i, θ_i = base^(−2i/k)."""
    x = np.asarray(x, np.float64)
    n, k = x.shape[1], x.shape[-1]
    pos = np.arange(n) if positions is None else np.asarray(positions)
    pos = np.broadcast_to(pos, (x.shape[0], n))
    out = np.empty_like(x)
    for i in range(k // 2):
        theta = base ** (-2.0 * i / k)
        ang = (pos * theta).reshape(pos.shape + (1,) * (x.ndim - 3))
        a, b = x[..., 2 * i], x[..., 2 * i + 1]
        out[..., 2 * i] = a * np.cos(ang) - b * np.sin(ang)
        out[..., 2 * i + 1] = b * np.cos(ang) + a * np.sin(ang)
    return out


def rms_norm(x, eps=1e-12):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def normalize(a, visible, kind, fixed_n=0):
    """a [..., nq, nk] logits; visible bool broadcastable; returns attention weights."""
    visible = np.broadcast_to(visible, a.shape)
    n = np.maximum(visible.sum(-1, keepdims=True), 1) if not fixed_n else float(fixed_n)
    if kind == "relu2":
        return np.where(visible, np.maximum(a, 0) ** 2 / n, 0.0)
    if kind == "softmax_plus":
        a = a * np.log(n) / np.log(512)
    a = np.where(visible, a, -np.inf)
    m = np.max(np.where(visible, a, -1e300), axis=-1, keepdims=True)
    e = np.where(visible, np.exp(a - m), 0.0)
    return e / np.maximum(e.sum(-1, keepdims=True), 1e-300)


def swish(x):
    return x / (1 + np.exp(-x))


def mha(x, mask, p, heads, kind="softmax", bias=False):
    b, n, d = x.shape
    k = p["query"]["kernel"].shape[1] // heads

    def dense(name, t):
        y = t @ p[name]["kernel"]
        return y + p[name]["bias"] if bias else y

    q = rope(dense("query", x).reshape(b, n, heads, k))
    kk = rope(dense("key", x).reshape(b, n, heads, k))
    v = dense("value", x).reshape(b, n, heads, k)
    a = np.einsum("bqhk,bmhk->bhqm", q, kk) / np.sqrt(k)
    w = normalize(a, mask[:, None, None, :].astype(bool), kind)
    o = np.einsum("bhqm,bmhk->bqhk", w, v).reshape(b, n, heads * k)
    return dense("output", o)


def gau(x, mask, p, e, s, kind="softmax_plus", chunk=0):
    """Direct (quadratic) definition; with chunk > 0 the mixed-chunk output, built from masks."""
    b, n, _ = x.shape
    uvz = swish(x @ p["uvz"]["kernel"])
    u, v, z = uvz[..., :e], uvz[..., e:2 * e], uvz[..., 2 * e:]
    so = lambda name: z * p[name]["scale"]
    q, k = rope(so("q_scale")), rope(so("k_scale"))
    a = np.einsum("bns,bms->bnm", q, k) / np.sqrt(s)
    vis = np.broadcast_to(mask[:, None, :].astype(bool), a.shape)
    if chunk:
        cid = np.arange(n) // chunk
        vis = vis & (cid[:, None] == cid[None, :])[None]
    o = np.einsum("bnm,bme->bne", normalize(a, vis, kind), v)
    if chunk:
        lq, lk = rope(so("lin_q_scale")), rope(so("lin_k_scale"))
        nreal = np.maximum(mask.sum(-1), 1)[:, None, None]
        lin = np.einsum("bns,bms->bnm", lq, lk) * mask[:, None, :] / nreal
        o = o + np.einsum("bnm,bme->bne", lin, v)
    return (u * o) @ p["output"]["kernel"]


def encoder(ids, seg, mask, params, cfg):
    """Full encoder forward (unrolled params layers_i), returning (last hidden, logits)."""
    E = params["embeddings"]["token_embedding"]["embedding"]
    x = rms_norm(E[ids] + params["embeddings"]["segment_embedding"]["embedding"][seg],
                 cfg.norm_eps)
    for i in range(cfg.num_layers):
        p = params[f"layers_{i}"]
        if cfg.block == "gau":
            x = rms_norm(x + gau(x, mask, p["gau"], cfg.intermediate_size, cfg.key_size,
                                 cfg.attention_norm, cfg.chunk_size), cfg.norm_eps)
        else:
            x = rms_norm(x + mha(x, mask, p["attention"], cfg.num_heads, cfg.attention_norm),
                         cfg.norm_eps)
            f = p["ffn"]
            h = np.maximum(x @ f["intermediate"]["kernel"], 0) @ f["output"]["kernel"]
            x = rms_norm(x + h, cfg.norm_eps)
    return x, x @ E.T
