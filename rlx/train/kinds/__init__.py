"""Rollout kinds: each turns (params, tasks, key) into one training batch plus metrics.

    kind        module                   chosen by
    groups      rlx.train.kinds.groups      every other config (GRPO, PPO, DAPO, ...)
    spo_chain   rlx.train.kinds.spo_chain   rl.estimator = "spo_chain"
    spo_tree    rlx.train.kinds.spo_tree    rl.estimator = "spo_tree"
    preference  rlx.train.kinds.preference  rl.loss names a preference loss (dpo, ipo, ...)
    episodes    rlx.train.kinds.episodes    env.name names an environment (multi-turn agents)

The interface is `rlx.train.kinds.base.RolloutKind`; the engine (`rlx.train.engine`) is
the loop that drives any of them. A new kind is a module with a `RolloutKind` subclass,
an entry in `KINDS` and a case in `kind_name` (plus, where it needs them, its config
fields in `rlx.train.config`).
"""

from __future__ import annotations

import importlib

from rlx.train.kinds.base import Rollout, RolloutKind, RunContext, StepInputs

# name -> "module:class", imported when used
KINDS = {
    "groups": "rlx.train.kinds.groups:Groups",
    "spo_chain": "rlx.train.kinds.spo_chain:SPOChain",
    "spo_tree": "rlx.train.kinds.spo_tree:SPOTree",
    "preference": "rlx.train.kinds.preference:Preference",
    "episodes": "rlx.train.kinds.episodes:Episodes",
}


def kind_name(config) -> str:
    """The rollout kind a config trains with."""
    from rlx.train.preference import is_preference
    if config.env.name:
        return "episodes"
    if is_preference(config.rl.loss):
        return "preference"
    if config.rl.estimator in ("spo_chain", "spo_tree"):
        return config.rl.estimator
    return "groups"


def make_kind(config, ctx: RunContext) -> RolloutKind:
    """The config's rollout kind (`kind_name`), built on the run context."""
    module, cls = KINDS[kind_name(config)].split(":")
    return getattr(importlib.import_module(module), cls)(ctx)


__all__ = ["KINDS", "Rollout", "RolloutKind", "RunContext", "StepInputs", "kind_name", "make_kind"]
