"""BNPO's advantage decomposition driven by the engine — issue 19 item 5.

A real `Engine` on `configs/bnpo_arith.py` (untrained quickstart model) whose reward
components are replaced by known patterns; the batch's advantages must equal the numpy
reference of tests/test_advantages_beta.py (written from the BNPO formulas) applied to
those components: one BNPO advantage per weighted component, averaged (official
`use_advantage_decomposition`: the accuracy and format rewards, each normalized).
"""

import os

import jax
import numpy as np
import pytest
from helpers.engine_configs import ROOT, assert_refused, one_step_config
from test_advantages_beta import np_bnpo

from rlx.rewards.checkers import RewardStats
from rlx.train import rollout
from rlx.train.config import load_config, validate
from rlx.train.engine import Engine
from rlx.train.kinds.base import StepInputs
from rlx.train.rollout import to_host

P, G = 4, 4


# Components per (prompt, sample): format and answer, each in {0, 1}, chosen so that
# their group means differ (and so do their Beta fits).
FORMAT = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]], np.float32)
ANSWER = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0], [1, 0, 1, 0]], np.float32)


def _components(task, texts, examples, weights=None, **kw):
    w = (0.0, 1.0) if weights is None else weights
    comps = np.stack([FORMAT.reshape(-1), ANSWER.reshape(-1)])
    return (w[0] * comps[0] + w[1] * comps[1]).astype(np.float32), comps, RewardStats(n=len(texts))


def test_decomposition_feeds_each_component_to_bnpo(tmp_path, monkeypatch):
    # One engine, three settings (set on its config between rollouts).
    monkeypatch.setattr(rollout.rw, "score", _components)
    e = Engine(one_step_config("bnpo_arith", tmp_path / "run", f"rl.prompts_per_step={P}", f"rl.group_size={G}",
                               "rl.minibatches=1"))
    cases = [
        ((1.0, 1.0), True, 1.0, np_bnpo(np.stack([FORMAT, ANSWER]))[0]),
        ((1.0, 1.0), False, 2.0, np_bnpo(FORMAT + ANSWER, r_max=2.0)[0]),   # the total, in [0, 2]
        ((), True, 1.0, np_bnpo(ANSWER)[0]),            # weight 0: format is not part of the reward
    ]
    try:
        for weights, decompose, r_max, want in cases:
            e.config.data.reward_weights, e.config.rl.advantage_decomposition = weights, decompose
            e.config.rl.estimator_kwargs.r_max = r_max
            with e.sharding():
                r = e.kind.collect(StepInputs(params=e.state.params, reference=None, critic=None,
                                              key=jax.random.key(0), step=0, curriculum=None))
            adv, mask = to_host(r.batch.advantages), to_host(r.batch.completion_mask)
            first = np.argmax(mask, axis=1)              # every row has >= 1 completion token
            got = adv[np.arange(len(adv)), first].reshape(P, G)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=str((weights, decompose)))
    finally:
        e.close()


@pytest.mark.parametrize("overrides, key", [
    (("rl.advantage_decomposition=True", "rl.estimator=grpo"), "rl.advantage_decomposition"),
    (("rl.advantage_decomposition=True", "rl.overlong_cache=1"), "rl.advantage_decomposition"),
    (("data.reward_weights=(1.0,)",), "data.reward_weights"),
])
def test_bad_decomposition_settings_are_refused(tmp_path, overrides, key):
    assert_refused("bnpo_arith", tmp_path, overrides, key)


def test_bnpo_and_disco_configs_match_their_scripts():
    bnpo = validate(load_config(os.path.join(ROOT, "configs", "bnpo.py")))
    assert dict(bnpo.rl.loss_kwargs) == {"eps_low": 0.2, "eps_high": 0.28, "dual_clip": 10.0}
    assert bnpo.rl.agg == "seq-mean-token-sum" and bnpo.rl.kl_coef == 0
    disco = validate(load_config(os.path.join(ROOT, "configs", "disco.py")))
    assert disco.rl.loss_kwargs["kl_estimator"] == "k1" and disco.sampler.temperature == 0.6
    assert disco.rl.policy_temperature == 0.0                  # 0 = the sampler's 0.6
