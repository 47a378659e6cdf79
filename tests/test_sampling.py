"""Sampler, KV cache, prefix continuation, tree sampling and the shared-prefix forward.

References are the model's own full (uncached) forward — an independent code path
for attention over explicit masks — and hand-derived filter cases.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import models, parallel, sampling
from rlx.types import FinishReason

V = 40


@pytest.fixture(scope="module")
def model():
    cfg = models.tiny(V, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                      family="qwen2")
    params = models.init_params(cfg, jax.random.key(0))
    # Sharper distributions than the 0.02 init, so greedy decoding has clear winners.
    params = jax.tree.map(lambda x: x * 8 if x.ndim >= 2 else x, params)
    return cfg, params


def _prompts(P=3, L=6, seed=0):
    rng = np.random.default_rng(seed)
    toks = rng.integers(3, V, size=(P, L)).astype(np.int32)
    mask = np.ones((P, L), bool)
    for p in range(P):                       # different amounts of left padding
        mask[p, :p] = False
        toks[p, :p] = 0
    return jnp.asarray(toks), jnp.asarray(mask)


def test_cached_decode_equals_full_forward(model):
    cfg, params = model
    toks, mask = _prompts()
    rng = np.random.default_rng(1)
    cont = jnp.asarray(rng.integers(3, V, size=(3, 5)), jnp.int32)
    full_t = jnp.concatenate([toks, cont], axis=1)
    full_m = jnp.concatenate([mask, jnp.ones((3, 5), bool)], axis=1)
    ref = models.forward(params, cfg, full_t, attention_mask_BL=full_m)            # [3, 11, V]
    cache = models.init_cache(cfg, 3, 11)
    logits, cache, pos = models.prefill(params, cfg, toks, mask, cache)
    np.testing.assert_allclose(logits, ref[:, 5], atol=1e-5, rtol=0)
    key_mask = full_m.at[:, 6:].set(False)
    for t in range(5):
        key_mask = key_mask.at[:, 6 + t].set(True)
        logits, cache = models.decode_step(params, cfg, cont[:, t], pos + t, cache, key_mask, 6 + t)
        np.testing.assert_allclose(logits, ref[:, 6 + t], atol=1e-5, rtol=0)


def test_sampler_logprobs_equal_trainer_logprobs(model):
    cfg, params = model
    toks, mask = _prompts()
    scfg = sampling.SamplerConfig(max_prompt_len=6, max_new_tokens=8, temperature=1.0, stop_ids=(5,))
    out, _ = sampling.generate(params, cfg, scfg, sampling.init_state(jax.random.key(3)), toks, mask, 4)
    assert out.completion_tokens.shape == (12, 8) and out.prompt_tokens.shape == (12, 6)
    np.testing.assert_array_equal(out.prompt_tokens[4], toks[1])      # row p*G+g = sample g of prompt p
    trainer = models.completion_logprobs(params, cfg, out.prompt_tokens, out.prompt_mask,
                                         out.completion_tokens, out.completion_mask)
    np.testing.assert_allclose(trainer, out.logprobs, atol=1e-5, rtol=0)
    # At temperature 1 without filters, the sampled distribution is the policy.
    np.testing.assert_allclose(out.sampling_logprobs, out.logprobs, atol=1e-5, rtol=0)
    lengths = np.asarray(out.lengths)
    np.testing.assert_array_equal(lengths, np.asarray(out.completion_mask).sum(1))
    for r in range(12):  # finish reasons agree with the tokens
        stopped = 5 in np.asarray(out.completion_tokens[r, :lengths[r]])
        assert int(out.finish_reason[r]) == (FinishReason.STOP if stopped else FinishReason.LENGTH)


def test_greedy_is_deterministic_and_stops_at_eos(model):
    cfg, params = model
    toks, mask = _prompts()
    scfg = sampling.SamplerConfig(max_prompt_len=6, max_new_tokens=10, temperature=0.0)
    a, _ = sampling.generate(params, cfg, scfg, sampling.init_state(jax.random.key(0)), toks, mask, 2)
    b, _ = sampling.generate(params, cfg, scfg, sampling.init_state(jax.random.key(1)), toks, mask, 2)
    np.testing.assert_array_equal(a.completion_tokens, b.completion_tokens)
    np.testing.assert_array_equal(a.completion_tokens[0], a.completion_tokens[1])  # greedy: same per group
    assert int(a.lengths[0]) == 10 and int(a.finish_reason[0]) == FinishReason.LENGTH
    # Make the 4th greedy token of row 0 a stop token: row 0 must stop right after it.
    row = np.asarray(a.completion_tokens[0])
    stop = int(row[3])
    k = int(np.flatnonzero(row == stop)[0])
    scfg2 = sampling.SamplerConfig(max_prompt_len=6, max_new_tokens=10, temperature=0.0, stop_ids=(stop,), pad_id=0)
    c, _ = sampling.generate(params, cfg, scfg2, sampling.init_state(jax.random.key(0)), toks, mask, 2)
    assert int(c.lengths[0]) == k + 1 and int(c.finish_reason[0]) == FinishReason.STOP
    np.testing.assert_array_equal(c.completion_tokens[0, :k + 1], row[:k + 1])
    assert np.all(np.asarray(c.completion_tokens[0, k + 1:]) == 0)
    assert not np.any(np.asarray(c.completion_mask[0, k + 1:]))


def test_continue_from_prefix_equals_forced_prefix(model):
    cfg, params = model
    toks, mask = _prompts()
    scfg = sampling.SamplerConfig(max_prompt_len=6, max_new_tokens=9, temperature=0.0)
    st = sampling.init_state(jax.random.key(0))
    full, _ = sampling.generate(params, cfg, scfg, st, toks, mask, 1)
    cuts = jnp.array([0, 4, 7], jnp.int32)
    cont, _ = sampling.continue_from(params, cfg, scfg, st, toks, mask, full.completion_tokens, cuts, 2)
    for n, c in enumerate([0, 4, 7]):
        for k in range(2):
            r = n * 2 + k
            got = np.asarray(cont.completion_tokens[r, :int(cont.lengths[r])])
            np.testing.assert_array_equal(got, np.asarray(full.completion_tokens[n, c:]))
            np.testing.assert_allclose(cont.logprobs[r, :9 - c], full.logprobs[n, c:], atol=1e-5)
    assert cont.prompt_tokens.shape == (6, 15)


def test_rng_advances_every_call(model):
    cfg, params = model
    toks, mask = _prompts()
    scfg = sampling.SamplerConfig(max_prompt_len=6, max_new_tokens=8, temperature=1.0)
    st0 = sampling.init_state(jax.random.key(0))
    a, st1 = sampling.generate(params, cfg, scfg, st0, toks, mask, 4)
    b, st2 = sampling.generate(params, cfg, scfg, st1, toks, mask, 4)
    assert not np.array_equal(np.asarray(st0.rng), np.asarray(st1.rng))
    assert not np.array_equal(np.asarray(a.completion_tokens), np.asarray(b.completion_tokens))
    a2, _ = sampling.generate(params, cfg, scfg, st0, toks, mask, 4)     # same state -> same samples
    np.testing.assert_array_equal(a.completion_tokens, a2.completion_tokens)


def test_filters_hand_cases():
    # probs [0.5, 0.3, 0.15, 0.05] (logits = their logs).
    z = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    ninf = -np.inf
    np.testing.assert_array_equal(np.isinf(sampling.filter_logits(z, top_k=2)), [[False, False, True, True]])
    # top_p=0.7: mass above 0.3 is 0.5 < 0.7 (keep); above 0.15 is 0.8 >= 0.7 (drop).
    np.testing.assert_array_equal(np.isinf(sampling.filter_logits(z, top_p=0.7)), [[False, False, True, True]])
    # top_p=0.5: the mass above 0.3 is 0.5, not < 0.5: only the top token survives.
    np.testing.assert_array_equal(np.isinf(sampling.filter_logits(z, top_p=0.5)), [[False, True, True, True]])
    # top_p=0.99 keeps all four (mass above 0.05 is 0.95).
    assert not np.any(np.isinf(sampling.filter_logits(z, top_p=0.99)))
    out = sampling.filter_logits(z, top_k=3, top_p=0.7)
    assert out[0, 3] == ninf and out[0, 2] == ninf and np.isfinite(out[0, 1])


def test_top_k_sampling_logprobs(model):
    cfg, params = model
    toks, mask = _prompts()
    scfg = sampling.SamplerConfig(max_prompt_len=6, max_new_tokens=6, temperature=1.0, top_k=2)
    out, _ = sampling.generate(params, cfg, scfg, sampling.init_state(jax.random.key(7)), toks, mask, 4)
    full_t = jnp.concatenate([out.prompt_tokens, out.completion_tokens], axis=1)
    full_m = jnp.concatenate([out.prompt_mask, out.completion_mask], axis=1)
    logits = models.forward(params, cfg, full_t, attention_mask_BL=full_m)[:, 5:11]
    logp = jax.nn.log_softmax(logits, -1)
    top2 = jax.lax.top_k(logp, 2)[0]
    tok_lp = jnp.take_along_axis(logp, out.completion_tokens[..., None], -1)[..., 0]
    m = np.asarray(out.completion_mask)
    # Every sampled token is one of the two most likely, and its sampling log-prob is
    # log p / (p1 + p2) (renormalized over the kept set).
    assert np.all(np.asarray(tok_lp >= top2[..., 1] - 1e-6)[m])
    expect = tok_lp - jax.nn.logsumexp(top2, -1)
    np.testing.assert_allclose(np.asarray(out.sampling_logprobs)[m], np.asarray(expect)[m], atol=1e-5)


def test_sharded_greedy_equals_one_device(model, devices8):
    cfg, params = model
    toks, mask = _prompts(P=8, seed=5)
    scfg = sampling.SamplerConfig(max_prompt_len=6, max_new_tokens=7, temperature=0.0)
    st = sampling.init_state(jax.random.key(0))
    ref, _ = sampling.generate(params, cfg, scfg, st, toks, mask, 2)
    for shape, rules in (((8, 1, 1), "fsdp"), ((2, 2, 2), "fsdp_tp")):
        mesh = parallel.make_mesh(shape, devices8)
        rt = parallel.get_rules(rules)
        with parallel.use_rules(mesh, rt):
            p = jax.device_put(params, parallel.tree_shardings(params, models.param_logical_axes(cfg), mesh, rt))
            t = jax.device_put(toks, parallel.batch_sharding(mesh, 2, 8))
            m = jax.device_put(mask, parallel.batch_sharding(mesh, 2, 8))
            out, _ = sampling.generate(p, cfg, scfg, st, t, m, 2)
        np.testing.assert_array_equal(out.completion_tokens, ref.completion_tokens)
        np.testing.assert_allclose(out.logprobs, ref.logprobs, atol=1e-5)


def test_tree_arrays_are_consistent(model):
    cfg, params = model
    toks, mask = _prompts(P=2)
    scfg = sampling.SamplerConfig(max_prompt_len=6, max_new_tokens=9, temperature=1.0, stop_ids=(7, 8, 9))
    tree, st = sampling.sample_tree(params, cfg, scfg, sampling.init_state(jax.random.key(2)), toks, mask,
                                    branching=(2, 3, 2), segment_len=3)
    assert [t.shape for t in tree.tokens] == [(4, 3), (12, 3), (24, 3)]
    n_finished = 0
    for d in range(3):
        parent = np.asarray(tree.parent[d])
        np.testing.assert_array_equal(parent, np.arange(parent.size) // tree.branching[d])  # one level up
        valid, fin = np.asarray(tree.valid[d]), np.asarray(tree.finished[d])
        msk = np.asarray(tree.mask[d])
        assert not msk[~valid].any()                      # invalid nodes generate nothing
        if d > 0:
            pv, pf = np.asarray(tree.valid[d - 1]), np.asarray(tree.finished[d - 1])
            np.testing.assert_array_equal(valid, (pv & ~pf)[parent])   # children of leaves don't exist
        # A node is a leaf iff finished here (stop token) or at the max depth.
        leaf = fin | (valid & (d == 2))
        np.testing.assert_array_equal(np.asarray(tree.truncated[d]), valid & ~fin & (d == 2))
        stop_in = np.isin(np.asarray(tree.tokens[d]), [7, 8, 9]) & msk
        np.testing.assert_array_equal(fin, valid & stop_in.any(1))
        assert np.all(msk[valid & ~fin].sum(1) == 3)       # unfinished segments are full
        n_finished += int(fin.sum())
        del leaf
    assert n_finished > 0
    # Each node's log-probs equal the trainer's on (query = prompt + ancestors, response).
    for d in range(3):
        q, qm, r, rm, lp = sampling.node_sequences(tree, d)
        assert q.shape == (toks.shape[0] * int(np.prod(tree.branching[:d + 1])), 6 + 3 * d)
        trainer = models.completion_logprobs(params, cfg, q, qm, r, rm)
        np.testing.assert_allclose(trainer, lp, atol=1e-5)


def test_shared_prefix_equals_repeated_prefix(model):
    cfg, _ = model
    params = models.init_params(cfg, jax.random.key(1))    # unscaled init: float32 sums stay tight
    toks, mask = _prompts(P=1, L=8)
    rng = np.random.default_rng(4)
    G, T = 4, 5
    comp = jnp.asarray(rng.integers(3, V, size=(G, T)), jnp.int32)
    cmask = jnp.asarray(np.arange(T)[None, :] < np.array([[5], [3], [1], [4]]))

    def shared(p):
        return models.shared_prefix_logprobs(p, cfg, toks[0], mask[0], comp, cmask)

    def repeated(p):
        return models.completion_logprobs(p, cfg, jnp.repeat(toks, G, 0), jnp.repeat(mask, G, 0), comp, cmask)

    np.testing.assert_allclose(shared(params), repeated(params), rtol=1e-5, atol=1e-6)
    g1 = jax.grad(lambda p: jnp.sum(shared(p) * jnp.arange(1.0, T + 1)[None]))(params)
    g2 = jax.grad(lambda p: jnp.sum(repeated(p) * jnp.arange(1.0, T + 1)[None]))(params)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_sampler_config_validation():
    with pytest.raises(ValueError, match="SamplerConfig.top_p"):
        sampling.SamplerConfig(max_prompt_len=4, max_new_tokens=4, top_p=0.0)
    with pytest.raises(ValueError, match="SamplerConfig.max_new_tokens"):
        sampling.SamplerConfig(max_prompt_len=4, max_new_tokens=0)
    with pytest.raises(ValueError, match="leaves"):
        sampling.segment_lengths(8, 3, 4)
