"""Tree sampling (SPO-tree): layout, consistency of the arrays, log-probs three ways, and
greedy trees against greedy generation.

References: `rlx.advantages.tree.tree_layout` (the estimator's node numbering, written
independently), the trainer's `completion_logprobs` on each edge's (query, response)
row, and plain greedy `generate` (under greedy decoding every branch of a tree repeats
the same continuation, so each leaf's full completion is the greedy completion).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import models, sampling
from rlx.advantages.tree import tree_layout
from rlx.types import FinishReason

V = 64
LP = 6
BRANCHING = (2, 3, 2)


@pytest.fixture(scope="module")
def model():
    cfg = models.tiny(V, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                      family="qwen2")
    params = jax.tree.map(lambda x: x * 6 if x.ndim >= 2 else x, models.init_params(cfg, jax.random.key(0)))
    return cfg, params


def _prompts(P=2, seed=0):
    rng = np.random.default_rng(seed)
    toks = rng.integers(3, V, size=(P, LP)).astype(np.int32)
    mask = np.arange(LP)[None] >= np.arange(P)[:, None]
    return jnp.asarray(np.where(mask, toks, 0)), jnp.asarray(mask)


STOPS = (7, 8, 9, 10, 11, 12)
SCFG = sampling.SamplerConfig(max_prompt_len=LP, max_new_tokens=10, temperature=1.0, stop_ids=STOPS)


@pytest.fixture(scope="module")
def tree(model):
    cfg, params = model
    toks, mask = _prompts()
    tree, _ = sampling.sample_tree(params, cfg, SCFG, sampling.init_state(jax.random.key(2)), toks, mask,
                                   branching=BRANCHING, segment_len=3)
    return tree


def test_layout_matches_the_estimator(tree):
    layout = tree_layout(BRANCHING)
    np.testing.assert_array_equal(tree.parent, layout.parent)
    np.testing.assert_array_equal(tree.depth, layout.depth)
    N = 1 + 2 + 6 + 12
    assert tree.tokens.shape == (2, N, 4) and tree.segment_lens == (3, 3, 4)      # last level: 10 - 2*3
    assert tree.exists.shape == tree.finished.shape == tree.truncated.shape == (2, N)


def test_tree_arrays_are_consistent(tree):
    parent, depth = np.asarray(tree.parent), np.asarray(tree.depth)
    exists, fin, trunc = (np.asarray(x) for x in (tree.exists, tree.finished, tree.truncated))
    toks, msk = np.asarray(tree.tokens), np.asarray(tree.mask)
    D = len(BRANCHING)
    assert parent[0] == -1 and np.all(depth[parent[1:]] == depth[1:] - 1)        # parent one level up
    assert exists[:, 0].all() and not msk[:, 0].any() and not fin[:, 0].any()   # the root: the prompt
    # A node exists iff its parent exists and did not finish.
    np.testing.assert_array_equal(exists[:, 1:], exists[:, parent[1:]] & ~fin[:, parent[1:]])
    assert not msk[~exists].any() and not fin[~exists].any() and not trunc[~exists].any()
    lens = np.array([0, 3, 3, 4])[depth]
    for p in range(2):
        for n in range(1, len(parent)):
            if not exists[p, n]:
                continue
            L = int(msk[p, n].sum())
            assert msk[p, n, :L].all() and not msk[p, n, L:].any() and L >= 1   # right-padded, non-empty
            stops = np.flatnonzero(np.isin(toks[p, n, :L], STOPS))
            if fin[p, n]:
                np.testing.assert_array_equal(stops, [L - 1])                    # ends at its stop token
            else:
                assert stops.size == 0 and L == lens[n]                          # unfinished segments are full
            assert trunc[p, n] == (depth[n] == D and not fin[p, n])
    leaf = np.asarray(tree.leaf)
    np.testing.assert_array_equal(leaf, exists & (fin | (depth == D)[None]))
    assert fin[:, 1:].any() and trunc.any() and (~exists).any()                  # every case occurs
    # Leaves have no existing children; internal existing nodes have all of theirs.
    has_child = np.zeros_like(exists)
    for n in range(1, len(parent)):
        has_child[:, parent[n]] |= exists[:, n]
    np.testing.assert_array_equal(has_child, exists & ~leaf)


def test_logprobs_three_ways(model, tree):
    cfg, params = model
    edges, valid = sampling.edge_samples(tree)
    P, N = tree.exists.shape
    E = N - 1
    np.testing.assert_array_equal(valid, tree.exists[:, 1:])
    assert edges.prompt_tokens.shape == (P * E, LP + 2 * 3) and edges.completion_tokens.shape == (P * E, 4)
    # Edge rows: query = prompt + ancestors' segments; the trainer reproduces the
    # sampler's segment log-probs on every existing edge.
    trainer = jax.jit(models.completion_logprobs, static_argnums=1)(
        params, cfg, edges.prompt_tokens, edges.prompt_mask, edges.completion_tokens, edges.completion_mask)
    np.testing.assert_allclose(trainer, edges.logprobs, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(edges.logprobs.reshape(P, E, 4),
                               jnp.where(tree.exists[:, 1:, None], tree.logprobs[:, 1:], 0.0), atol=0)
    fr = np.asarray(edges.finish_reason).reshape(P, E)
    np.testing.assert_array_equal(fr == FinishReason.STOP, np.asarray(tree.finished[:, 1:]))
    # Edge e = node e + 1: its query's real tokens are the prompt then its ancestors' segments.
    p, e = 1, 15                                 # a level-3 node
    n = e + 1
    a2 = int(tree.parent[n])
    a1 = int(tree.parent[a2])
    real = np.asarray(edges.prompt_tokens[p * E + e])[np.asarray(edges.prompt_mask[p * E + e])]
    parts = [np.asarray(tree.prompt_tokens[p])[np.asarray(tree.prompt_mask[p])]]
    parts += [np.asarray(tree.tokens[p, a])[np.asarray(tree.mask[p, a])] for a in (a1, a2)]
    if tree.exists[p, n]:
        np.testing.assert_array_equal(real, np.concatenate(parts))
    # One packed forward per tree (every segment attends to its ancestors) agrees too.
    packed = jax.jit(sampling.tree_logprobs, static_argnums=1)(params, cfg, tree)
    np.testing.assert_allclose(jnp.where(tree.mask & tree.exists[..., None], packed, 0.0),
                               jnp.where(tree.exists[..., None], tree.logprobs, 0.0), atol=1e-5, rtol=1e-5)


def test_greedy_tree_leaves_equal_greedy_generation(model):
    cfg, params = model
    toks, mask = _prompts(seed=3)
    scfg = SCFG.replace(temperature=0.0, stop_ids=())
    tree, st = sampling.sample_tree(params, cfg, scfg, sampling.init_state(jax.random.key(0)), toks, mask,
                                    branching=(2, 2), segment_len=4)
    assert tree.segment_lens == (4, 6)
    ref, _ = sampling.generate(params, cfg, scfg, sampling.init_state(jax.random.key(0)), toks, mask, 1)
    comp, cmask = sampling.node_completions(tree)
    assert comp.shape == (2, 7, 10)
    for p in range(2):
        for n in range(1, 7):
            L = 4 if n <= 2 else 10
            np.testing.assert_array_equal(cmask[p, n], np.arange(10) < L)
            np.testing.assert_array_equal(comp[p, n, :L], ref.completion_tokens[p, :L])
    np.testing.assert_array_equal(tree.truncated[:, 3:], True)
    assert not np.asarray(cmask[:, 0]).any()


def test_validation(model):
    cfg, params = model
    toks, mask = _prompts()
    st = sampling.init_state(jax.random.key(0))
    with pytest.raises(ValueError, match="segment_len"):
        sampling.sample_tree(params, cfg, SCFG, st, toks, mask, branching=(2, 2, 2), segment_len=5)
    with pytest.raises(ValueError, match="branching"):
        sampling.sample_tree(params, cfg, SCFG, st, toks, mask, branching=(2, 0), segment_len=3)


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_paged_tree_equals_dense_tree(model, tree, temperature):
    # kv_cache="paged": a fork is a page-table copy (+ the parent's partly filled page).
    # Same keys, same draws: every array equals the dense fork's (the `tree` fixture at
    # temperature 1), log-probs up to float reassociation. page_size 4 with segments of 3
    # and prompts of 1-6 real tokens: segment starts fall inside pages (copy on write).
    cfg, params = model
    toks, mask = _prompts()
    dense = tree
    scfg = SCFG.replace(temperature=temperature)
    if temperature == 0.0:
        dense, _ = sampling.sample_tree(params, cfg, scfg, sampling.init_state(jax.random.key(2)), toks, mask,
                                        branching=BRANCHING, segment_len=3)
    paged, _ = sampling.sample_tree(params, cfg, scfg.replace(kv_cache="paged", page_size=4),
                                    sampling.init_state(jax.random.key(2)), toks, mask,
                                    branching=BRANCHING, segment_len=3)
    for name in ("tokens", "mask", "exists", "finished", "truncated", "parent", "depth"):
        np.testing.assert_array_equal(getattr(paged, name), getattr(dense, name), err_msg=name)
    for name in ("logprobs", "sampling_logprobs"):
        np.testing.assert_allclose(getattr(paged, name), getattr(dense, name), atol=2e-5, rtol=1e-5, err_msg=name)
    if temperature == 1.0:
        assert np.asarray(dense.finished[:, 1:]).any() and (~np.asarray(dense.exists)).any()


def test_paged_tree_pool_does_not_copy_the_prompt():
    # Pages of the pool (hand count): 1 null + P * ceil(Lp / ps) prompt pages, then per
    # level P * n_d nodes x (ceil(M_d / ps) + 1) own pages. The prompt part does not grow
    # with the branching; a dense fork holds P * n_D rows of Lp + T columns at the last level.
    from rlx.sampling.tree_paged import pool_pages
    pages, n_p, first = pool_pages(2, 6, (2, 3, 2), (3, 3, 4), 4)
    assert n_p == 2 and first == [5, 5 + 2 * 2 * 2, 13 + 2 * 6 * 2]
    assert pages == 37 + 2 * 12 * 2
    wide, _, first_wide = pool_pages(2, 6, (8, 8), (3, 7), 4)
    assert first_wide[0] == first[0] == 5
    # 8 x 8 tree, prompt 128, T 512, ps 16: paged holds 1 + 8 + 8 * 2 + 64 * 32 = 2073 pages
    # of 16 tokens (33.2k token slots); the dense fork holds 64 x 640 = 41k at the last level.
    assert pool_pages(1, 128, (8, 8), (16, 496), 16)[0] == 2073
