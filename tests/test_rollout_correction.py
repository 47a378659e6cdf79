"""Rollout correction (rlx.losses.rollout_correction) and its engine wiring — issue 19 item 6.

Expected values are worked by hand from the definitions in the module docstring (verl's
rollout_corr_helper / TRL's vllm_importance_sampling_mode); the Pearson correlation is
numpy's corrcoef.
"""

import math

import jax
import numpy as np
import pytest
from helpers.engine_configs import assert_refused, one_step_config

from rlx.losses.rollout_correction import agreement, rollout_correction
from rlx.rewards.checkers import RewardStats
from rlx.train import rollout
from rlx.train.engine import Engine
from rlx.train.kinds import groups as groups_kind
from rlx.train.kinds.base import StepInputs
from rlx.train.rollout import to_host

# Row 0: token ratios pi_old / pi_rollout = 2, 0.5, 1 (product 1, geometric mean 1).
# Row 1: ratios 3, 1 and a padding column: product 3, geometric mean sqrt(3) = 1.732.
TRAIN = np.log(np.array([[0.5, 0.2, 0.9], [0.6, 0.3, 0.7]], np.float32))
ROLL = np.log(np.array([[0.25, 0.4, 0.9], [0.2, 0.3, 0.1]], np.float32))
MASK = np.array([[1, 1, 1], [1, 1, 0]], bool)


def test_truncated_importance_weights_by_hand():
    w, keep, m = rollout_correction(TRAIN, ROLL, MASK, is_level="token", is_threshold=1.5)
    np.testing.assert_allclose(w, [[1.5, 0.5, 1.0], [1.5, 1.0, 0.0]], rtol=1e-6)
    np.testing.assert_array_equal(keep, MASK)                    # no masking asked for
    np.testing.assert_allclose(m["is_truncated_frac"], 2 / 5, rtol=1e-6)   # the 2 and the 3
    np.testing.assert_allclose(m["is_weight_mean"], (1.5 + 0.5 + 1 + 1.5 + 1) / 5, rtol=1e-6)
    w, _, _ = rollout_correction(TRAIN, ROLL, MASK, is_level="sequence", is_threshold=2.0)
    np.testing.assert_allclose(w, [[1.0, 1.0, 1.0], [2.0, 2.0, 0.0]], rtol=1e-6)   # 1, min(3, 2)


@pytest.mark.parametrize("level, want", [
    ("token", [[0, 0, 1], [0, 1, 0]]),          # 2 > 1.8, 0.5 < 1/1.8, 1 kept; 3 > 1.8, 1 kept
    ("sequence", [[1, 1, 1], [0, 0, 0]]),       # products 1 (kept) and 3 (> 1.8: the row goes)
    ("geometric", [[1, 1, 1], [1, 1, 0]]),      # geometric means 1 and 1.732 < 1.8: both kept
])
def test_masking_levels_by_hand(level, want):
    w, keep, m = rollout_correction(TRAIN, ROLL, MASK, is_level="none", rs_level=level, rs_threshold=1.8)
    np.testing.assert_array_equal(keep, np.array(want, bool))
    np.testing.assert_array_equal(w, MASK.astype(np.float32))    # IS off: weight 1 on the mask
    rejected = MASK & ~np.array(want, bool)
    np.testing.assert_allclose(m["masked_frac"], rejected.sum() / MASK.sum(), rtol=1e-6)
    np.testing.assert_allclose(m["seq_masked_frac"], rejected.any(1).mean(), rtol=1e-6)


def test_agreement_by_hand():
    m = agreement(TRAIN[:1], ROLL[:1], MASK[:1])
    d = np.log([2.0, 0.5, 1.0])
    np.testing.assert_allclose(m["abs_dlogp_mean"], 2 * math.log(2) / 3, rtol=1e-5)
    np.testing.assert_allclose(m["abs_dlogp_max"], math.log(2), rtol=1e-5)
    np.testing.assert_allclose(m["prob_abs_diff_mean"], (0.25 + 0.2 + 0) / 3, rtol=1e-5)
    np.testing.assert_allclose(m["prob_pearson"], np.corrcoef([0.5, 0.2, 0.9], [0.25, 0.4, 0.9])[0, 1], rtol=1e-5)
    np.testing.assert_allclose(m["kl_k1"], 0.0, atol=1e-6)                      # -mean(d) = 0
    np.testing.assert_allclose(m["kl_k3"], np.mean(np.exp(d) - 1 - d), rtol=1e-5)   # 0.5 / 3
    same = agreement(TRAIN, TRAIN, MASK)
    assert float(same["prob_pearson"]) == 1.0 and float(same["abs_dlogp_max"]) == 0.0


def test_bad_levels_are_refused():
    with pytest.raises(ValueError, match="is_level"):
        rollout_correction(TRAIN, ROLL, MASK, is_level="seq")
    with pytest.raises(ValueError, match="rs_level"):
        rollout_correction(TRAIN, ROLL, MASK, rs_level="mean")


# ------------------------------------------------------------------------------ engine

SHIFT = {0: 1.0, 1: 0.5}          # sampler log-probs of rows 0 and 1 lowered by these
REAL_GENERATE_ROUND = groups_kind.generate_round


def _one_correct_per_group(task, texts, examples, **kw):
    """Rewards 1, 0, 0, 0 in each group of 4 (so every GRPO advantage is nonzero)."""
    r = (np.arange(len(texts)) % 4 == 0).astype(np.float32)
    return r, np.stack([np.zeros_like(r), r]), RewardStats(n=len(texts))


def test_engine_weights_advantages_and_masks_tokens(tmp_path, monkeypatch):
    # One engine, three rollouts of the same samples (the sampler's RNG state restored):
    # no correction, truncated IS at token level, masking at token level. The sampler's
    # log-probs of rows 0 and 1 are lowered by SHIFT (a stand-in for a bf16 sampler):
    # pi_old / pi_rollout = e^1 and e^0.5 there.
    def shifted(*a, **kw):
        g, info = REAL_GENERATE_ROUND(*a, **kw)
        lp = np.array(g["logprobs"]).reshape((-1,) + g["logprobs"].shape[2:])
        cm = g["completion_mask"].reshape(lp.shape)
        for row, s in SHIFT.items():
            lp[row] = np.where(cm[row], lp[row] - s, lp[row])
        g["logprobs"] = lp.reshape(g["logprobs"].shape)
        return g, info

    monkeypatch.setattr(groups_kind, "generate_round", shifted)
    monkeypatch.setattr(rollout.rw, "score", _one_correct_per_group)
    e = Engine(one_step_config("quickstart", tmp_path / "run", "rl.prompts_per_step=2", "rl.group_size=4",
                               "rl.minibatches=1", "rl.recompute_old_logprobs=True"))
    state0, rc = e.ctx.sampler_state, e.config.rl.rollout_correction

    def collect(is_level, rs_level):
        rc.is_level, rc.rs_level = is_level, rs_level
        e.ctx.sampler_state = state0
        with e.sharding():
            r = e.kind.collect(StepInputs(params=e.state.params, reference=None, critic=None,
                                          key=jax.random.key(1), step=0, curriculum=None))
        return {k: to_host(getattr(r.batch, k)) for k in ("advantages", "completion_mask", "loss_mask")}, r.metrics

    try:
        base, m0 = collect("none", "none")
        tis, m1 = collect("token", "none")
        mis, m2 = collect("none", "token")
    finally:
        e.close()
    mask = base["completion_mask"]
    assert np.all(np.abs(base["advantages"][mask]) > 0.1)     # GRPO of 1, 0, 0, 0: 1.5 and -0.5
    np.testing.assert_array_equal(mask, tis["completion_mask"])           # the same samples
    # Agreement, logged whatever the correction: the largest |delta| is row 0's 1.0
    # (the sampler and the trainer otherwise agree to float32 rounding).
    assert abs(m0["rollout/abs_dlogp_max"] - 1.0) < 1e-3 and m0["rollout/prob_pearson"] > 0.5
    # Truncated IS (C = 2): row 0 weighted by min(e, 2) = 2, row 1 by e^0.5, the rest by 1.
    want = np.ones(mask.shape[0])
    want[0], want[1] = 2.0, math.exp(0.5)
    np.testing.assert_allclose(tis["advantages"], base["advantages"] * want[:, None], rtol=2e-3, atol=1e-6)
    assert m1["rollout/is_truncated_frac"] > 0
    # Masking in [1/2, 2]: row 0's tokens (ratio e) leave the loss, row 1's (e^0.5) stay.
    np.testing.assert_array_equal(mis["loss_mask"][0], np.zeros_like(mask[0]))
    np.testing.assert_array_equal(mis["loss_mask"][1:], mask[1:])
    np.testing.assert_allclose(m2["rollout/masked_frac"], mask[0].sum() / mask.sum(), rtol=1e-6)


@pytest.mark.parametrize("overrides, key", [
    (("rl.rollout_correction.is_level=token", "rl.recompute_old_logprobs=False"), "rl.rollout_correction"),
    (("rl.rollout_correction.is_level=token", "rl.loss=disco"), "rl.rollout_correction.is_level"),
    (("rl.rollout_correction.rs_level=mean",), "rl.rollout_correction.rs_level"),
])
def test_bad_correction_settings_are_refused(tmp_path, overrides, key):
    assert_refused("quickstart", tmp_path, ["rl.recompute_old_logprobs=True", *overrides], key)
