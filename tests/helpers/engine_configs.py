"""Configs of one-step engine tests (the issue-19 engine-level tests share them)."""

import os

import jax
import numpy as np
import pytest

from rlx.train.config import ConfigError, apply_overrides, load_config, validate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# One RL step, no SFT warm start, no evaluation, no checkpoint, one device.
ONE_STEP = ("log.progress=False", "data.eval_prompts=0", "sft.steps=0", "train.steps=1", "train.eval_every=0",
            "checkpoint.interval=0", "mesh.shape=(1, 1, 1)")


def one_step_config(name: str, run_dir, *overrides):
    """configs/<name>.py, validated, for one untrained step in `run_dir`."""
    c = load_config(os.path.join(ROOT, "configs", f"{name}.py"))
    apply_overrides(c, [f"run_dir={run_dir}", *ONE_STEP, *overrides])
    return validate(c)


def assert_refused(name: str, run_dir, overrides, key: str) -> None:
    """configs/<name>.py with `overrides` fails validation with a message naming `key`."""
    c = load_config(os.path.join(ROOT, "configs", f"{name}.py"))
    apply_overrides(c, [f"run_dir={run_dir}", *overrides])
    with pytest.raises(ConfigError, match=key):
        validate(c)


def sgd_update(cfg, params, spec, rows: dict):
    """The update program of `spec` (SGD, lr 0.1) on one batch of numpy rows."""
    import optax

    from rlx.train.state import TrainState
    from rlx.train.update import make_update
    from rlx.types import Batch
    opt = optax.sgd(0.1)
    state = TrainState.create(params, opt, jax.random.key(1))
    return jax.jit(make_update(cfg, spec, opt))(state, Batch.create(**{k: np.asarray(v) for k, v in rows.items()}))
