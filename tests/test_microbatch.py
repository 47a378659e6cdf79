"""Row chunks (rlx.train.microbatch) and the micro-batched programs built on them: chunked
forwards equal the whole-batch forward, micro-batches smaller than a group give the
whole-minibatch update, the SFT step's accumulation is exact."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers.engine_configs import sgd_update

from rlx import models
from rlx.train.microbatch import map_rows, merge_rows, num_chunks, split_rows
from rlx.train.programs import make_sft_step
from rlx.train.update import UpdateSpec, make_logprobs_fn
from rlx.types import Batch


def test_split_rows_is_strided_and_merge_inverts_it():
    x = jnp.arange(12)
    # 3 chunks of units of 1: chunk j holds rows j, j+3, j+6, j+9 (written out by hand).
    np.testing.assert_array_equal(split_rows(x, 3), [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]])
    # units of 2 rows (a group of 2 stays together): units (0,1) (2,3) ... (10,11);
    # 2 chunks: units 0, 2, 4 and units 1, 3, 5.
    np.testing.assert_array_equal(split_rows(x, 2, unit=2), [[0, 1, 4, 5, 8, 9], [2, 3, 6, 7, 10, 11]])
    y = jnp.arange(24).reshape(12, 2)
    for n, u in ((1, 1), (3, 1), (4, 1), (2, 2), (3, 2), (2, 3)):
        np.testing.assert_array_equal(merge_rows(split_rows(y, n, u), u), y)
    with pytest.raises(ValueError, match="cannot be split"):
        split_rows(x, 5)


def test_num_chunks():
    assert num_chunks(1024, 64) == 16
    assert num_chunks(1024, 0) == 1 and num_chunks(8, 8) == 1 and num_chunks(8, 100) == 1
    assert num_chunks(100, 64) == 2                 # 2 chunks of 50 (at most 64 rows each)
    assert num_chunks(7, 2) == 7                    # 7 rows in chunks of <= 2: only 7 x 1 divides evenly
    assert num_chunks(32, 3, unit=4) == 8           # whole units of 4: chunks of 4 rows
    with pytest.raises(ValueError, match="whole number of units"):
        num_chunks(10, 2, unit=4)


def test_map_rows_equals_one_call():
    x = jnp.arange(24.0).reshape(8, 3)
    fn = lambda a, b: {"s": jnp.sum(a, 1) * b, "a": a * 2}        # noqa: E731 - row-wise
    b = jnp.arange(8.0)
    whole = fn(x, b)
    for rows in (1, 2, 3, 4, 8):
        got = map_rows(fn, rows, x, b)
        np.testing.assert_array_equal(got["s"], whole["s"])
        np.testing.assert_array_equal(got["a"], whole["a"])


@pytest.fixture(scope="module")
def model():
    cfg = models.tiny(40, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)
    return cfg, models.init_params(cfg, jax.random.key(0))


def _batch(B=16, Lp=6, T=5, seed=0):
    rng = np.random.default_rng(seed)
    pm = np.ones((B, Lp), bool)
    pm[::3, :2] = False                                   # left padding in some rows
    cm = np.arange(T)[None, :] < rng.integers(1, T + 1, size=(B, 1))
    return dict(prompt_tokens=rng.integers(3, 40, (B, Lp)).astype(np.int32), prompt_mask=pm,
                completion_tokens=rng.integers(3, 40, (B, T)).astype(np.int32), completion_mask=cm,
                advantages=rng.normal(size=(B, T)).astype(np.float32),
                old_logprobs=(-rng.random((B, T)) - 2.0).astype(np.float32),
                rewards=rng.random(B).astype(np.float32), valid=np.ones(B, bool))


@pytest.mark.parametrize("vocab_chunk", [0, 16])
def test_micro_batched_logprobs_equal_the_full_batch(model, vocab_chunk):
    cfg, params = model
    b = _batch()
    args = [jnp.asarray(b[k]) for k in ("prompt_tokens", "prompt_mask", "completion_tokens", "completion_mask")]
    full = jax.jit(make_logprobs_fn(cfg, vocab_chunk, 0))(params, *args)
    # the independent reference: rlx.models.completion_logprobs row by row
    rowwise = np.concatenate([np.asarray(models.completion_logprobs(params, cfg, *(a[i:i + 1] for a in args)))
                              for i in range(16)])
    np.testing.assert_allclose(full, rowwise, atol=2e-6, rtol=0)
    for rows in (1, 4, 5):               # 5 -> 4 chunks of 4 (rows must split 16 evenly)
        got = jax.jit(make_logprobs_fn(cfg, vocab_chunk, rows))(params, *args)
        np.testing.assert_allclose(got, full, atol=2e-6, rtol=0)


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_micro_batches_smaller_than_a_group(model, agg):
    # Groups of 8 rows, 2 minibatches of 8 rows; micro-batches of 2 rows (a quarter of a
    # group) accumulate to the one-micro-batch update: the global denominator makes the
    # token-level loss exact under any split of the rows.
    cfg, params = model
    b = _batch()
    base = UpdateSpec(loss="ppo_clip", agg=agg, group_size=8, minibatches=2, micro_batches=1, entropy_coef=0.01,
                      max_len=5)
    s1, m1 = sgd_update(cfg, params, base, b)
    s4, m4 = sgd_update(cfg, params, UpdateSpec(**{**base.__dict__, "micro_batches": 4}), b)
    for k in ("loss", "policy_loss", "entropy", "grad_norm"):
        np.testing.assert_allclose(m4[k], m1[k], rtol=2e-5, atol=1e-7)
    for x, y in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s4.params)):
        np.testing.assert_allclose(x, y, atol=2e-6, rtol=0)


def test_group_losses_keep_whole_groups(model):
    cfg, params = model
    b = _batch()
    spec = UpdateSpec(loss="disco", group_size=8, minibatches=1, micro_batches=4, max_len=5)
    with pytest.raises(ValueError, match="micro-batches of whole groups of 8"):
        sgd_update(cfg, params, spec, b)
    sgd_update(cfg, params, UpdateSpec(loss="disco", group_size=4, micro_batches=4, max_len=5), b)   # 4 x 1 group


def test_sft_step_accumulation_is_exact(model):
    # The micro-batched SFT step (chunks of 4 rows) takes the whole-batch gradient step of
    # the token-mean NLL, computed here directly with jax.grad.
    cfg, params = model
    b = _batch()
    args = [jnp.asarray(b[k]) for k in ("prompt_tokens", "prompt_mask", "completion_tokens", "completion_mask")]
    opt = optax.sgd(0.5)

    def nll(p):
        lp = models.completion_logprobs(p, cfg, *args)
        return -jnp.sum(jnp.where(args[3], lp, 0.0)) / jnp.sum(args[3])

    loss_ref, g = jax.jit(jax.value_and_grad(nll))(params)
    want = jax.tree.map(lambda p, gg: p - 0.5 * gg, params, g)
    for rows in (0, 4):
        new, _, loss = jax.jit(make_sft_step(cfg, opt, rows))(params, opt.init(params), *args)
        np.testing.assert_allclose(loss, loss_ref, rtol=1e-5)
        for x, y in zip(jax.tree.leaves(new), jax.tree.leaves(want)):
            np.testing.assert_allclose(x, y, atol=1e-6, rtol=0)


def test_preference_reference_in_chunks(model):
    # The reference's sequence log-probs of (prompt, chosen, rejected) pairs in chunks of 2
    # pairs equal the whole batch's (and rlx.models.completion_logprobs summed per row).
    from rlx.data.preference import PreferenceBatch
    from rlx.train.preference import make_pref_update
    cfg, params = model
    b = _batch(B=6)
    r = _batch(B=6, seed=1)
    pb = PreferenceBatch(*(jnp.asarray(x) for x in (b["prompt_tokens"], b["prompt_mask"], b["completion_tokens"],
                                                     b["completion_mask"], r["completion_tokens"],
                                                     r["completion_mask"], b["valid"])))
    outs = [jax.jit(make_pref_update(cfg, "dpo", (), optax.sgd(0.1), epochs=1, average=False,
                                     forward_rows=rows)[1])(params, pb) for rows in (0, 2)]
    want_c, want_r = (jnp.sum(models.completion_logprobs(params, cfg, pb.prompt_tokens, pb.prompt_mask, t, m), 1)
                      for t, m in ((pb.chosen_tokens, pb.chosen_mask), (pb.rejected_tokens, pb.rejected_mask)))
    for c, rj in outs:
        np.testing.assert_allclose(c, want_c, atol=2e-5, rtol=0)
        np.testing.assert_allclose(rj, want_r, atol=2e-5, rtol=0)


def test_critic_micro_batches_are_exact(model):
    # The critic update with 4 micro-batches per minibatch equals the one-micro-batch update
    # (gradients summed against the minibatch's global denominator).
    from rlx.train import critic as tcritic
    cfg, params = model
    b = _batch()
    batch = Batch.create(**{k: jnp.asarray(v) for k, v in b.items()})
    rng = np.random.default_rng(3)
    returns = jnp.asarray(rng.normal(size=(16, 5)), jnp.float32)
    old = jnp.asarray(rng.normal(size=(16, 5)) * 0.1, jnp.float32)
    opt = optax.sgd(0.3)
    cs = tcritic.init_critic(params, cfg, opt)
    out = {}
    for M in (1, 4):
        upd = jax.jit(tcritic.make_critic_update(cfg, opt, clip=0.2, agg="token-mean", epochs=1, minibatches=2,
                                                 group_size=4, micro_batches=M))
        out[M] = upd(cs, jax.random.key(0), batch, returns, old)
    np.testing.assert_allclose(out[4][1]["critic/loss"], out[1][1]["critic/loss"], rtol=1e-5)
    for x, y in zip(jax.tree.leaves(out[1][0].params), jax.tree.leaves(out[4][0].params)):
        np.testing.assert_allclose(x, y, atol=2e-6, rtol=0)
