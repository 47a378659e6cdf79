"""rlx.models.matmul.einsum: same values and gradients as `jnp.einsum` (JAX's own
transpose rule is the reference), numerical gradients via `check_grads`, mixed dtypes,
and clear errors for specs the explicit-contraction VJP cannot express."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rlx.models import matmul

SPECS = [("bld,df->blf", (2, 3, 4), (4, 5)),                 # dense projection
         ("bld,dhk->blhk", (2, 3, 4), (4, 2, 3)),            # to heads
         ("blhk,hkd->bld", (2, 3, 2, 3), (2, 3, 4)),         # from heads
         ("bngqd,bnkd->bngqk", (2, 2, 2, 3, 4), (2, 2, 5, 4)),   # GQA scores (sums over g, q in dk)
         ("nd,dv->nv", (6, 4), (4, 7))]


@pytest.mark.parametrize("spec,sa,sb", SPECS)
def test_values_and_gradients_equal_jnp_einsum(spec, sa, sb):
    ka, kb, kc = jax.random.split(jax.random.key(0), 3)
    a, b = jax.random.normal(ka, sa), jax.random.normal(kb, sb)
    out = jnp.einsum(spec, a, b)
    w = jax.random.normal(kc, out.shape)      # a random cotangent

    def loss(f):
        return lambda x, y: jnp.sum(jnp.tanh(f(spec, x, y)) * w)

    np.testing.assert_allclose(matmul.einsum(spec, a, b), out, rtol=1e-6, atol=1e-6)
    got = jax.jit(jax.grad(loss(matmul.einsum), argnums=(0, 1)))(a, b)
    want = jax.grad(loss(jnp.einsum), argnums=(0, 1))(a, b)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
    check_grads(lambda x, y: matmul.einsum(spec, x, y), (a, b), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_mixed_dtypes_keep_the_operand_dtypes():
    a = jnp.ones((3, 4), jnp.bfloat16)
    b = jnp.full((4, 5), 0.5, jnp.bfloat16)
    y = matmul.einsum("nd,dv->nv", a, b, preferred_element_type=jnp.float32)
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(y, np.full((3, 5), 2.0))          # 4 x 1 x 0.5
    ga, gb = jax.grad(lambda x, z: matmul.einsum("nd,dv->nv", x, z, preferred_element_type=jnp.float32).sum(),
                      argnums=(0, 1))(a, b)
    assert ga.dtype == gb.dtype == jnp.bfloat16
    np.testing.assert_array_equal(ga, np.full((3, 4), 2.5))          # sum over v of b = 5 x 0.5
    np.testing.assert_array_equal(gb, np.full((4, 5), 3.0))          # sum over n of a = 3


@pytest.mark.parametrize("spec,msg", [("...d,dv->...v", "ellipsis"), ("nd,dv", "explicit two-operand"),
                                      ("nd,dv,vw->nw", "explicit two-operand"),
                                      ("nde,dv->nv", "first operand"), ("nd,dvv->nv", "second operand")])
def test_bad_specs_are_named(spec, msg):
    with pytest.raises(ValueError, match=msg):
        matmul.einsum(spec, jnp.ones((2, 3)), jnp.ones((3, 4)))
