"""Tests for SPO-tree (rlx.advantages.tree): layout, value backup, edge advantages.

Expected values are derived by hand in the comments, or by an independent reference
written below from the official algorithm (AIFrameResearch/SPO:
`HybridInferenceStrategy._construct_tree` builds nested dict trees, node reward =
np.mean / reward_std = np.std of the children's rewards; `extract_edges_from_tree`
gives A = child - parent ("rloo") or (child - parent) / (parent std + 1e-8) ("grpo")
and keeps an edge iff A + BoK(child) - BoK(parent) != 0).
"""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rlx.advantages as A
from rlx.advantages import edge_token_advantages, spo_tree, tree_layout, tree_node_mask, tree_values

B22 = (2, 2)
# 2-2 tree: node 0 root; level 1: nodes 1, 2; level 2: nodes 3, 4 (children of 1), 5, 6 (of 2).


def test_layout_2_2_and_6_6_6():
    lay = tree_layout(B22)
    assert lay.num_nodes == 7 and lay.num_edges == 6
    assert lay.offsets == (0, 1, 3, 7) and lay.level_sizes == (1, 2, 4)
    np.testing.assert_array_equal(lay.parent, [-1, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(lay.depth, [0, 1, 1, 2, 2, 2, 2])
    big = tree_layout((6, 6, 6))
    assert big.num_nodes == 1 + 6 + 36 + 216
    # child j of level-2 node with in-level index i is level-3 node i * 6 + j
    assert big.parent[big.offsets[3] + 5 * 6 + 4] == big.offsets[2] + 5
    with pytest.raises(ValueError, match="branching"):
        tree_layout(())
    with pytest.raises(ValueError, match="branching"):
        tree_layout((2, 0))


def test_full_2_2_tree_values_and_edges_rloo_grpo():
    # Leaf rewards: node 3 = 1, 4 = 0, 5 = 1, 6 = 1 (nothing finished early).
    # V(1) = mean(1, 0) = 0.5, V(2) = mean(1, 1) = 1, V(0) = mean(0.5, 1) = 0.75.
    r = np.array([[0, 0, 0, 1, 0, 1, 1]], np.float32)
    f = np.zeros((1, 7), bool)
    v, node_mask, leaf = tree_values(r, f, branching=B22)
    np.testing.assert_allclose(v, [[0.75, 0.5, 1, 1, 0, 1, 1]])
    np.testing.assert_array_equal(node_mask, True)
    np.testing.assert_array_equal(leaf, [[False, False, False, True, True, True, True]])
    # rloo edges (edge e = node e + 1): 1: 0.5 - 0.75 = -0.25; 2: 1 - 0.75 = 0.25;
    # 3: 1 - 0.5 = 0.5; 4: 0 - 0.5 = -0.5; 5, 6: 1 - 1 = 0 -> dropped.
    out, m = spo_tree(r, f, branching=B22)
    np.testing.assert_allclose(out.edge_advantages, [[-0.25, 0.25, 0.5, -0.5, 0, 0]])
    np.testing.assert_array_equal(out.edge_valid, [[True, True, True, True, False, False]])
    assert int(m["edges"]) == 4 and int(m["zero_advantage_edges"]) == 2 and int(m["leaves"]) == 4
    assert float(m["root_value"]) == 0.75
    # grpo: population std of the root's children (0.5, 1) = 0.25 -> -0.25 / (0.25 + 1e-8),
    # 0.25 / (0.25 + 1e-8); node 1's children (1, 0): std 0.5 -> +-0.5 / (0.5 + 1e-8);
    # node 2's children (1, 1): std 0, A = 0 -> dropped.
    out, _ = spo_tree(r, f, branching=B22, mode="grpo")
    e = 1e-8
    np.testing.assert_allclose(out.edge_advantages,
                               [[-0.25 / (0.25 + e), 0.25 / (0.25 + e), 0.5 / (0.5 + e), -0.5 / (0.5 + e),
                                 0, 0]], rtol=1e-6)
    np.testing.assert_array_equal(out.edge_valid, [[True, True, True, True, False, False]])


def test_finished_truncated_mix():
    # Node 1 finished at level 1 with reward 1 (a leaf; its slots 3, 4 are masked, their
    # garbage rewards, even NaN, are ignored). Node 2 truncated -> expanded: node 5 finished
    # with reward 0, node 6 truncated at the last level, graded 1 (given reward).
    # V(1) = 1, V(2) = mean(0, 1) = 0.5, V(0) = mean(1, 0.5) = 0.75.
    r = np.array([[np.nan, 1, 7, np.nan, 5, 0, 1]], np.float32)
    f = np.array([[False, True, False, True, False, True, False]])
    np.testing.assert_array_equal(tree_node_mask(f, branching=B22),
                                  [[True, True, True, False, False, True, True]])
    v, node_mask, leaf = tree_values(r, f, branching=B22)
    np.testing.assert_allclose(v, [[0.75, 1, 0.5, 0, 0, 0, 1]])
    np.testing.assert_array_equal(leaf, [[False, True, False, False, False, True, True]])
    # rloo: 1: 1 - 0.75 = 0.25; 2: 0.5 - 0.75 = -0.25; 3, 4: do not exist; 5: -0.5; 6: 0.5
    out, m = spo_tree(r, f, branching=B22)
    np.testing.assert_allclose(out.edge_advantages, [[0.25, -0.25, 0, 0, -0.5, 0.5]])
    np.testing.assert_array_equal(out.edge_valid, [[True, True, False, False, True, True]])
    assert int(m["leaves"]) == 3 and int(m["zero_advantage_edges"]) == 0
    # grpo: root's children (1, 0.5): std 0.25 -> +-1; node 2's children (0, 1): std 0.5 -> +-1
    out, _ = spo_tree(r, f, branching=B22, mode="grpo")
    np.testing.assert_allclose(out.edge_advantages, [[1, -1, 0, 0, -1, 1]], rtol=1e-6)
    # A finished flag on the root is ignored (the prompt is always expanded).
    f2 = f.copy()
    f2[0, 0] = True
    np.testing.assert_array_equal(tree_node_mask(f2, branching=B22), tree_node_mask(f, branching=B22))


def test_zero_advantage_edges_dropped_and_equal_children_exact():
    # All leaves 1: every value 1, every advantage 0 -> no edge survives.
    out, m = spo_tree(np.ones((2, 7), np.float32), np.zeros((2, 7), bool), branching=B22, mode="grpo")
    np.testing.assert_array_equal(out.edge_valid, False)
    np.testing.assert_array_equal(out.edge_advantages, 0)
    assert int(m["edges"]) == 0 and int(m["zero_advantage_edges"]) == 12
    # Three children with the same reward x: the parent's value is exactly x. The float32
    # mean (x + x + x) / 3 is not always x (e.g. 0.1 under jit, 0.9 eagerly: off by
    # 7e-9 / 6e-8), and "grpo" would divide that residue by a std of the same size
    # + 1e-8, giving advantages ~0.4-0.9 instead of 0.
    xs = np.array([0.1, 0.55, 0.85, 0.9], np.float32)
    r = np.concatenate([np.zeros((4, 1), np.float32), np.repeat(xs[:, None], 3, axis=1)], axis=1)
    out, m = spo_tree(r, np.zeros((4, 4), bool), branching=(3,), mode="grpo")
    np.testing.assert_array_equal(out.values[:, 0], xs)
    np.testing.assert_array_equal(out.edge_valid, False)
    assert int(m["edges"]) == 0


# ------------------------------------------------------------------ official reference

def ref_build(node, depth, branching, r, fin, layout):
    """Nested dict tree as `_construct_tree` makes it (node = global index)."""
    D = len(branching)
    t = {"idx": node}
    if depth == D:
        t["reward"] = float(r[node])
        return t
    i = node - layout.offsets[depth]
    kids = [layout.offsets[depth + 1] + i * branching[depth] + j for j in range(branching[depth])]
    children = []
    for c in kids:
        if fin[c]:
            children.append({"idx": c, "reward": float(r[c])})
        else:
            children.append(ref_build(c, depth + 1, branching, r, fin, layout))
    t["children"] = children
    rewards = [c["reward"] for c in children]
    t["reward"] = float(np.mean(rewards))
    t["reward_std"] = float(np.std(rewards))
    return t


def ref_edges(tree, mode):
    """`extract_edges_from_tree` with only_adv_greater_than_zero=True -> {child idx: A}."""
    def bok(v):
        return 1 - (1 - v) ** 4
    out = {}

    def dfs(node, parent=None):
        if parent is not None:
            a = node["reward"] - parent["reward"]
            if mode == "grpo":
                a = a / (parent["reward_std"] + 1e-8)
            if a + bok(node["reward"]) - bok(parent["reward"]) != 0:
                out[node["idx"]] = a
        for c in node.get("children", []):
            dfs(c, node)
    dfs(tree)
    return out


def ref_values(tree, N):
    v = np.zeros(N)

    def dfs(node):
        v[node["idx"]] = node["reward"]
        for c in node.get("children", []):
            dfs(c)
    dfs(tree)
    return v


BR = (3, 2, 2)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), mode=st.sampled_from(["rloo", "grpo"]),
       p_fin=st.sampled_from([0.0, 0.3, 0.6]))
def test_matches_official_reference_on_random_trees(seed, mode, p_fin):
    rng = np.random.default_rng(seed)
    lay = tree_layout(BR)
    N, P = lay.num_nodes, 3
    r = rng.choice([0.0, 1.0], (P, N)).astype(np.float32)
    fin = rng.random((P, N)) < p_fin
    # garbage where the official tree has no reward (internal / absent nodes)
    r = np.where(fin | (lay.depth == len(BR))[None, :], r, rng.normal(size=(P, N)) * 100).astype(np.float32)
    out, m = spo_tree(r, fin, branching=BR, mode=mode)
    n_edges = 0
    for p in range(P):
        tree = ref_build(0, 0, BR, r[p], fin[p], lay)
        want = ref_edges(tree, mode)
        n_edges += len(want)
        got_valid = np.asarray(out.edge_valid[p])
        assert set(np.nonzero(got_valid)[0] + 1) == set(want)
        for node, a in want.items():
            np.testing.assert_allclose(float(out.edge_advantages[p, node - 1]), a, rtol=1e-5, atol=1e-6)
        exist = np.asarray(out.node_mask[p])
        np.testing.assert_allclose(np.where(exist, np.asarray(out.values[p]), 0), ref_values(tree, N),
                                   rtol=1e-6, atol=1e-7)
    assert int(m["edges"]) == n_edges


# ------------------------------------------------------------------ token broadcast

def test_edge_token_advantages_hand():
    # Two edges, A = 0.5 and -0.25; row 0 has 2 real tokens, row 1 three.
    # p: row 0 [0.5, 0.95 (masked)], row 1 [0.5, 0.5, 0.99 (masked)].
    # Kept tokens carry [0.5, -0.25, -0.25]: mean 0, unbiased var (0.25 + 2 * 0.0625) / 2
    # = 0.1875 -> A' = A / sqrt(0.1875 + 1e-8).
    p = np.array([[0.5, 0.95, 0.5], [0.5, 0.5, 0.99]], np.float32)
    mask = np.array([[True, True, False], [True, True, True]])
    raw, m = edge_token_advantages(np.array([0.5, -0.25]), mask, np.log(p), whiten=False)
    np.testing.assert_allclose(raw, [[0.5, 0, 0], [-0.25, -0.25, 0]])
    assert int(m["prob_masked_tokens"]) == 2
    s = np.sqrt(0.1875 + 1e-8)
    want = np.array([[0.5 / s, 0, 0], [-0.25 / s, -0.25 / s, 0]])
    adv, _ = edge_token_advantages(np.array([0.5, -0.25]), mask, np.log(p))
    np.testing.assert_allclose(adv, want, rtol=1e-5)
    # A third, invalid edge (A = 7) gets 0 and does not move the statistics; the [P, E]
    # layout (row p * E + e) gives the same as the flat one.
    p3 = np.concatenate([p, np.full((1, 3), 0.5, np.float32)])
    mask3 = np.concatenate([mask, np.ones((1, 3), bool)])
    adv3, _ = edge_token_advantages(np.array([[0.5, -0.25, 7.0]]), mask3, np.log(p3),
                                    valid=np.array([[True, True, False]]))
    np.testing.assert_allclose(adv3, np.concatenate([want, np.zeros((1, 3))]), rtol=1e-5)


# -------------------------------------------------------------- jit, registry, errors

def test_jit_equals_no_jit():
    r = np.array([[0, 1, 7, 0, 5, 0, 1], [0, 0, 0, 1, 0, 1, 1]], np.float32)
    f = np.array([[False, True, False, True, False, True, False], [False] * 7])
    for mode in ("rloo", "grpo"):
        jitted, _ = spo_tree(r, f, branching=B22, mode=mode)
        eager, _ = spo_tree.__wrapped__(r, f, branching=B22, mode=mode)     # without its jit
        for a, b in zip(jitted, eager):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    outer = jax.jit(lambda r, f: spo_tree(r, f, branching=B22)[0].edge_advantages)(r, f)
    np.testing.assert_allclose(outer, spo_tree(r, f, branching=B22)[0].edge_advantages)


def test_registered_and_errors():
    assert A.get("spo_tree") is spo_tree
    with pytest.raises(ValueError, match="rewards"):
        spo_tree(np.zeros((1, 6)), np.zeros((1, 6), bool), branching=B22)
    with pytest.raises(ValueError, match="finished"):
        spo_tree(np.zeros((1, 7)), np.zeros((1, 6), bool), branching=B22)
    with pytest.raises(ValueError, match="mode"):
        spo_tree(np.zeros((1, 7)), np.zeros((1, 7), bool), branching=B22, mode="ppo")
    with pytest.raises(ValueError, match="old_logp"):
        edge_token_advantages(np.zeros((3,)), np.ones((2, 4), bool), np.zeros((2, 4)))
