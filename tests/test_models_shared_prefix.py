"""Shared-prefix (Prefix Grouper) and packed tree forward == the repeated-prefix forward.

Reference: `completion_logprobs` on the prompts repeated G times — the plain forward
the shared-prefix forward must reproduce (log-probs and gradients), and a hand-written
attention mask for a small tree.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import models

V = 64


@pytest.fixture(scope="module")
def model():
    cfg = models.tiny(V, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                      family="qwen2")
    return cfg, models.init_params(cfg, jax.random.key(1))


def _batch(P, G, Lp, T, seed):
    rng = np.random.default_rng(seed)
    prompt = jnp.asarray(rng.integers(3, V, size=(P, Lp)), jnp.int32)
    pmask = jnp.asarray(np.arange(Lp)[None] >= rng.integers(0, Lp - 1, size=(P, 1)))   # left padding
    comp = jnp.asarray(rng.integers(3, V, size=(P * G, T)), jnp.int32)
    lens = rng.integers(0, T + 1, size=(P * G, 1))
    lens[0] = T
    cmask = jnp.asarray(np.arange(T)[None] < lens)                                     # right padding
    return prompt, pmask, comp, cmask


def assert_grads_close(g1, g2):
    """rtol 1e-5, plus an absolute tolerance of 1e-5 x the leaf's largest gradient: entries
    that are sums of cancelling terms carry rounding relative to the leaf's scale."""
    for x, y in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(y))))


def _weights(T):
    return jnp.arange(1.0, T + 1)[None]          # a loss that weights every position differently


def test_single_prompt_logprobs_and_gradients(model):
    cfg, params = model
    prompt, pmask, comp, cmask = _batch(1, 4, 8, 5, seed=4)
    G, T = comp.shape

    def shared(p):
        return models.shared_prefix_logprobs(p, cfg, prompt[0], pmask[0], comp, cmask)

    def repeated(p):
        return models.completion_logprobs(p, cfg, jnp.repeat(prompt, G, 0), jnp.repeat(pmask, G, 0), comp, cmask)

    a, b = shared(params), repeated(params)
    assert a.shape == (G, T)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.any(np.asarray(a)[~np.asarray(cmask)])
    g1 = jax.jit(jax.grad(lambda p: jnp.sum(shared(p) * _weights(T))))(params)
    g2 = jax.jit(jax.grad(lambda p: jnp.sum(repeated(p) * _weights(T))))(params)
    assert_grads_close(g1, g2)


def test_batched_prompts_entropy_chunked_and_gradients(model):
    cfg, params = model
    P, G, Lp, T = 2, 3, 8, 4
    prompt, pmask, comp, cmask = _batch(P, G, Lp, T, seed=5)
    kw = dict(temperature=0.8, with_entropy=True)

    @jax.jit
    def both(p):
        s = models.shared_prefix_logprobs(p, cfg, prompt, pmask, comp, cmask, **kw)
        r = models.completion_logprobs(p, cfg, jnp.repeat(prompt, G, 0), jnp.repeat(pmask, G, 0), comp, cmask,
                                       **kw)
        return s, r

    (s_lp, s_ent), (r_lp, r_ent) = both(params)
    np.testing.assert_allclose(s_lp, r_lp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s_ent, r_ent, rtol=1e-5, atol=1e-6)
    chunked = models.shared_prefix_logprobs(params, cfg, prompt, pmask, comp, cmask, vocab_chunk=16, **kw)
    np.testing.assert_allclose(chunked[0], r_lp, rtol=1e-5, atol=1e-5)

    def loss_s(p):
        lp, ent = models.shared_prefix_logprobs(p, cfg, prompt, pmask, comp, cmask, **kw)
        return jnp.sum(lp * _weights(T)) + 0.1 * jnp.sum(ent)

    def loss_r(p):
        lp, ent = models.completion_logprobs(p, cfg, jnp.repeat(prompt, G, 0), jnp.repeat(pmask, G, 0), comp,
                                             cmask, **kw)
        return jnp.sum(lp * _weights(T)) + 0.1 * jnp.sum(ent)

    g1, g2 = jax.jit(jax.grad(loss_s))(params), jax.jit(jax.grad(loss_r))(params)
    assert_grads_close(g1, g2)
    with pytest.raises(ValueError, match="not a multiple"):
        models.shared_prefix_logprobs(params, cfg, prompt, pmask, comp[:5], cmask[:5])


def test_tree_attention_mask_hand_case():
    # Segments: 0 = prompt (2 tokens), 1 = child of 0 (2 tokens), 2 = child of 0 (1),
    # 3 = child of 1 (1). Column order: [0, 0, 1, 1, 2, 3]; column 1 is padding.
    seg = jnp.array([0, 0, 1, 1, 2, 3])
    parent = jnp.array([-1, 0, 0, 1])
    valid = jnp.array([True, False, True, True, True, True])
    want = np.array([
        # 0  1  2  3  4  5      (key columns)
        [1, 0, 0, 0, 0, 0],   # prompt token
        [0, 0, 0, 0, 0, 0],   # the padding column: an invalid query sees nothing
        [1, 0, 1, 0, 0, 0],   # segment 1, first token: prompt + itself
        [1, 0, 1, 1, 0, 0],   # segment 1, second token
        [1, 0, 0, 0, 1, 0],   # segment 2: prompt + itself, never segment 1
        [1, 0, 1, 1, 0, 1],   # segment 3: prompt + segment 1 (its parent) + itself
    ], bool)
    np.testing.assert_array_equal(models.tree_attention_mask(seg, parent, valid), want)


def test_packed_tree_logprobs_equal_path_logprobs(model):
    cfg, params = model
    # Prompt [5, 6, 7] (one padding column first); segment a = [8, 9] (child of the
    # prompt), b = [10] (child of the prompt), c = [11, 12] (child of a).
    tokens = jnp.array([[0, 5, 6, 7, 8, 9, 10, 11, 12]])
    valid = jnp.array([[False, True, True, True, True, True, True, True, True]])
    seg = jnp.array([0, 0, 0, 0, 1, 1, 2, 3, 3])
    parent = jnp.array([-1, 0, 0, 1])
    mask = models.tree_attention_mask(seg, parent, valid[0])[None]
    positions = jnp.array([[0, 0, 1, 2, 3, 4, 3, 5, 6]])       # restarted after each branch point
    predictor = jnp.array([[0, 0, 1, 2, 3, 4, 3, 5, 7]])       # the previous token on the token's own path
    target = jnp.array([[False] * 4 + [True] * 5])
    lp = models.packed_logprobs(params, cfg, tokens, positions, mask, predictor, target)
    # Reference: each root-to-leaf path as a plain left-padded row.
    prompt = jnp.array([[0, 5, 6, 7]] * 2)
    pmask = jnp.array([[False, True, True, True]] * 2)
    paths = jnp.array([[8, 9, 11, 12], [10, 0, 0, 0]])
    pmask_c = jnp.array([[True] * 4, [True, False, False, False]])
    ref = models.completion_logprobs(params, cfg, prompt, pmask, paths, pmask_c)
    np.testing.assert_allclose(lp[0, 4:6], ref[0, :2], rtol=1e-5, atol=1e-6)     # a
    np.testing.assert_allclose(lp[0, 7:9], ref[0, 2:4], rtol=1e-5, atol=1e-6)    # c
    np.testing.assert_allclose(lp[0, 6], ref[1, 0], rtol=1e-5, atol=1e-6)        # b
    np.testing.assert_array_equal(lp[0, :4], 0.0)
