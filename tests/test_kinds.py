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
