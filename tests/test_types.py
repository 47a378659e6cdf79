"""Tests for rlx.types: validated constructors name the offending field and shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.types import Batch, FinishReason, Rollout


def _rollout_fields(P=2, G=3, Lp=4, T=5, C=None):
    B = P * G
    f = dict(
        group_size=G,
        prompt_tokens=np.arange(B * Lp).reshape(B, Lp),
        prompt_mask=np.ones((B, Lp), bool),
        completion_tokens=np.zeros((B, T), np.int64),
        completion_mask=np.tri(B, T, dtype=bool),
        logprobs=np.full((B, T), -0.5),
        rewards=np.arange(B, dtype=np.float64).reshape(P, G),
    )
    if C:
        f["reward_components"] = np.ones((C, P, G))
    return f


def test_rollout_create_converts_and_fills_defaults():
    r = Rollout.create(**_rollout_fields(C=2))
    assert r.completion_tokens.dtype == jnp.int32
    assert r.logprobs.dtype == jnp.float32 and r.rewards.dtype == jnp.float32
    assert r.valid.shape == (2, 3) and bool(r.valid.all())
    assert r.finish_reason.shape == (6,) and int(r.finish_reason[0]) == FinishReason.STOP
    np.testing.assert_array_equal(r.sampling_logprobs, r.logprobs)
    # Group layout: row p*G+g is sample g of prompt p.
    np.testing.assert_array_equal(r.grouped(jnp.arange(6)), [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(r.lengths, [1, 2, 3, 4, 5, 5])
    assert r.num_prompts == 2 and r.group_size == 3


def test_rollout_is_a_pytree_with_static_group_size():
    r = Rollout.create(**_rollout_fields())
    leaves, treedef = jax.tree_util.tree_flatten(r)
    assert all(isinstance(x, jax.Array) for x in leaves)
    r2 = jax.jit(lambda r: r.replace(rewards=r.rewards + 1))(r)
    assert r2.group_size == 3
    np.testing.assert_array_equal(r2.rewards, r.rewards + 1)


@pytest.mark.parametrize("field,value,pattern", [
    ("completion_mask", np.ones((6, 4), bool), r"Rollout\.completion_mask: expected shape \[B=6, T=5\], got \(6, 4\)"),
    ("logprobs", np.ones((6,)), r"Rollout\.logprobs: expected shape \[B=6, T=5\], got \(6,\)"),
    ("rewards", np.ones((3, 2)), r"Rollout\.rewards: expected shape \[P, G=3\], got \(3, 2\)"),
    ("reward_components", np.ones((2, 2, 4)), r"Rollout\.reward_components: .*got \(2, 2, 4\)"),
    ("valid", np.ones((2, 2), bool), r"Rollout\.valid: .*G=3"),
])
def test_rollout_shape_errors_name_the_field(field, value, pattern):
    f = _rollout_fields()
    f[field] = value
    with pytest.raises(ValueError, match=pattern):
        Rollout.create(**f)


@pytest.mark.parametrize("field,value,exc,pattern", [
    ("completion_tokens", np.zeros((6, 5), np.float32), TypeError, r"Rollout\.completion_tokens: expected an integer"),
    ("prompt_mask", np.full((6, 4), 0.5), TypeError, r"Rollout\.prompt_mask: expected a bool"),
    ("prompt_mask", np.full((6, 4), 2), ValueError, r"Rollout\.prompt_mask: integer mask"),
    ("logprobs", np.zeros((6, 5), bool), TypeError, r"Rollout\.logprobs: expected a float"),
])
def test_rollout_dtype_errors_name_the_field(field, value, exc, pattern):
    f = _rollout_fields()
    f[field] = value
    with pytest.raises(exc, match=pattern):
        Rollout.create(**f)


def test_rollout_rows_must_be_p_times_g():
    f = _rollout_fields()
    f["rewards"] = np.ones((3, 3))  # P=3 but B=6 with G=3
    with pytest.raises(ValueError, match=r"B=6 rows but rewards are \[P=3, G=3\]"):
        Rollout.create(**f)
    f = _rollout_fields()
    f["group_size"] = 0
    with pytest.raises(ValueError, match="group_size"):
        Rollout.create(**f)
    f = _rollout_fields()
    del f["logprobs"]
    with pytest.raises(TypeError):
        Rollout.create(**f)


def test_batch_create_and_errors():
    B, Lp, T = 4, 3, 5
    kw = dict(prompt_tokens=np.zeros((B, Lp), np.int32), prompt_mask=np.ones((B, Lp), bool),
              completion_tokens=np.zeros((B, T), np.int32), completion_mask=np.ones((B, T), bool),
              advantages=np.zeros((B, T)), old_logprobs=np.zeros((B, T)))
    b = Batch.create(**kw)
    assert b.ref_logprobs is None and b.batch_size == B
    kw["advantages"] = np.zeros((B, T + 1))
    with pytest.raises(ValueError, match=r"Batch\.advantages: expected shape \[B=4, T=5\], got \(4, 6\)"):
        Batch.create(**kw)
