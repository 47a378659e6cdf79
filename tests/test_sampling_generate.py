"""The KV-cache sampler: group sampling, greedy decoding, prefix continuation, RNG,
top-k / top-p, recompilation, and 8-device sharding.

References: the model's own full forward without a cache (an independent code path:
scanned layers, [B, L, L] masked attention) re-run on the sampled sequences, the
trainer's `completion_logprobs`, hand-derived filter cases, and exact categorical
probabilities for the sampling-frequency checks.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rlx import models, parallel, sampling
from rlx.sampling import sampler as sampler_mod
from rlx.types import FinishReason

V = 64
LP = 6


@pytest.fixture(scope="module")
def model():
    cfg = models.tiny(V, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                      family="qwen2")
    params = models.init_params(cfg, jax.random.key(0))
    # Sharper distributions than the 0.02 init, so that greedy decoding has clear winners.
    params = jax.tree.map(lambda x: x * 6 if x.ndim >= 2 else x, params)
    return cfg, params


def _prompts(P=3, L=LP, seed=0):
    rng = np.random.default_rng(seed)
    toks = rng.integers(3, V, size=(P, L)).astype(np.int32)
    mask = np.ones((P, L), bool)
    for p in range(P):                       # different amounts of left padding
        mask[p, :p % L] = False
        toks[p, :p % L] = 0
    return jnp.asarray(toks), jnp.asarray(mask)


def _full_logits(params, cfg, out):
    """Uncached forward over [prompt, completion]: logits predicting completion token t."""
    toks = jnp.concatenate([out.prompt_tokens, out.completion_tokens], axis=1)
    mask = jnp.concatenate([out.prompt_mask, out.completion_mask], axis=1)
    Lp, T = out.prompt_tokens.shape[1], out.completion_tokens.shape[1]
    return models.forward(params, cfg, toks, attention_mask_BL=mask)[:, Lp - 1:Lp - 1 + T]


SAMPLE = sampling.SamplerConfig(max_prompt_len=LP, max_new_tokens=8, temperature=1.0, stop_ids=(5, 6), pad_id=0)
GREEDY = sampling.SamplerConfig(max_prompt_len=LP, max_new_tokens=8, temperature=0.0, pad_id=0)


def test_group_sampling_matches_the_trainer(model):
    cfg, params = model
    toks, mask = _prompts()
    out, _ = sampling.generate(params, cfg, SAMPLE, sampling.init_state(jax.random.key(3)), toks, mask, 4)
    assert out.completion_tokens.shape == (12, 8) and out.prompt_tokens.shape == (12, LP)
    for r in range(12):                                          # row p*G+g = sample g of prompt p
        np.testing.assert_array_equal(out.prompt_tokens[r], toks[r // 4])
        np.testing.assert_array_equal(out.prompt_mask[r], mask[r // 4])
    trainer = models.completion_logprobs(params, cfg, out.prompt_tokens, out.prompt_mask, out.completion_tokens,
                                         out.completion_mask)
    np.testing.assert_allclose(out.logprobs, trainer, atol=1e-5, rtol=1e-5)
    # Temperature 1 without filters: the sampled distribution is the policy.
    np.testing.assert_allclose(out.sampling_logprobs, out.logprobs, atol=1e-6)
    tok, msk, lengths = (np.asarray(x) for x in (out.completion_tokens, out.completion_mask, out.lengths))
    np.testing.assert_array_equal(lengths, msk.sum(1))
    n_stop = 0
    for r in range(12):
        assert msk[r, :lengths[r]].all() and not msk[r, lengths[r]:].any()     # right-padded
        assert (tok[r, lengths[r]:] == 0).all()                                # pad_id after the end
        stops = np.flatnonzero(np.isin(tok[r, :lengths[r]], [5, 6]))
        if int(out.finish_reason[r]) == FinishReason.STOP:
            n_stop += 1
            np.testing.assert_array_equal(stops, [lengths[r] - 1])              # the stop token ends it
        else:
            assert lengths[r] == 8 and stops.size == 0
    assert 0 < n_stop < 12
    assert not np.array_equal(tok[0], tok[1])                                  # samples of a group differ


def test_greedy_equals_uncached_argmax_and_stops_at_eos(model):
    cfg, params = model
    toks, mask = _prompts()
    out, _ = sampling.generate(params, cfg, GREEDY, sampling.init_state(jax.random.key(0)), toks, mask, 2)
    again, _ = sampling.generate(params, cfg, GREEDY, sampling.init_state(jax.random.key(1)), toks, mask, 2)
    np.testing.assert_array_equal(out.completion_tokens, again.completion_tokens)   # no randomness in greedy
    np.testing.assert_array_equal(out.completion_tokens[0::2], out.completion_tokens[1::2])
    assert np.all(np.asarray(out.lengths) == 8) and np.all(np.asarray(out.finish_reason) == FinishReason.LENGTH)
    np.testing.assert_array_equal(out.sampling_logprobs, 0.0)                        # log 1
    # Independent reference: every greedy token is the argmax of the uncached forward.
    logits = _full_logits(params, cfg, out)
    np.testing.assert_array_equal(out.completion_tokens, jnp.argmax(logits, -1))
    # Make the 4th greedy token of row 0 a stop token: row 0 must end right there.
    row = np.asarray(out.completion_tokens[0])
    k = int(np.flatnonzero(row == row[3])[0])
    scfg = GREEDY.replace(stop_ids=(int(row[3]),))
    c, _ = sampling.generate(params, cfg, scfg, sampling.init_state(jax.random.key(0)), toks, mask, 2)
    assert int(c.lengths[0]) == k + 1 and int(c.finish_reason[0]) == FinishReason.STOP
    np.testing.assert_array_equal(c.completion_tokens[0, :k + 1], row[:k + 1])
    assert not np.any(np.asarray(c.completion_mask[0, k + 1:]))


def test_continue_from_equals_the_forced_prefix(model):
    cfg, params = model
    toks, mask = _prompts()
    st = sampling.init_state(jax.random.key(0))
    full, _ = sampling.generate(params, cfg, GREEDY, st, toks, mask, 1)
    cuts = [0, 3, 8]
    cont, st2 = sampling.continue_from(params, cfg, GREEDY, st, toks, mask, full.completion_tokens,
                                       jnp.array(cuts), 2)
    assert cont.prompt_tokens.shape == (6, LP + 8) and cont.completion_tokens.shape == (6, 8)
    assert not np.array_equal(np.asarray(st.rng), np.asarray(st2.rng))
    for n, c in enumerate(cuts):
        for k in range(2):
            r = n * 2 + k
            assert int(cont.lengths[r]) == 8 - c                                 # the budget is T - c
            np.testing.assert_array_equal(cont.completion_tokens[r, :8 - c], full.completion_tokens[n, c:])
            np.testing.assert_allclose(cont.logprobs[r, :8 - c], full.logprobs[n, c:], atol=1e-5, rtol=1e-5)
            # The prefix row holds prompt + the first c tokens, flush right.
            real = np.asarray(cont.prompt_tokens[r])[np.asarray(cont.prompt_mask[r])]
            want = np.concatenate([np.asarray(toks[n])[np.asarray(mask[n])], np.asarray(full.completion_tokens[n, :c])])
            np.testing.assert_array_equal(real, want)
    # Sampled continuations are scored by the trainer on (prefix, continuation) rows.
    samp, _ = sampling.continue_from(params, cfg, SAMPLE, st, toks, mask, full.completion_tokens, jnp.array(cuts), 3)
    trainer = models.completion_logprobs(params, cfg, samp.prompt_tokens, samp.prompt_mask, samp.completion_tokens,
                                         samp.completion_mask)
    np.testing.assert_allclose(samp.logprobs, trainer, atol=1e-5, rtol=1e-5)
    assert np.all(np.asarray(samp.lengths) <= 8 - np.repeat(cuts, 3))


def test_rng_advances_and_nothing_recompiles(model):
    cfg, params = model
    toks, mask = _prompts()
    st0 = sampling.init_state(jax.random.key(0))
    a, st1 = sampling.generate(params, cfg, SAMPLE, st0, toks, mask, 4)
    n_compiled = sampler_mod._generate._cache_size()
    b, st2 = sampling.generate(params, cfg, SAMPLE, st1, toks, mask, 4)
    assert not np.array_equal(np.asarray(st0.rng), np.asarray(st1.rng))
    assert not np.array_equal(np.asarray(st1.rng), np.asarray(st2.rng))
    assert not np.array_equal(np.asarray(a.completion_tokens), np.asarray(b.completion_tokens))
    a2, _ = sampling.generate(params, cfg, SAMPLE, st0, toks, mask, 4)      # the same state replays
    np.testing.assert_array_equal(a.completion_tokens, a2.completion_tokens)
    # New prompts, narrower prompts (left-padded to max_prompt_len), new params: no recompile.
    t2, m2 = _prompts(seed=9, L=4)
    c, _ = sampling.generate(jax.tree.map(lambda x: x * 1.01, params), cfg, SAMPLE, st2, t2, m2, 4)
    assert c.prompt_tokens.shape == (12, LP) and not np.any(np.asarray(c.prompt_mask[:, :2]))
    assert sampler_mod._generate._cache_size() == n_compiled


def test_filters_hand_cases():
    z = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    drop = lambda **kw: np.isinf(np.asarray(sampling.filter_logits(z, **kw)))[0].tolist()  # noqa: E731
    assert drop(top_k=2) == [False, False, True, True]
    # top_p = 0.7: the mass above 0.3 is 0.5 < 0.7 (kept); above 0.15 it is 0.8 (dropped).
    assert drop(top_p=0.7) == [False, False, True, True]
    # top_p = 0.5: the mass above 0.3 is 0.5, not < 0.5: only the top token survives.
    assert drop(top_p=0.5) == [False, True, True, True]
    assert drop(top_p=0.99) == [False] * 4                   # the mass above 0.05 is 0.95 < 0.99
    # top_k = 3 renormalizes to [0.526, 0.316, 0.158]: top_p = 0.8 keeps 2 (0.842 >= 0.8).
    assert drop(top_k=3, top_p=0.8) == [False, False, True, True]
    assert drop(top_k=3, top_p=0.85) == [False, False, False, True]   # 0.842 < 0.85: third kept
    ties = jnp.array([[1.0, 2.0, 2.0, 0.0]])
    assert np.isinf(np.asarray(sampling.filter_logits(ties, top_k=1)))[0].tolist() == [True, False, False, True]


def test_top_p_without_a_sort_matches_the_sorted_rule():
    # Reference: numpy in float64, each row sorted descending, a token kept iff the mass of
    # the strictly larger logits is < top_p (ties: one value). Rows with ties, -inf entries
    # (already filtered) and a peaked row; draws whose masses come within 2e-6 of top_p are
    # left out (there float32 rounding may decide either way) and counted.
    rng = np.random.default_rng(0)
    z = rng.normal(size=(64, 300)).astype(np.float32) * rng.uniform(0.5, 4, size=(64, 1)).astype(np.float32)
    z[:8, :40] = np.round(z[:8, :40])                        # ties
    z[8:16, ::3] = -np.inf
    z[16, 0] = 30.0                                          # one token holds all the mass
    near = 0
    for top_p in (0.1, 0.5, 0.9, 0.999):
        got = ~np.isinf(np.asarray(sampling.filter_logits(jnp.asarray(z), top_p=top_p)))
        for row, g in zip(z.astype(np.float64), got):
            p = np.exp(row - row.max())
            p /= p.sum()
            above = np.array([p[row > v].sum() for v in row])
            if np.any(np.abs(above[np.isfinite(row)] - top_p) < 2e-6):
                near += 1
                continue
            np.testing.assert_array_equal(g, np.isfinite(row) & (above < top_p))
    assert near <= 16, near                                  # of 256 row draws (5 seen)


def test_categorical_frequencies():
    # Exact probabilities over V = 300 (3 blocks of 128, the last partial), with -inf
    # entries (filtered tokens) that must never be drawn.
    p = np.zeros(300)
    p[[0, 7, 127, 128, 200, 299]] = [0.1, 0.25, 0.05, 0.3, 0.2, 0.1]
    z = jnp.where(jnp.asarray(p) > 0, jnp.log(jnp.asarray(p, jnp.float32)), -jnp.inf)
    n = 40000
    draws = sampling.sample_categorical(jax.random.key(0), jnp.broadcast_to(z, (n, 300)))
    freq = np.bincount(np.asarray(draws), minlength=300) / n
    assert set(np.flatnonzero(freq)) <= set(np.flatnonzero(p))
    # 5 binomial standard deviations at n = 40000 (sd <= 0.0025).
    np.testing.assert_allclose(freq, p, atol=0.0125)
    assert int(sampling.argmax(jnp.array([[0.0, 3.0, 3.0, 1.0]]))[0]) == 1


def test_top_k_top_p_and_temperature_sampling_logprobs(model):
    cfg, params = model
    toks, mask = _prompts()
    for scfg in (SAMPLE.replace(top_k=3, temperature=0.7), SAMPLE.replace(top_p=0.6)):
        out, _ = sampling.generate(params, cfg, scfg, sampling.init_state(jax.random.key(7)), toks, mask, 4)
        z = _full_logits(params, cfg, out) / scfg.temperature
        logp = jax.nn.log_softmax(z, -1)
        tok_lp = jnp.take_along_axis(logp, out.completion_tokens[..., None], -1)[..., 0]
        m = np.asarray(out.completion_mask)
        if scfg.top_k:
            # Every sampled token is among the 3 most likely, and its sampling log-prob
            # is log p / (p1 + p2 + p3) (the renormalized top-3 distribution).
            top = jax.lax.top_k(logp, 3)[0]
            assert np.all(np.asarray(tok_lp >= top[..., 2] - 1e-5)[m])
            expect = tok_lp - jax.nn.logsumexp(top, -1)
        else:
            # Nucleus: the kept set is the smallest top set with mass >= 0.6; a sampled
            # token has less than 0.6 of the mass strictly above it.
            p = jnp.exp(logp)
            above = jnp.sum(jnp.where(p > jnp.exp(tok_lp)[..., None], p, 0.0), -1)
            assert np.all(np.asarray(above < 0.6 + 1e-5)[m])
            kept = jnp.where(jnp.cumsum(jnp.sort(p, -1)[..., ::-1], -1) - jnp.sort(p, -1)[..., ::-1] < 0.6,
                             jnp.sort(p, -1)[..., ::-1], 0.0).sum(-1)
            expect = tok_lp - jnp.log(kept)
        np.testing.assert_allclose(np.asarray(out.sampling_logprobs)[m], np.asarray(expect)[m], atol=1e-4)
        # The policy log-probs stay those of the untempered, unfiltered policy.
        trainer = models.completion_logprobs(params, cfg, out.prompt_tokens, out.prompt_mask,
                                             out.completion_tokens, out.completion_mask)
        np.testing.assert_allclose(out.logprobs, trainer, atol=1e-5, rtol=1e-5)


def test_sharded_greedy_equals_one_device(model, devices8):
    cfg, params = model
    toks, mask = _prompts(P=8, seed=5)
    st = sampling.init_state(jax.random.key(0))
    ref, _ = sampling.generate(params, cfg, GREEDY, st, toks, mask, 2)
    # A minimal rules table: batch and cache batch over "data", heads / MLP / vocab over
    # "tensor", everything else replicated.
    rules = (("batch", "data"), ("cache_batch", "data"), ("vocab", "tensor"), ("embed", None),
             ("q_heads", "tensor"), ("kv_heads", "tensor"), ("head_dim", None), ("mlp", "tensor"),
             ("norm", None), ("layers", None), ("length", None), ("act_embed", None), ("act_heads", "tensor"),
             ("act_kv_heads", "tensor"), ("act_mlp", "tensor"), ("act_vocab", "tensor"), ("cache_length", None),
             ("cache_kv_heads", "tensor"), ("cache_head_dim", None))
    for shape in ((8, 1), (4, 2)):
        mesh = Mesh(np.array(devices8).reshape(shape), ("data", "tensor"))
        with parallel.use_rules(mesh, rules):
            p = jax.device_put(params, parallel.tree_shardings(params, models.param_logical_axes(cfg), mesh, rules))
            t = jax.device_put(toks, NamedSharding(mesh, P("data", None)))
            m = jax.device_put(mask, NamedSharding(mesh, P("data", None)))
            out, _ = sampling.generate(p, cfg, GREEDY, st, t, m, 2)
        assert len(out.completion_tokens.sharding.device_set) == 8
        np.testing.assert_array_equal(out.completion_tokens, ref.completion_tokens)
        np.testing.assert_allclose(out.logprobs, ref.logprobs, atol=1e-5)


def test_validation(model):
    cfg, params = model
    for kw, field in ((dict(top_p=0.0), "top_p"), (dict(max_new_tokens=0), "max_new_tokens"),
                      (dict(temperature=-1.0), "temperature"), (dict(top_k=-2), "top_k"),
                      (dict(stop_ids=(-1,)), "stop_ids"), (dict(pad_id=-1), "pad_id")):
        with pytest.raises(ValueError, match=f"SamplerConfig.{field}"):
            sampling.SamplerConfig(**{**dict(max_prompt_len=4, max_new_tokens=4), **kw})
    assert hash(SAMPLE) == hash(SAMPLE.replace())
    toks, mask = _prompts(L=LP + 1)
    st = sampling.init_state(jax.random.key(0))
    with pytest.raises(ValueError, match="max_prompt_len"):
        sampling.generate(params, cfg, SAMPLE, st, toks, mask, 2)
    with pytest.raises(ValueError, match="group_size"):
        sampling.generate(params, cfg, SAMPLE, st, toks[:, 1:], mask[:, 1:], 0)
    with pytest.raises(ValueError, match="prompt_tokens / prompt_mask"):
        sampling.generate(params, cfg, SAMPLE, st, toks[:, 1:], mask, 2)
    with pytest.raises(ValueError, match="prefix_len_N"):
        sampling.continue_from(params, cfg, SAMPLE, st, toks[:, 1:], mask[:, 1:], jnp.zeros((3, 8), jnp.int32),
                               jnp.zeros(2, jnp.int32), 2)


def test_chunked_rollouts_give_the_same_samples(model):
    # rows_per_call splits a call into chunks of whole prompts (the last one padded);
    # randomness is per row (fold_in of the row id and the token index), so the samples,
    # log-probs and finish reasons equal one call's for the same state — and the state
    # advances once per call either way.
    cfg, params = model
    toks, mask = _prompts(P=5, seed=3)
    st = sampling.init_state(jax.random.key(4))
    # Every chunk width with plain sampling; the filtered sampler at one width (the chunking
    # does not depend on the filter, and each width is a compile).
    for scfg, widths in ((SAMPLE, (3, 6, 12)), (SAMPLE.replace(top_k=5, temperature=0.8), (6,))):
        whole, st_w = sampling.generate(params, cfg, scfg, st, toks, mask, 3)
        for rows in widths:                               # 1, 2 and 4 prompts per call (5 = 4 + 1 padded)
            got, st_c = sampling.generate(params, cfg, scfg.replace(rows_per_call=rows), st,
                                          np.asarray(toks), np.asarray(mask), 3)
            for f in ("prompt_tokens", "prompt_mask", "completion_tokens", "completion_mask", "lengths",
                      "finish_reason"):
                np.testing.assert_array_equal(getattr(got, f), getattr(whole, f), err_msg=f"{f} rows={rows}")
            np.testing.assert_allclose(got.logprobs, whole.logprobs, atol=1e-6, rtol=0)
            np.testing.assert_array_equal(st_c.rng, st_w.rng)
    # Row r's tokens do not depend on the other rows: the same prompt as row 0 of a
    # one-prompt call reproduces the first group.
    whole, _ = sampling.generate(params, cfg, SAMPLE, st, toks, mask, 3)
    one, _ = sampling.generate(params, cfg, SAMPLE, st, toks[:1], mask[:1], 3)
    np.testing.assert_array_equal(one.completion_tokens, whole.completion_tokens[:3])
    # prefix continuation, chunked the same way
    cuts = jnp.array([0, 2, 5, 1, 3])
    c1, _ = sampling.continue_from(params, cfg, SAMPLE, st, toks, mask, whole.completion_tokens[::3], cuts, 2)
    c2, _ = sampling.continue_from(params, cfg, SAMPLE.replace(rows_per_call=4), st, np.asarray(toks),
                                   np.asarray(mask), np.asarray(whole.completion_tokens[::3]), np.asarray(cuts), 2)
    for f in ("prompt_tokens", "completion_tokens", "completion_mask", "finish_reason"):
        np.testing.assert_array_equal(getattr(c2, f), getattr(c1, f), err_msg=f)
    # one compiled program per chunk shape, reused by every chunk
    n = sampler_mod._generate._cache_size()
    sampling.generate(params, cfg, SAMPLE.replace(rows_per_call=6), st, np.asarray(toks), np.asarray(mask), 3)
    assert sampler_mod._generate._cache_size() == n
