"""Continuous batching over paged / ragged KV (`SamplerConfig.kv_cache`), and the paged cache.

References: the dense sampler (an independent decode path: one cache row per sample,
one write column for all rows, every row until the slowest ends) with the same key —
per-row randomness depends only on (key, request, position), so the samples must be the
same tokens whatever the layout or slot count — the trainer's `completion_logprobs`, and
hand-counted page layouts.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import models, sampling
from rlx.models import paged
from rlx.sampling import continuous
from rlx.types import FinishReason

V = 64


@pytest.fixture(scope="module")
def model():
    cfg = models.tiny(V, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                      family="qwen2")
    params = models.init_params(cfg, jax.random.key(0))
    params = jax.tree.map(lambda x: x * 4 if x.ndim >= 2 else x, params)      # sharper: clear greedy winners
    return cfg, params


def _prompts(P=3, L=11, seed=0):
    rng = np.random.default_rng(seed)
    toks = rng.integers(3, V, size=(P, L)).astype(np.int32)
    mask = np.ones((P, L), bool)
    mask[0, :5] = False                     # prompt lengths 6, 10, 11: partial and full last pages
    mask[1, :1] = False
    return toks, mask


def _run(model, scfg, G=4, key=3, budget=None, prompts=None):
    cfg, params = model
    toks, mask = prompts or _prompts()
    return sampling.generate(params, cfg, scfg, sampling.init_state(jax.random.key(key)), toks, mask, G,
                             budget_B=budget)[0]


BASE = sampling.SamplerConfig(max_prompt_len=11, max_new_tokens=12, temperature=1.0, stop_ids=(5, 7), pad_id=0)


def _same(a, b):
    for f in ("completion_tokens", "completion_mask", "lengths", "finish_reason", "prompt_tokens", "prompt_mask"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=2e-6)
    np.testing.assert_allclose(a.sampling_logprobs, b.sampling_logprobs, atol=2e-6)


@pytest.mark.parametrize("kind", ["paged", "ragged"])
@pytest.mark.parametrize("temperature,top_p", [(0.0, 1.0), (1.0, 1.0), (0.7, 0.9)])
def test_equals_the_dense_sampler_whatever_the_slot_count(model, kind, temperature, top_p):
    scfg = BASE.replace(temperature=temperature, top_p=top_p)
    dense = _run(model, scfg)
    assert 0 < int(np.sum(np.asarray(dense.finish_reason) == FinishReason.STOP)) or temperature == 0
    outs = [_run(model, scfg.replace(kv_cache=kind, slots=s, page_size=4)) for s in (1, 5, 0)]
    for o in outs:
        _same(o, dense)
    for o in outs[1:]:                      # the slot count changes no token (log-probs: float32
        _same(o, outs[0])                   # rounding of differently shaped matmuls)


def test_budgets_stops_and_the_trainer(model):
    cfg, params = model
    budget = jnp.asarray([0, 1, 12, 3, 7, 12, 2, 5, 12, 12, 4, 9], jnp.int32)
    dense = _run(model, BASE, budget=budget)
    out = _run(model, BASE.replace(kv_cache="ragged", slots=3, page_size=4), budget=budget)
    _same(out, dense)
    lengths = np.asarray(out.lengths)
    assert (lengths <= np.asarray(budget)).all() and lengths[0] == 0
    assert int(out.finish_reason[0]) == FinishReason.LENGTH and not np.asarray(out.completion_mask[0]).any()
    # The trainer's log-probs of the sampled completions (an uncached forward).
    for o in (out, _run(model, BASE.replace(kv_cache="paged", slots=3, page_size=4), budget=budget)):
        trainer = models.completion_logprobs(params, cfg, o.prompt_tokens, o.prompt_mask, o.completion_tokens,
                                             o.completion_mask)
        np.testing.assert_allclose(o.logprobs, trainer, atol=1e-5, rtol=1e-5)


def test_prefix_continuation_and_chunks(model):
    cfg, params = model
    toks, mask = _prompts()
    first = _run(model, BASE, G=1)
    plen = jnp.asarray([2, 0, 5], jnp.int32)
    state = sampling.init_state(jax.random.key(9))
    dense, _ = sampling.continue_from(params, cfg, BASE, state, toks, mask, first.completion_tokens, plen, 3)
    for scfg in (BASE.replace(kv_cache="paged", slots=4, page_size=4),
                 BASE.replace(kv_cache="ragged", slots=2, rows_per_call=6)):
        out, _ = sampling.continue_from(params, cfg, scfg, state, toks, mask, first.completion_tokens, plen, 3)
        _same(out, dense)


def test_prompt_pages_are_shared_not_repeated(model):
    # Hand count: Lp 11, pages of 4 -> 3 pages per prompt; T 12 -> 3 + 1 own pages per slot.
    lay = continuous.layout(BASE.replace(kv_cache="paged", slots=5, page_size=4), 3, 4, 11)
    assert lay == continuous.Layout(slots=5, page_size=4, prompt_pages=3, own_pages=4, table_width=7,
                                    num_pages=1 + 3 * 3 + 5 * 4, shards=1, prompts=3)
    for G in (2, 8, 64):                    # the pool does not grow with G (only slots own pages)
        assert continuous.layout(BASE.replace(kv_cache="paged", slots=5, page_size=4), 3, G, 11).num_pages == 30
    # Page tables of slots serving samples of the same prompt: same prompt pages, own tail.
    kv = {"pool": paged.init_pool(model[0], lay.num_pages, 4, shards=1), "table": jnp.zeros((5, 7), jnp.int32)}
    take = jnp.asarray([[True, True, True, False, True]])
    p = jnp.asarray([[1, 1, 0, 0, 2]])
    plen = jnp.asarray([[10, 10, 6, 6, 11]])
    table = np.asarray(continuous._start_rows("paged", lay, kv, take, p, p, plen)["table"])
    own = [1 + 9 + s * 4 for s in range(5)]
    # prompt 1 (10 tokens): 2 full pages (4, 5) shared; token 8.. in the slot's copy of page 6.
    np.testing.assert_array_equal(table[0], [4, 5, own[0], own[0] + 1, own[0] + 2, own[0] + 3, 0])
    np.testing.assert_array_equal(table[1], [4, 5, own[1], own[1] + 1, own[1] + 2, own[1] + 3, 0])
    np.testing.assert_array_equal(table[2], [1, own[2], own[2] + 1, own[2] + 2, own[2] + 3, 0, 0])
    np.testing.assert_array_equal(table[3], 0)                                   # not taking: unchanged
    np.testing.assert_array_equal(table[4], [7, 8, own[4], own[4] + 1, own[4] + 2, own[4] + 3, 0])


def test_copy_on_write_of_the_partial_page():
    cfg = models.tiny(V, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
    pool = paged.init_pool(cfg, 6, 4)
    pool = {n: [p.at[:, 2].set(7.0)] for n, (p,) in pool.items()}
    out = paged.copy_pages(pool, jnp.asarray([2, 2]), jnp.asarray([4, 6]))     # 6: out of range, skipped
    np.testing.assert_array_equal(out["k"][0][:, 4], 7.0)
    np.testing.assert_array_equal(out["k"][0][:, 2], 7.0)                      # the shared page is intact
    np.testing.assert_array_equal(out["v"][0][:, 5], 0.0)


def test_pack_left_padded():
    x = jnp.arange(10).reshape(2, 5)
    m = jnp.asarray([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(paged.pack_left_padded(x, m), [[2, 3, 4, 4, 4], [5, 6, 7, 8, 9]])


def test_pallas_paged_kernel_matches_the_gather_path():
    # The TPU kernel in Pallas interpret mode against the XLA gather path; the kernel's
    # dots run at TPU default precision (bf16 passes), hence the tolerance.
    rng = np.random.default_rng(0)
    B, N, g, Dh, NP, ps, M = 3, 2, 2, 128, 20, 16, 4
    q = jnp.asarray(rng.normal(size=(B, N, g, Dh)), jnp.float32)
    kp, vp = (jnp.asarray(rng.normal(size=(N, NP, ps, Dh)), jnp.float32) for _ in range(2))
    table = jnp.asarray(rng.permutation(NP)[:B * M].reshape(B, M), jnp.int32)
    for lengths in ([1, 17, 64], [5, 33, 48]):
        L = jnp.asarray(lengths, jnp.int32)
        ref = paged._xla_attend(q, kp, vp, table, L)
        np.testing.assert_allclose(paged._pallas_attend(q, kp, vp, table, L), ref, atol=2e-2)
        # A single live token: the output is that token's value.
        if lengths[0] == 1:
            np.testing.assert_allclose(ref[0], jnp.broadcast_to(vp[:, table[0, 0], 0][:, None], (N, g, Dh)),
                                       atol=1e-6)


def test_pallas_kernel_over_a_lane_packed_pool():
    # Two KV heads of Dh = 64 stored side by side in one 128-lane pool row (`lane_pack`):
    # the kernel over the packed pool must equal the gather path over the unpacked one.
    # The packed row is built here by hand: lanes s*64 .. s*64+63 of page row t = head s.
    rng = np.random.default_rng(1)
    B, N, g, Dh, NP, ps, M = 3, 2, 3, 64, 20, 16, 4
    q = jnp.asarray(rng.normal(size=(B, N, g, Dh)), jnp.float32)
    kp, vp = (jnp.asarray(rng.normal(size=(N, NP, ps, Dh)), jnp.float32) for _ in range(2))
    packed = [x.transpose(1, 2, 0, 3).reshape(1, NP, ps, N * Dh) for x in (kp, vp)]
    np.testing.assert_array_equal(packed[0][0, 3, 5, Dh:], kp[1, 3, 5])          # head 1 in the upper lanes
    table = jnp.asarray(rng.permutation(NP)[:B * M].reshape(B, M), jnp.int32)
    L = jnp.asarray([1, 30, 64], jnp.int32)
    ref = paged._xla_attend(q, kp, vp, table, L)
    np.testing.assert_allclose(paged._pallas_attend(q, *packed, table, L), ref, atol=2e-2)
    # Row 0 has one live token: each query head returns its own KV head's value there
    # (not its neighbour's, which shares the row).
    for n in range(N):
        np.testing.assert_allclose(paged._pallas_attend(q, *packed, table, L)[0, n],
                                   jnp.broadcast_to(vp[n, table[0, 0], 0], (g, Dh)), atol=1e-2)


def test_lane_pack_respects_head_sharding(devices8):
    # Dh = 64 under the kernel: 2 heads per row; 4 KV heads split over 4 devices cannot
    # pack (1 head per device), split over 2 they pack in pairs; the XLA path never packs.
    from jax.sharding import Mesh

    from rlx import parallel
    cfg = models.tiny(V, hidden_size=512, num_layers=1, num_heads=8, num_kv_heads=4, intermediate_size=64,
                      family="qwen2").replace(attention="splash")
    assert cfg.head_dim == 64
    assert paged.lane_pack(cfg) == 2 and paged.pool_heads(cfg) == (2, 128)
    assert paged.pool_heads(cfg.replace(attention="xla")) == (4, 64)
    rules = (("cache_kv_heads", "tensor"),)
    for shape, r in (((2, 4), 1), ((4, 2), 2)):
        mesh = Mesh(np.array(devices8).reshape(shape), ("data", "tensor"))
        with parallel.use_rules(mesh, rules):
            assert paged.lane_pack(cfg) == r, shape
            assert paged.pool_heads(cfg) == (4 // r, 128), shape


def test_greedy_through_the_pallas_kernel():
    # The paged sampler with splash attention (Pallas, interpreted on CPU): prefill and
    # decode write pages with both KV heads (Dh = 64) packed into the kernel's 128 lanes
    # (`lane_pack`: one pool head, half the memory of padding each head) and the kernel
    # reads them. Greedy tokens equal the XLA gather path's and its log-probs agree to the
    # kernel's precision (its dots run at TPU default precision: bf16 passes; measured
    # 6e-4 here. With weights scaled x4, as the other tests sharpen them, the logits grow
    # enough for that rounding to flip near-tied greedy tokens, so these stay unscaled).
    cfg = models.tiny(V, hidden_size=256, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                      family="qwen2")
    params = models.init_params(cfg, jax.random.key(0))
    scfg = BASE.replace(temperature=0.0, kv_cache="paged", slots=5, page_size=4, max_new_tokens=6)
    xla = _run((cfg.replace(attention="xla"), params), scfg)
    pallas = _run((cfg.replace(attention="splash"), params), scfg)
    assert paged.pool_heads(cfg.replace(attention="splash")) == (1, 128)
    np.testing.assert_array_equal(pallas.completion_tokens, xla.completion_tokens)
    np.testing.assert_allclose(pallas.logprobs, xla.logprobs, atol=5e-3)


def test_validation():
    with pytest.raises(ValueError, match="kv_cache"):
        BASE.replace(kv_cache="vllm")
    with pytest.raises(ValueError, match="continuous batching needs"):
        BASE.replace(slots=4)
    with pytest.raises(ValueError, match="page_size"):
        BASE.replace(kv_cache="paged", page_size=0)
    with pytest.raises(ValueError, match="slots"):
        BASE.replace(kv_cache="paged", slots=-1)
