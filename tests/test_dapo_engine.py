"""DAPO dynamic sampling wired as the official recipe — issue 19 item 4.

Engine-level: a real `Engine` on `configs/dapo_arith.py` (the official DAPO sampling
settings on the quickstart task, untrained model), with the task reward replaced by a
function of the round and of the sample's place in its group, so that which groups have
reward variance — and so every count below — follows by hand. Official behaviour
(verl `recipe/dapo`): rounds of gen_batch_size = 3 x P prompts, groups kept iff their
accuracy varies, the kept groups beyond P discarded, at most 10 rounds.
"""

import logging
import os

import jax
import numpy as np
import pytest
from helpers.engine_configs import ROOT, assert_refused, one_step_config

from rlx.rewards.checkers import RewardStats
from rlx.train import rollout
from rlx.train.config import load_config, validate
from rlx.train.engine import Engine

P, G = 4, 4


SCORER = [None]        # the reward function of the shared engine's current test


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """One engine for every test (its programs compile once); each test sets the reward
    function and the dynamic-sampling settings it needs, and starts without a carry."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rollout.rw, "score", lambda *a, **kw: SCORER[0](*a, **kw))
        e = Engine(one_step_config("dapo_arith", tmp_path_factory.mktemp("dapo"), f"rl.prompts_per_step={P}",
                                   f"rl.group_size={G}", "rl.minibatches=1", "rl.epochs=1", "rl.overlong_cache=0"))
        yield e
        e.close()


def _setup(e, varying, **rl):
    e.kind.carry = None
    r = e.config.rl
    r.max_sampling_rounds, r.dynamic_overflow, r.allow_partial_batch = 10, "discard", False
    for k, v in rl.items():
        r[k] = v
    SCORER[0], calls = _scores(varying)
    return calls


def _scores(varying):
    """A reward function for `rollout.rw.score`: call r (one generation round) gives the
    group of its i-th prompt rewards 0, 1, 0, 1 (variance) if varying(r, i), else all 1."""
    calls = []

    def score(task, texts, examples, **kw):
        r = len(calls)
        calls.append(len(texts) // G)
        out = np.ones(len(texts), np.float32)
        for j in range(len(texts)):
            if varying(r, j // G):
                out[j] = float(j % 2)
        return out, np.stack([np.zeros_like(out), out]), RewardStats(n=len(texts))    # (format, answer)
    return score, calls


def _step(e):
    before = jax.tree.map(np.asarray, e.state.params)
    m = e.rl_step()
    e.step += 1
    changed = any(not np.array_equal(a, np.asarray(b)) for a, b in zip(jax.tree.leaves(before),
                                                                        jax.tree.leaves(e.state.params)))
    return m, changed


def test_official_defaults_of_the_dapo_config():
    c = validate(load_config(os.path.join(ROOT, "configs", "dapo.py")))
    assert (c.rl.gen_batch_multiple, c.rl.max_sampling_rounds) == (3, 10)
    assert (c.rl.dynamic_overflow, c.rl.allow_partial_batch) == ("discard", False)
    assert c.rl.overlong_cache == c.sampler.max_new_tokens // 5      # 4096 of 20480


def test_full_batch_of_varying_groups_with_the_overflow_discarded(engine):
    # Round 0 samples 3P = 12 prompts; every group varies: 12 kept, the first 4 trained,
    # the other 8 discarded, nothing carried, one round. The next step starts from nothing.
    calls = _setup(engine, lambda r, i: True)
    m, changed = _step(engine)
    assert calls == [3 * P]
    assert (m["dynamic/rounds"], m["dynamic/generated_groups"], m["dynamic/kept_groups"]) == (1, 12, 12)
    assert (m["dynamic/discarded"], m["dynamic/carried_out"], m["dynamic/skipped"]) == (8, 0, 0)
    assert m["dynamic/filled"] == 1 and m["groups/zero_variance_frac"] == 0 and changed
    assert "loss" in m and engine.kind.carry is None
    m2, _ = _step(engine)
    assert m2["dynamic/carried_in"] == 0 and m2["dynamic/rounds"] == 1


def test_rounds_accumulate_until_the_batch_is_full(engine):
    # One varying group per round (prompt 0 of each round): 4 rounds fill P = 4; the
    # batch holds them in generation order, nothing is left over.
    calls = _setup(engine, lambda r, i: i == 0)
    m, changed = _step(engine)
    assert calls == [12] * 4
    assert (m["dynamic/rounds"], m["dynamic/kept_groups"], m["dynamic/discarded"]) == (4, 4, 0)
    assert m["dynamic/filled"] == 1 and m["dynamic/skipped"] == 0 and changed


@pytest.mark.parametrize("overflow", ["discard", "recover"])
def test_rounds_running_out_skip_the_update(engine, caplog, overflow):
    # Only round 0's prompt 0 varies: after rl.max_sampling_rounds = 3 rounds 1 of 4
    # groups is kept. Official DAPO stops the run; rlx skips the update (the policy is
    # unchanged, no loss is logged), warns, and counts it. "discard" drops the kept
    # group; "recover" keeps it for the next step, which starts from it.
    calls = _setup(engine, lambda r, i: r == 0 and i == 0, max_sampling_rounds=3, dynamic_overflow=overflow)
    with caplog.at_level(logging.WARNING, logger="rlx"):
        m, changed = _step(engine)
    assert calls == [12] * 3
    assert m["dynamic/skipped"] == 1 and m["dynamic/filled"] == 0 and not changed
    assert "loss" not in m and "rl.allow_partial_batch" in caplog.text
    if overflow == "discard":
        assert (m["dynamic/discarded"], m["dynamic/carried_out"]) == (1, 0) and engine.kind.carry is None
    else:
        assert (m["dynamic/discarded"], m["dynamic/carried_out"]) == (0, 1)
        m2, _ = _step(engine)
        assert m2["dynamic/carried_in"] == 1


def test_partial_batch_trains_when_allowed(engine):
    # As above with rl.allow_partial_batch=True: the update runs on the one kept group
    # (the three empty slots are invalid rows).
    _setup(engine, lambda r, i: r == 0 and i == 0, max_sampling_rounds=3, allow_partial_batch=True)
    m, changed = _step(engine)
    assert m["dynamic/skipped"] == 0 and m["dynamic/filled"] == 0 and changed and "loss" in m
    assert m["dynamic/discarded"] == 0


@pytest.mark.parametrize("override, key", [("rl.dynamic_overflow=carry", "rl.dynamic_overflow"),
                                           ("rl.gen_batch_multiple=0", "rl.gen_batch_multiple")])
def test_bad_dynamic_sampling_settings_are_refused(tmp_path, override, key):
    assert_refused("dapo_arith", tmp_path, [override], key)
