"""Tests for rlx.parallel: mesh shapes, logical-axis rules, shardings on 8 devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from rlx import parallel


def test_resolve_shape():
    assert parallel.resolve_shape((-1, 1, 1), 8) == (8, 1, 1)
    assert parallel.resolve_shape((2, -1, 2), 8) == (2, 2, 2)
    assert parallel.resolve_shape((2, 4, 1), 8) == (2, 4, 1)
    with pytest.raises(ValueError, match="needs 6 devices"):
        parallel.resolve_shape((2, 3, 1), 8)
    with pytest.raises(ValueError, match="not divisible by 3"):
        parallel.resolve_shape((3, -1, 1), 8)
    with pytest.raises(ValueError, match="at most one -1"):
        parallel.resolve_shape((-1, -1, 1), 8)
    with pytest.raises(ValueError, match="3 entries"):
        parallel.resolve_shape((8, 1), 8)


@pytest.mark.parametrize("shape", [(8, 1, 1), (2, 4, 1), (2, 2, 2)])
def test_make_mesh(devices8, shape):
    mesh = parallel.make_mesh(shape, devices8)
    assert mesh.axis_names == ("data", "fsdp", "tensor")
    assert tuple(mesh.shape.values()) == shape


def test_logical_to_spec_presets(devices8):
    mesh = parallel.make_mesh((2, 2, 2), devices8)
    fsdp, tp = parallel.get_rules("fsdp"), parallel.get_rules("fsdp_tp")
    # A [embed, mlp] weight: pure FSDP shards embed over fsdp only.
    assert parallel.logical_to_spec(("embed", "mlp"), (8, 16), mesh, fsdp) == P("fsdp", None)
    assert parallel.logical_to_spec(("embed", "mlp"), (8, 16), mesh, tp) == P("fsdp", "tensor")
    # Batch over (data, fsdp).
    assert parallel.logical_to_spec(("batch", "length"), (8, 5), mesh, tp) == P(("data", "fsdp"), None)
    # 4 rows cannot take data x fsdp = 4? they can; 2 rows take only `data`.
    assert parallel.logical_to_spec(("batch",), (2,), mesh, tp) == P("data")
    # A dimension the axis does not divide stays replicated on it (3 KV heads, tensor=2).
    assert parallel.logical_to_spec(("embed", "kv_heads", "head_dim"), (8, 3, 4), mesh, tp) == \
        P("fsdp", None, None)
    with pytest.raises(KeyError, match="no rule"):
        parallel.logical_to_spec(("embedd",), (8,), mesh, tp)
    with pytest.raises(ValueError, match="unknown sharding rules preset"):
        parallel.get_rules("zero3")


def test_tree_shardings_place_and_compute_identically(devices8):
    mesh = parallel.make_mesh((2, 2, 2), devices8)
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(8, 16)), jnp.float32),
              "b": jnp.asarray(rng.normal(size=(16,)), jnp.float32)}
    axes = {"w": ("embed", "mlp"), "b": ("mlp",)}
    sh = parallel.tree_shardings(params, axes, mesh, parallel.get_rules("fsdp_tp"))
    placed = jax.device_put(params, sh)
    assert placed["w"].sharding.spec == P("fsdp", "tensor")
    x = jnp.asarray(rng.normal(size=(4, 8)), jnp.float32)
    xs = jax.device_put(x, parallel.batch_sharding(mesh, 2, 4))
    f = jax.jit(lambda p, x: jnp.tanh(x @ p["w"] + p["b"][None, :]).sum())
    np.testing.assert_allclose(f(placed, xs), f(params, x), rtol=1e-6)
