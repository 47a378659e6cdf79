"""Tests for GiGPO (rlx.advantages.step).

The numpy reference follows the official code's structure: dictionaries keyed by
anchor state, per-trajectory backward loops for the discounted returns, and the
episode statistics over step rows (or trajectories) — rlx uses sorting and segment sums.
"""

from collections import defaultdict

import jax
import numpy as np
import pytest

import rlx.advantages as A
from rlx.advantages.step import segment_stats


def np_gigpo(rew, anchor, step_valid, gamma=0.95, w=1.0, mode="mean_norm", per_step=True,
             eps=1e-6):
    P, G, S = rew.shape
    out = np.zeros((P, G, S))
    for p in range(P):
        traj_ok = step_valid[p].any(1) & np.all(np.isfinite(rew[p]) | ~step_valid[p], 1)
        R = np.array([rew[p, g][step_valid[p, g]].sum() if traj_ok[g] else 0.0 for g in range(G)])
        AE = np.zeros(G)
        good = np.flatnonzero(traj_ok)
        reps = [step_valid[p, g].sum() if per_step else 1 for g in good]
        vals = np.repeat(R[good], reps)
        if vals.size == 1:          # official: a single row's statistics are mean 0, std 1
            AE[good] = R[good] / (1 + eps) if mode == "mean_std_norm" else R[good]
        elif good.size >= 2:
            if vals.max() > vals.min():
                AE[good] = R[good] - vals.mean()
                if mode == "mean_std_norm":
                    AE[good] /= vals.std(ddof=1) + eps
        groups = defaultdict(list)
        for g in good:
            steps = np.flatnonzero(step_valid[p, g])
            ret, run = {}, 0.0
            for s in reversed(steps):
                run = rew[p, g, s] + gamma * run
                ret[s] = run
            for s in steps:
                groups[int(anchor[p, g, s])].append((g, s, ret[s]))
        for items in groups.values():
            vals = np.array([x[2] for x in items])
            for g, s, rt in items:
                a_s = 0.0
                if len(items) >= 2:
                    a_s = rt - vals.mean()
                    if mode == "mean_std_norm":
                        a_s /= vals.std(ddof=1) + eps
                out[p, g, s] = AE[g] + w * a_s
    return out


def random_agent_batch(seed, P=3, G=4, S=5, n_states=4):
    rng = np.random.default_rng(seed)
    rew = np.where(rng.random((P, G, S)) < 0.3, rng.normal(size=(P, G, S)), 0).astype(np.float32)
    anchor = rng.integers(0, n_states, size=(P, G, S))
    lengths = rng.integers(1, S + 1, size=(P, G))
    valid = np.arange(S)[None, None, :] < lengths[:, :, None]
    return rew, anchor, valid


def test_hand_case():
    # Task with 2 trajectories, 2 steps, gamma .5, per-trajectory episode statistics:
    #   traj 0: rewards [0, 1], states [s0, s1];  traj 1: rewards [0, 0], states [s0, s2]
    # Episode: R = [1, 0], mean .5 -> A^E = [.5, -.5].
    # Step returns: traj 0 [0 + .5 * 1, 1] = [.5, 1]; traj 1 [0, 0].
    # Anchor s0 = {(0,0): .5, (1,0): 0}, mean .25 -> A^S = +.25 / -.25; s1, s2 singletons -> 0.
    # A = A^E + A^S: traj 0 [.75, .5], traj 1 [-.75, -.5].
    rew = np.array([[[0.0, 1.0], [0.0, 0.0]]], np.float32)
    anchor = np.array([[[0, 1], [0, 2]]])
    adv, m = A.gigpo(rew, anchor, gamma=0.5, episode_stats_per_step=False)
    np.testing.assert_allclose(adv, [[[0.75, 0.5], [-0.75, -0.5]]], rtol=1e-6)
    assert int(m["singleton_anchor_steps"]) == 2
    np.testing.assert_allclose(m["anchor_groups"], 3.0, rtol=1e-6)
    # per-step statistics (official default) only differ with unequal lengths: drop
    # traj 1's second step -> weights 2 and 1, mean (2 * 1 + 0) / 3 = 2/3 -> A^E = [1/3, -2/3].
    sv = np.array([[[True, True], [True, False]]])
    adv, _ = A.gigpo(rew, anchor, sv, gamma=0.5)
    np.testing.assert_allclose(adv, [[[1 / 3 + 0.25, 1 / 3], [-2 / 3 - 0.25, 0]]], rtol=1e-5)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("mode,per_step", [("mean_norm", True), ("mean_std_norm", False)])
def test_matches_reference(seed, mode, per_step):
    rew, anchor, valid = random_agent_batch(seed)
    adv, _ = A.gigpo(rew, anchor, valid, mode=mode, episode_stats_per_step=per_step)
    ref = np_gigpo(rew, anchor, valid, mode=mode, per_step=per_step)
    np.testing.assert_allclose(adv, ref, rtol=1e-4, atol=1e-5)


def test_episode_rewards_argument_and_step_weight():
    rew, anchor, valid = random_agent_batch(7)
    ep = np.arange(12, dtype=np.float32).reshape(3, 4)
    # A^S alone (omega = 1) is the difference to A^E alone (omega = 0).
    a1, _ = A.gigpo(rew, anchor, valid, episode_rewards=ep, step_weight=1.0)
    a0, _ = A.gigpo(rew, anchor, valid, episode_rewards=ep, step_weight=0.0)
    a2, _ = A.gigpo(rew, anchor, valid, episode_rewards=ep, step_weight=2.0)
    np.testing.assert_allclose(np.asarray(a2) - a0, 2 * (np.asarray(a1) - a0), rtol=1e-5, atol=1e-5)
    # with step_weight 0 every step of a trajectory carries its episode advantage,
    # here R - weighted mean of the episode rewards (per-step weights).
    n = valid.sum(2)
    mean = (ep * n).sum(1) / n.sum(1)
    np.testing.assert_allclose(np.asarray(a0), np.where(valid, (ep - mean[:, None])[:, :, None], 0),
                               rtol=1e-5, atol=1e-5)


def test_anchor_ids_are_compared_within_a_task_only():
    # the same id in two different tasks is two different states: both anchor groups are
    # singletons (A^S = 0); each task is a single row, so A = A^E = R (official).
    rew = np.array([[[1.0]], [[0.0]]], np.float32)   # P = 2, G = 1, S = 1
    anchor = np.zeros((2, 1, 1), np.int32)
    adv, m = A.gigpo(rew, anchor)
    np.testing.assert_array_equal(adv, rew)
    assert int(m["singleton_anchor_steps"]) == 2


def test_segment_stats_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 12)).astype(np.float32)
    ids = rng.integers(0, 4, size=(3, 12))
    valid = rng.random((3, 12)) < 0.8
    mean, std, cnt = jax.jit(segment_stats, static_argnames="ddof")(x, ids, valid, ddof=1)
    for p in range(3):
        for i in range(12):
            if not valid[p, i]:
                assert mean[p, i] == 0 and cnt[p, i] == 0
                continue
            grp = x[p][valid[p] & (ids[p] == ids[p, i])].astype(np.float64)
            assert cnt[p, i] == grp.size
            np.testing.assert_allclose(mean[p, i], grp.mean(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(std[p, i], grp.std(ddof=1) if grp.size > 1 else 0.0,
                                       rtol=1e-4, atol=1e-6)


def test_degenerate_inputs():
    rew, anchor, valid = random_agent_batch(2)
    # a single trajectory per task: counted; A^E = 0 unless it is a single row (below).
    adv, m = A.gigpo(rew[:, :1], anchor[:, :1], valid[:, :1])
    assert int(m["degenerate_groups"]) == 3
    ref = np_gigpo(rew[:, :1], anchor[:, :1], valid[:, :1])
    np.testing.assert_allclose(adv, ref, rtol=1e-5, atol=1e-6)
    # every state distinct and equal episode rewards: all 0.
    distinct = np.arange(3 * 4 * 5).reshape(3, 4, 5)
    adv, m = A.gigpo(np.zeros_like(rew), distinct, valid)
    assert np.all(np.asarray(adv) == 0)
    # all invalid
    adv, m = A.gigpo(rew, anchor, np.zeros_like(valid))
    assert np.all(np.asarray(adv) == 0) and int(m["invalid_samples"]) == 12
    # a NaN reward makes its trajectory invalid; the others match the reference without it
    bad = rew.copy()
    bad[0, 1, 0] = np.nan
    adv, m = A.gigpo(bad, anchor, valid)
    assert np.all(np.isfinite(adv)) and np.all(np.asarray(adv[0, 1]) == 0)
    assert int(m["nonfinite_rewards"]) == 1
    v2 = valid.copy()
    v2[0, 1] = False
    np.testing.assert_allclose(adv, np_gigpo(rew, anchor, v2), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("per_step", [True, False])
def test_single_row_task_gets_its_own_score(per_step):
    # verl-agent's episode statistics give a group of ONE row mean 0 and std 1, so that
    # row's A^E is its score R. Task 0: one trajectory of one step, reward 0.7: one row
    # either way, A = 0.7 (its anchor group is a singleton: A^S = 0). Task 1: one
    # trajectory of two steps, rewards 0.2 and 0.3 (R = 0.5): with per-step statistics it
    # is two rows of 0.5, A^E = 0.5 - 0.5 = 0; with per-trajectory statistics one row, A^E
    # = 0.5; A^S = 0 (two distinct states). "mean_std_norm" divides by 1 + 1e-6.
    rew = np.array([[[0.7, 0.0]], [[0.2, 0.3]]], np.float32)
    valid = np.array([[[True, False]], [[True, True]]])
    anchor = np.array([[[0, 1]], [[0, 1]]])
    for mode, scale in (("mean_norm", 1.0), ("mean_std_norm", 1 / (1 + 1e-6))):
        adv, _ = A.gigpo(rew, anchor, valid, mode=mode, episode_stats_per_step=per_step)
        t1 = 0.0 if per_step else 0.5 * scale
        np.testing.assert_allclose(adv, [[[0.7 * scale, 0.0]], [[t1, t1]]], rtol=1e-6, atol=1e-7)


def test_jit_equals_no_jit_and_to_tokens_layout():
    rew, anchor, valid = random_agent_batch(5)
    with jax.disable_jit():
        adv, _ = A.gigpo(rew, anchor, valid)
    adv_j, _ = A.gigpo(rew, anchor, valid)
    np.testing.assert_allclose(adv_j, adv, rtol=1e-5, atol=1e-6)
    # step rows ordered (p, g, s): row (p * G + g) * S + s carries adv[p, g, s].
    P, G, S = rew.shape
    tok = A.to_tokens(np.asarray(adv_j).reshape(P * G, S), np.ones((P * G * S, 3), bool))
    np.testing.assert_allclose(np.asarray(tok)[(1 * G + 2) * S + 3], adv_j[1, 2, 3])


def test_bad_inputs():
    with pytest.raises(ValueError, match="gigpo: step_rewards must be \\[P, G, S\\]"):
        A.gigpo(np.zeros((2, 3)), np.zeros((2, 3), np.int32))
    with pytest.raises(TypeError, match="gigpo: anchor_ids must be an integer array"):
        A.gigpo(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="gigpo: mode must be"):
        A.gigpo(np.zeros((1, 2, 3)), np.zeros((1, 2, 3), np.int32), mode="std")


def test_permuting_trajectories_permutes_advantages():
    rew, anchor, valid = random_agent_batch(9)
    perm = np.array([2, 0, 3, 1])
    adv, _ = A.gigpo(rew, anchor, valid)
    adv_p, _ = A.gigpo(rew[:, perm], anchor[:, perm], valid[:, perm])
    np.testing.assert_allclose(adv_p, np.asarray(adv)[:, perm], rtol=1e-5, atol=1e-6)
