"""Scale-out equivalence: the jitted train step and the sampler give the same results on
1 device and on 8 virtual devices with meshes (8,1,1), (2,4,1), (2,2,2), under the
sharding presets (pure FSDP; FSDP x tensor parallel)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rlx import models, parallel, sampling
from rlx.train.state import TrainState
from rlx.train.update import UpdateSpec, make_update
from rlx.types import Batch

MESHES = [((8, 1, 1), "fsdp"), ((2, 4, 1), "fsdp"), ((2, 2, 2), "fsdp_tp"), ((2, 2, 2), "fsdp")]


@pytest.fixture(scope="module")
def setup():
    cfg = models.tiny(48, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)
    params = models.init_params(cfg, jax.random.key(0))
    rng = np.random.default_rng(0)
    B, Lp, T = 16, 6, 5
    pm = np.ones((B, Lp), bool)
    pm[::3, :2] = False
    cm = np.arange(T)[None, :] < rng.integers(1, T + 1, size=(B, 1))
    batch = dict(prompt_tokens=rng.integers(3, 48, (B, Lp)), prompt_mask=pm,
                 completion_tokens=rng.integers(3, 48, (B, T)), completion_mask=cm,
                 advantages=rng.normal(size=(B, T)), old_logprobs=-rng.random((B, T)) - 2.0)
    return cfg, params, {k: np.asarray(v) for k, v in batch.items()}


def _train(cfg, params, batch_np, mesh=None, rules=None):
    spec = UpdateSpec(loss="ppo_clip", loss_kwargs=(("eps_high", 0.28),), group_size=4, epochs=2, minibatches=2,
                      micro_batches=2, entropy_coef=0.01, max_len=5)
    opt = optax.sgd(0.1)      # plain SGD: parameters then differ only by float rounding
    update = make_update(cfg, spec, opt)
    state = TrainState.create(params, opt, jax.random.key(1))
    batch = Batch.create(**batch_np)
    if mesh is None:
        fn = jax.jit(update)
        return fn(*fn(state, batch)[:1], batch)
    sh = parallel.tree_shardings(params, models.param_logical_axes(cfg), mesh, rules)
    with parallel.use_rules(mesh, rules):
        state = jax.jit(lambda p: TrainState.create(p, opt, jax.random.key(1)))(jax.device_put(params, sh))
        batch = jax.tree.map(lambda x: jax.device_put(x, parallel.batch_sharding(mesh, x.ndim, x.shape[0])), batch)
        state_sh = jax.tree.map(lambda x: x.sharding, state)
        fn = jax.jit(update, out_shardings=(state_sh, None))
        state, _ = fn(state, batch)
        return fn(state, batch)


@pytest.mark.parametrize("shape,rules", MESHES)
def test_train_step_equal_on_8_devices(setup, devices8, shape, rules):
    cfg, params, batch = setup
    ref_state, ref_m = _train(cfg, params, batch)
    mesh = parallel.make_mesh(shape, devices8)
    state, m = _train(cfg, params, batch, mesh, parallel.get_rules(rules))
    assert len(state.params["embed"].sharding.device_set) == 8
    for k in ("loss", "policy_loss", "entropy", "clip_frac"):
        np.testing.assert_allclose(m[k], ref_m[k], rtol=1e-5, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(m["grad_norm"], ref_m["grad_norm"], rtol=1e-4)
    for a, b in zip(jax.tree.leaves(ref_state.params), jax.tree.leaves(state.params)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-6, rtol=1e-5)


def _sample_on_1_and_8(cfg, params, batch, devices8, shape, rules, scfg, mesh_scfg=None):
    """(1-device samples with `scfg`, 8-device samples with `mesh_scfg` (default the same))
    of the first 8 prompts, 2 samples each, from the same sampler state."""
    toks, mask = jnp.asarray(batch["prompt_tokens"][:8]), jnp.asarray(batch["prompt_mask"][:8])
    st = sampling.init_state(jax.random.key(3))
    ref, _ = sampling.generate(params, cfg, scfg, st, toks, mask, 2)
    mesh = parallel.make_mesh(shape, devices8)
    rt = parallel.get_rules(rules)
    with parallel.use_rules(mesh, rt):
        p = jax.device_put(params, parallel.tree_shardings(params, models.param_logical_axes(cfg), mesh, rt))
        out, _ = sampling.generate(p, cfg, mesh_scfg or scfg, st,
                                   jax.device_put(toks, parallel.batch_sharding(mesh, 2, 8)),
                                   jax.device_put(mask, parallel.batch_sharding(mesh, 2, 8)), 2)
    return ref, out


def _same_samples(out, ref, atol):
    np.testing.assert_array_equal(np.asarray(out.completion_tokens), np.asarray(ref.completion_tokens))
    np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(ref.logprobs), atol=atol)


@pytest.mark.parametrize("shape,rules", MESHES[:3])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_sampler_equal_on_8_devices(setup, devices8, shape, rules, temperature):
    cfg, params, batch = setup
    params = jax.tree.map(lambda x: x * 6 if x.ndim >= 2 else x, params)
    scfg = sampling.SamplerConfig(max_prompt_len=6, max_new_tokens=6, temperature=temperature, stop_ids=(5,))
    # Random bits are sharding-invariant (partitionable threefry), so even sampling agrees.
    ref, out = _sample_on_1_and_8(cfg, params, batch, devices8, shape, rules, scfg)
    _same_samples(out, ref, atol=1e-5)


@pytest.mark.parametrize("shape,rules,kv_cache,decode_sharding", [
    ((8, 1, 1), "fsdp", "paged", "tensor"), ((2, 2, 2), "fsdp_tp", "paged", "params"),
    ((2, 2, 2), "fsdp_tp", "paged", "tensor"), ((2, 4, 1), "fsdp", "dense", "replicated")])
def test_decode_layouts_equal_on_8_devices(setup, devices8, shape, rules, kv_cache, decode_sharding):
    # Continuous batching (8 slots for 16 requests, split over the row shards: refills on
    # the mesh) and the decode weight placements give the 1-device dense sampler's
    # samples: the same keys draw the same tokens (rlx.sampling.continuous: randomness per
    # request and position).
    cfg, params, batch = setup
    params = jax.tree.map(lambda x: x * 6 if x.ndim >= 2 else x, params)
    scfg = sampling.SamplerConfig(max_prompt_len=6, max_new_tokens=6, temperature=1.0, stop_ids=(5,))
    mesh_scfg = scfg.replace(kv_cache=kv_cache, slots=8 if kv_cache == "paged" else 0, page_size=4,
                             decode_sharding=decode_sharding)
    ref, out = _sample_on_1_and_8(cfg, params, batch, devices8, shape, rules, scfg, mesh_scfg)
    _same_samples(out, ref, atol=1e-5)


def test_pallas_paged_decode_on_8_devices(setup, devices8):
    # The Pallas paged-attention kernel (interpreted on CPU) inside `shard_map` over the
    # row shards of a 2x2x2 fsdp_tp mesh, KV heads over `tensor`, with the "tensor" decode
    # placement (queries replicated into the kernel's shards), against the same kernel on
    # one device (2 slots per row shard for 4 requests: refills). ~35 s: the interpreted kernel;
    # "params" passed too when measured.
    cfg, params, batch = setup
    scfg = sampling.SamplerConfig(max_prompt_len=6, max_new_tokens=3, temperature=1.0, stop_ids=(5,),
                                  kv_cache="paged", slots=8, page_size=4, decode_sharding="tensor")
    ref, out = _sample_on_1_and_8(cfg.replace(attention="splash"), params, batch, devices8, (2, 2, 2), "fsdp_tp",
                                  scfg)
    _same_samples(out, ref, atol=1e-4)


def test_paged_tree_on_8_devices(setup, devices8):
    # SPO-tree over a paged pool per row shard (forks are page-table copies, the parent's
    # partial page copied within its shard) on a 2x2x2 fsdp_tp mesh with the "tensor"
    # placement == the dense fork on 1 device, token for token (same keys, same draws).
    cfg, params, batch = setup
    params = jax.tree.map(lambda x: x * 6 if x.ndim >= 2 else x, params)
    scfg = sampling.SamplerConfig(max_prompt_len=6, max_new_tokens=6, temperature=1.0, stop_ids=(5,))
    toks, mask = jnp.asarray(batch["prompt_tokens"][:8]), jnp.asarray(batch["prompt_mask"][:8])
    st = sampling.init_state(jax.random.key(3))
    ref, _ = sampling.sample_tree(params, cfg, scfg, st, toks, mask, branching=(2, 2), segment_len=3)
    mesh = parallel.make_mesh((2, 2, 2), devices8)
    rt = parallel.get_rules("fsdp_tp")
    with parallel.use_rules(mesh, rt):
        p = jax.device_put(params, parallel.tree_shardings(params, models.param_logical_axes(cfg), mesh, rt))
        put = lambda x: jax.device_put(x, parallel.batch_sharding(mesh, 2, 8))  # noqa: E731
        out, _ = sampling.sample_tree(p, cfg, scfg.replace(kv_cache="paged", page_size=4, decode_sharding="tensor"),
                                      st, put(toks), put(mask), branching=(2, 2), segment_len=3)
    for name in ("tokens", "mask", "exists", "finished"):
        np.testing.assert_array_equal(np.asarray(getattr(out, name)), np.asarray(getattr(ref, name)), err_msg=name)
    np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(ref.logprobs), atol=1e-5)
    assert np.asarray(ref.finished[:, 1:]).any()


def test_decode_rules_place_what_they_say():
    fsdp = dict(parallel.decode_rules(parallel.get_rules("fsdp"), "tensor"))
    assert fsdp["mlp"] == fsdp["vocab"] == ("data", "fsdp", "tensor") and fsdp["embed"] is None
    assert fsdp["batch"] is None and fsdp["cache_batch"] == ("data", "fsdp")
    rep = dict(parallel.decode_rules(parallel.get_rules("fsdp_tp"), "replicated"))
    assert all(rep[n] is None for n in ("embed", "mlp", "vocab", "q_heads")) and rep["batch"] == ("data", "fsdp")
    assert parallel.decode_rules(parallel.get_rules("fsdp"), "params") == parallel.get_rules("fsdp")
    with pytest.raises(ValueError, match="unknown decode sharding 'tp'"):
        parallel.decode_rules(parallel.get_rules("fsdp"), "tp")


def test_presets_shard_what_they_say(setup, devices8):
    cfg, params, _ = setup
    mesh = parallel.make_mesh((2, 2, 2), devices8)
    axes = models.param_logical_axes(cfg)
    fsdp = parallel.tree_shardings(params, axes, mesh, parallel.get_rules("fsdp"))
    tp = parallel.tree_shardings(params, axes, mesh, parallel.get_rules("fsdp_tp"))
    # gate [layers, embed, mlp]: FSDP shards embed only; FSDP x TP also shards mlp over tensor.
    assert fsdp["layers"]["gate"].spec == jax.sharding.PartitionSpec(None, "fsdp", None)
    assert tp["layers"]["gate"].spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    assert dataclasses.is_dataclass(cfg)
