"""Attention kernels (`ModelConfig.attention`, `rlx.models.attention`).

Reference: `transformer.attend` with the explicit [B, L, L] causal-and-padding mask (the
XLA path). The cuDNN path's packing runs here through the same
`jax.nn.dot_product_attention` call with XLA's implementation (no GPU on CI: the cuDNN
kernel itself is not exercised); the splash kernel runs in Pallas interpret mode.
Only real tokens' outputs are compared (padding outputs are unused), and they must be
finite.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import models
from rlx.models import attention as A
from rlx.models import transformer as T


def _qkv(B=3, L=256, H=4, N=2, Dh=64, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.normal(size=(B, L, n, Dh)), jnp.float32) for n in (H, N, N))


def _mask(L=256):
    m = np.zeros((3, L), bool)
    m[0, 10:200] = True            # left + right padding (a prompt | completion row)
    m[1, :] = True                 # none
    m[2, 50:120] = True            # a hole (what no rlx layout makes, but the kernels must get right)
    m[2, 130:140] = True
    return jnp.asarray(m)


def _ref(q, k, v, mask):
    return jnp.where(mask[:, :, None, None], T.attend(q, k, v, T.causal_mask(mask)), 0)


def test_cudnn_packing_equals_the_masked_reference():
    q, k, v = _qkv()
    mask = _mask()
    out = A.packed_attention(q, k, v, mask, implementation="xla")
    np.testing.assert_allclose(out, _ref(q, k, v, mask), atol=2e-6)
    g = jax.grad(lambda q: (A.packed_attention(q, k, v, mask, implementation="xla") ** 2).sum())(q)
    g_ref = jax.grad(lambda q: (_ref(q, k, v, mask) ** 2).sum())(q)
    np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("L", [256, 200])          # 200: padded to the 128-token block inside
def test_splash_equals_the_masked_reference(L):
    q, k, v = (x[:, :L] for x in _qkv())
    mask = _mask()[:, :L]
    out = A.splash_attention(q, k, v, mask)
    assert out.shape == q.shape and bool(jnp.isfinite(out).all())
    np.testing.assert_allclose(jnp.where(mask[:, :, None, None], out, 0), _ref(q, k, v, mask), atol=5e-6)
    if L == 256:
        def loss(q, k, v):
            return (jnp.where(mask[:, :, None, None], A.splash_attention(q, k, v, mask), 0) ** 2).sum()
        grads = jax.grad(loss, argnums=(0, 1, 2))(q, k, v)
        refs = jax.grad(lambda q, k, v: (_ref(q, k, v, mask) ** 2).sum(), argnums=(0, 1, 2))(q, k, v)
        for g, r in zip(grads, refs):
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


def test_model_forward_with_each_kernel():
    cfg = models.tiny(64, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)
    params = models.init_params(cfg, jax.random.key(0))
    rng = np.random.default_rng(1)
    toks = jnp.asarray(rng.integers(3, 64, (2, 128)), jnp.int32)
    mask = jnp.asarray(np.arange(128)[None, :] >= np.asarray([[20], [0]]))   # left padding
    ref = models.forward(params, cfg.replace(attention="xla"), toks, attention_mask_BL=mask)
    A._splash_kernel.cache_clear()      # the kernel is first built inside this forward's layer scan
    out = models.forward(params, cfg.replace(attention="splash"), toks, attention_mask_BL=mask)
    np.testing.assert_allclose(jnp.where(mask[..., None], out, 0), jnp.where(mask[..., None], ref, 0), atol=2e-5)
    # A second program reuses the cached kernel (it once held the first trace's tracers).
    again = jax.jit(lambda p: models.forward(p, cfg.replace(attention="splash"), toks, attention_mask_BL=mask))
    np.testing.assert_allclose(again(params), out, atol=1e-5)


def test_auto_resolves_per_platform():
    cfg = models.tiny(64, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
    assert cfg.attention == "auto" and A.resolve(cfg) == "xla"            # CPU
    for plat, impl in (("tpu", "splash"), ("gpu", "cudnn"), ("cpu", "xla")):
        with A.target_platform(plat):
            assert A.resolve(cfg) == impl
            assert A.resolve(cfg.replace(attention="xla")) == "xla"
    with pytest.raises(ValueError, match="ModelConfig.attention"):
        cfg.replace(attention="flash")
