"""rlx.models: config validation and HF dicts, logical axes, forward invariances, remat and
dtypes, trainer log-probs, and the KV cache (prefill + decode == full forward).

References: `transformers` itself is the reference for the forward's numbers
(tests/test_models_hf.py); here the references are properties that hold for any correct
implementation (RoPE depends on position differences only; left padding changes
nothing on real tokens; rematerialization changes no gradient) and an independent
log-softmax / entropy of the full forward's logits written in numpy.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import models

V = 64
LOGICAL = {"vocab", "embed", "q_heads", "kv_heads", "head_dim", "mlp", "norm", "layers"}


def _cfg(family="qwen2", **kw):
    extra = {}
    if family == "llama":
        extra = dict(rope_theta=500000.0, rope_scaling=(("factor", 8.0), ("high_freq_factor", 4.0),
                                                        ("low_freq_factor", 1.0),
                                                        ("original_max_position_embeddings", 8),
                                                        ("rope_type", "llama3")), tie_embeddings=False)
    extra.update(kw)
    return models.tiny(V, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                       family=family, **extra)


@pytest.fixture(scope="module")
def qwen2():
    cfg = _cfg("qwen2")
    return cfg, perturbed(models.init_params(cfg, jax.random.key(0)))


def perturbed(params):
    """Random (not 1 / 0) norm weights and biases, so that every parameter matters."""
    def f(path, x):
        name = jax.tree_util.keystr(path)
        if "norm" in name or "bias" in name:
            return x + 0.1 * jax.random.normal(jax.random.key(len(name)), x.shape, x.dtype)
        return x
    return jax.tree_util.tree_map_with_path(f, params)


def _tokens(B, L, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(3, V, size=(B, L)), jnp.int32)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("field,kw", [
    ("vocab_size", dict(vocab_size=0)),
    ("num_kv_heads", dict(num_kv_heads=3)),
    ("head_dim", dict(head_dim=7)),
    ("family", dict(family="gpt2")),
    ("rms_norm_eps", dict(rms_norm_eps=0.0)),
    ("rope_theta", dict(rope_theta=-1.0)),
    ("rope_scaling", dict(rope_scaling=(("rope_type", "llama3"), ("factor", 8.0)))),
    ("rope_scaling", dict(rope_scaling=(("rope_type", "yarn"),))),
    ("dtype", dict(dtype=jnp.int8)),
    ("param_dtype", dict(param_dtype="nonsense")),
    ("tie_embeddings", dict(tie_embeddings=1)),
    ("unroll_layers", dict(unroll_layers="yes")),
    ("remat", dict(remat="everything")),
])
def test_config_validation_names_the_field(field, kw):
    base = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                head_dim=8)
    base.update(kw)
    with pytest.raises(ValueError, match=f"ModelConfig.{field}"):
        models.ModelConfig(**base)


def test_config_hf_dicts_and_hashing():
    # A transformers-5 style Qwen3 config.json (rope_parameters) and a legacy Llama-3.1 one.
    qwen3 = {"model_type": "qwen3", "vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072,
             "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
             "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, "rms_norm_eps": 1e-6,
             "tie_word_embeddings": True, "max_position_embeddings": 40960, "attention_bias": False}
    c = models.ModelConfig.from_hf_dict(qwen3)
    assert (c.family, c.qk_norm, c.qkv_bias, c.head_dim, c.rope_theta, c.rope_scaling) == \
        ("qwen3", True, False, 128, 1e6, None)
    assert c.num_heads * c.head_dim == 2048 != c.hidden_size           # Qwen3: head_dim is independent
    llama = {"model_type": "llama", "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
             "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "rope_theta": 500000.0,
             "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                              "original_max_position_embeddings": 8192, "rope_type": "llama3"},
             "tie_word_embeddings": True}
    lc = models.ModelConfig.from_hf_dict(llama)
    assert lc.head_dim == 64 and dict(lc.rope_scaling)["factor"] == 32.0 and not lc.qkv_bias
    qwen2 = dict(qwen3, model_type="qwen2")
    qwen2.pop("head_dim")
    q2 = models.ModelConfig.from_hf_dict(qwen2)
    assert q2.qkv_bias and not q2.qk_norm and q2.head_dim == 64
    for cfg in (c, lc, q2):
        back = models.ModelConfig.from_hf_dict(cfg.to_hf_dict())
        assert back == cfg and hash(back) == hash(cfg)
    with pytest.raises(ValueError, match="model_type 'gpt2'"):
        models.ModelConfig.from_hf_dict(dict(qwen3, model_type="gpt2"))
    with pytest.raises(ValueError, match="sliding-window"):
        models.ModelConfig.from_hf_dict(dict(qwen3, use_sliding_window=True))


@pytest.mark.parametrize("family", ["qwen2", "qwen3", "llama"])
def test_param_logical_axes_match_params(family):
    cfg = _cfg(family)
    params = jax.eval_shape(lambda: models.init_params(cfg, jax.random.key(0)))
    axes = models.param_logical_axes(cfg)
    assert jax.tree.structure(params) == jax.tree.structure(axes, is_leaf=lambda x: isinstance(x, tuple))
    for p, a in zip(jax.tree.leaves(params), jax.tree.leaves(axes, is_leaf=lambda x: isinstance(x, tuple))):
        assert len(a) == p.ndim and set(a) <= LOGICAL
    assert ("q_bias" in params["layers"]) == (family == "qwen2")
    assert ("q_norm" in params["layers"]) == (family == "qwen3")
    assert ("lm_head" in params) == (family == "llama")
    n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    assert n == cfg.num_params


# ------------------------------------------------------------------------ forward


def test_forward_invariances(qwen2):
    cfg, params = qwen2
    fwd = jax.jit(models.forward, static_argnums=1)
    toks = _tokens(2, 9)
    ref = fwd(params, cfg, toks)
    assert ref.shape == (2, 9, V) and ref.dtype == jnp.float32
    # Left padding: row 1 shifted right by 3 behind padding gives the same logits on its
    # real tokens (positions restart at the first real token).
    padded = jnp.concatenate([jnp.zeros((2, 3), jnp.int32), toks], axis=1)
    mask = jnp.ones((2, 12), bool).at[1, :3].set(False)
    out = fwd(params, cfg, padded, attention_mask_BL=mask)
    np.testing.assert_allclose(out[1, 3:], ref[1], atol=1e-5, rtol=0)
    # RoPE makes attention depend on position differences only: shifting every
    # position by 7 changes nothing (up to the float32 rounding of the angles).
    shifted = fwd(params, cfg, toks, positions_BL=jnp.broadcast_to(jnp.arange(9) + 7, (2, 9)))
    np.testing.assert_allclose(shifted, ref, atol=2e-5, rtol=0)
    # hidden_states @ unembed_matrix is the forward.
    h = models.hidden_states(params, cfg, toks)
    np.testing.assert_allclose(h @ models.unembed_matrix(params, cfg), ref, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="tokens must be"):
        models.forward(params, cfg, toks[0])
    with pytest.raises(ValueError, match="attention_mask_BL"):
        models.forward(params, cfg, toks, attention_mask_BL=mask)


@pytest.mark.parametrize("variant", [{"remat": True}, {"remat": "dots_saveable"}, {"unroll_layers": True},
                                     {"remat": "full", "unroll_layers": True}])
def test_remat_and_unrolling_give_the_same_gradients(qwen2, variant):
    cfg, params = qwen2
    toks = _tokens(2, 7, seed=3)

    def loss(p, c):
        return jnp.mean(jax.nn.log_softmax(models.forward(p, c, toks))[..., 5])

    g0 = jax.jit(jax.grad(loss), static_argnums=1)(params, cfg)
    g1 = jax.jit(jax.grad(loss), static_argnums=1)(params, cfg.replace(**variant))
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_bfloat16_compute_and_params(qwen2):
    cfg, params = qwen2
    toks = _tokens(2, 7, seed=4)
    ref = models.forward(params, cfg, toks)
    bf = cfg.replace(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    p16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
    out = models.forward(p16, bf, toks)
    assert out.dtype == jnp.float32                      # logits are always float32
    assert float(jnp.max(jnp.abs(out - ref))) < 0.05     # bf16 rounding only (logits here are O(1))
    h = models.hidden_states(params, cfg.replace(dtype=jnp.bfloat16), toks)
    assert h.dtype == jnp.bfloat16
    assert models.init_cache(bf, 2, 5)["k"][0].dtype == jnp.bfloat16


def test_completion_logprobs_against_numpy(qwen2):
    cfg, params = qwen2
    B, Lp, T = 3, 5, 4
    prompt, comp = _tokens(B, Lp, 6), _tokens(B, T, 7)
    pmask = jnp.asarray(np.arange(Lp)[None] >= np.array([[0], [2], [4]]))       # left padding 0, 2, 4
    cmask = jnp.asarray(np.arange(T)[None] < np.array([[4], [2], [0]]))         # right padding
    temp = 0.7
    logp, ent = models.completion_logprobs(params, cfg, prompt, pmask, comp, cmask, temperature=temp,
                                           with_entropy=True)
    # Reference: the full forward over [prompt, completion]; the logits at column
    # Lp - 1 + t predict completion token t; numpy log-softmax and entropy at temp.
    logits = np.asarray(models.forward(params, cfg, jnp.concatenate([prompt, comp], 1),
                                       attention_mask_BL=jnp.concatenate([pmask, cmask], 1)), np.float64) / temp
    z = logits[:, Lp - 1:Lp - 1 + T]
    lsm = z - z.max(-1, keepdims=True)
    lsm = lsm - np.log(np.exp(lsm).sum(-1, keepdims=True))
    want = np.take_along_axis(lsm, np.asarray(comp)[..., None], -1)[..., 0] * np.asarray(cmask)
    want_ent = -(np.exp(lsm) * lsm).sum(-1) * np.asarray(cmask)
    np.testing.assert_allclose(logp, want, atol=2e-5, rtol=0)
    np.testing.assert_allclose(ent, want_ent, atol=2e-5, rtol=0)
    assert not np.any(np.asarray(logp)[~np.asarray(cmask)])
    chunked = models.completion_logprobs(params, cfg, prompt, pmask, comp, cmask, temperature=temp, vocab_chunk=24,
                                         with_entropy=True)
    np.testing.assert_allclose(chunked[0], logp, atol=2e-5, rtol=0)
    np.testing.assert_allclose(chunked[1], ent, atol=2e-5, rtol=0)
    with pytest.raises(ValueError, match="completion_tokens / completion_mask"):
        models.completion_logprobs(params, cfg, prompt, pmask, comp[:2], cmask[:2])


# -------------------------------------------------------------------------- cache


@pytest.mark.parametrize("family", ["qwen2", "qwen3", "llama"])
def test_cached_decode_equals_full_forward(family):
    cfg = _cfg(family)
    params = perturbed(models.init_params(cfg, jax.random.key(2)))
    B, Lp, T = 3, 6, 5
    toks, cont = _tokens(B, Lp, 8), _tokens(B, T, 9)
    mask = jnp.asarray(np.arange(Lp)[None] >= np.arange(B)[:, None])            # 0, 1, 2 padding tokens
    full_t = jnp.concatenate([toks, cont], axis=1)
    full_m = jnp.concatenate([mask, jnp.ones((B, T), bool)], axis=1)
    ref = models.forward(params, cfg, full_t, attention_mask_BL=full_m)           # [B, Lp + T, V]
    cache0 = models.init_cache(cfg, B, 16)                                       # 5 spare columns
    assert len(cache0["k"]) == 2 and cache0["k"][0].shape == (B, cfg.num_kv_heads, cfg.head_dim, 16)
    assert cache0["v"][0].shape == (B, cfg.num_kv_heads, 16, cfg.head_dim)
    logits, cache0, pos = jax.jit(models.prefill, static_argnums=1)(params, cfg, toks, mask, cache0)
    np.testing.assert_array_equal(pos, [6, 5, 4])
    np.testing.assert_allclose(logits, ref[:, Lp - 1], atol=1e-5, rtol=0)
    step = jax.jit(models.decode_step, static_argnums=1)
    dp = models.decode_params(params, cfg)
    cache = cache0
    key_mask = jnp.concatenate([mask, jnp.zeros((B, 16 - Lp), bool)], axis=1)
    for t in range(T):
        key_mask = key_mask.at[:, Lp + t].set(True)
        logits, cache = step(dp, cfg, cont[:, t], pos + t, cache, key_mask, Lp + t)
        np.testing.assert_allclose(logits, ref[:, Lp + t], atol=1e-5, rtol=0)
