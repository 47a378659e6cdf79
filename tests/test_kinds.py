"""The rollout-kind registry (rlx.train.kinds): which kind a config trains with, and that
every registered kind is a RolloutKind. (The kinds end to end: tests/test_engine.py,
whose runs are pinned to the metrics of the engine before the split, tests/helpers/golden.py.)"""

import importlib
import os

import pytest

from rlx.train import kinds
from rlx.train.config import apply_overrides, load_config, validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("config,overrides,want", [
    ("quickstart", (), "groups"),
    ("quickstart", ("rl.estimator=gae", "rl.estimator_kwargs.lam=0.95"), "groups"),
    ("dapo_arith", (), "groups"),
    ("spo_chain_cpu", (), "spo_chain"),
    ("spo_tree_cpu", (), "spo_tree"),
    ("dpo", (), "preference"),
    ("quickstart", ("rl.loss=ipo", "rl.minibatches=1", "pref.source=offline"), "preference"),
    ("gigpo_gridworld", (), "episodes"),
    ("grpo_gridworld", (), "episodes"),
    ("gigpo_sokoban", (), "episodes"),
    ("gigpo_tool_countdown", (), "episodes"),
])
def test_kind_of_a_config(config, overrides, want):
    c = load_config(os.path.join(ROOT, "configs", f"{config}.py"))
    apply_overrides(c, list(overrides))
    assert kinds.kind_name(validate(c)) == want


def test_every_registered_kind_is_a_rollout_kind():
    assert set(kinds.KINDS) == {"groups", "spo_chain", "spo_tree", "preference", "episodes"}
    for name, where in kinds.KINDS.items():
        module, cls = where.split(":")
        k = getattr(importlib.import_module(module), cls)
        assert issubclass(k, kinds.RolloutKind) and k.name == name
        assert k.update in ("policy", "preference")


def test_shared_log_prob_helpers():
    # row_kl: k1 = old - ref summed over the mask; by hand: row 0: (-1 - 0) + (masked out) = -1,
    # row 1: (-0.5 - -1) + (-2 - -2) = 0.5.
    import types

    import jax.numpy as jnp
    import numpy as np

    from rlx.train.kinds.base import old_and_ref_logprobs, row_kl
    old = jnp.array([[-1.0, -3.0], [-0.5, -2.0]])
    ref = jnp.array([[0.0, 0.0], [-1.0, -2.0]])
    mask = jnp.array([[True, False], [True, True]])
    np.testing.assert_allclose(row_kl(old, ref, mask, "k1"), [-1.0, 0.5])
    # the sampler's log-probs unless recomputed; the reference's forward only when there is one
    calls = []
    progs = types.SimpleNamespace(logprobs=lambda p, *a: calls.append(p) or p)
    ctx = types.SimpleNamespace(programs=progs)
    dev = {"prompt_tokens": 0, "prompt_mask": 0, "completion_tokens": 0, "completion_mask": 0, "logprobs": "sampler"}
    inputs = types.SimpleNamespace(params="policy", reference=None)
    assert old_and_ref_logprobs(ctx, inputs, dev, False) == ("sampler", None) and calls == []
    inputs.reference = "reference"
    assert old_and_ref_logprobs(ctx, inputs, dev, True) == ("policy", "reference")
