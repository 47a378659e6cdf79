"""The user's own reward: `--config.reward.fn=my_package.my_module:my_reward`.

Contract. `reward.fn` names a Python callable as "module.path:function" (importable
from the run's working directory or `sys.path`) or "path/to/file.py:function". It is
called once per completion,

    my_reward(completion: str, example: dict) -> float | tuple[float, ...]

with the completion's text (without the prompt) and its data record (the task's fields:
"prompt", "answer", ... ; for `data.task=math` also "problem"). A float is the reward; a
tuple gives the components named by `reward.component_names` (their weighted sum is the
reward, weights `data.reward_weights`, default all 1). It runs exactly as the built-in
checkers do (`rlx.rewards.score`): in the reward worker processes with the per-completion
deadline `data.reward_time_limit_s`; an exception, a wrong number of values, a non-finite
value or an overrun gives that completion reward 0 and is counted (reward/errors,
timeouts) — the run continues. A completion "succeeds" (accuracy, pass@k) when its first
component reaches `reward.success_value`. A batched form is not supported: per-completion
calls are what the deadline can bound.

A bad path, a missing function or a signature that cannot take (completion, example)
fails when the config is validated, with one line naming `config.reward.fn`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
from collections.abc import Mapping

from rlx.rewards.components import TASKS, register_task


def load(spec: str):
    """The callable named by "module:function" or "file.py:function"; ValueError naming
    what is wrong."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"must be 'module.path:function' or 'path/to/file.py:function', got {spec!r}")
    where, name = spec.rsplit(":", 1)
    try:
        if where.endswith(".py"):
            path = os.path.abspath(os.path.expanduser(where))
            if not os.path.isfile(path):
                raise ValueError(f"no such file {path!r}")
            mod_spec = importlib.util.spec_from_file_location(f"rlx_user_reward_{abs(hash(path))}", path)
            mod = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(where)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - any import failure of the user's module, reported in one line
        raise ValueError(f"cannot import {where!r}: {type(e).__name__}: {e}") from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise ValueError(f"{where!r} has no callable {name!r}")
    try:
        inspect.signature(fn).bind("completion", {})
    except TypeError as e:
        raise ValueError(f"{spec} cannot be called as fn(completion, example): {e}") from None
    except ValueError:          # builtins without a signature: accept
        pass
    return fn


class UserReward:
    """A picklable checker wrapping the user's function (the worker processes import it
    by its spec string); a float return becomes one component."""

    def __init__(self, spec: str):
        self.spec = spec
        self._fn = None

    def __getstate__(self):
        return {"spec": self.spec}

    def __setstate__(self, state):
        self.spec, self._fn = state["spec"], None

    def __call__(self, completion: str, example: Mapping):
        if self._fn is None:
            self._fn = load(self.spec)
        out = self._fn(completion, dict(example))
        return (out,) if isinstance(out, (int, float)) and not isinstance(out, bool) else out


def task_name(spec: str) -> str:
    return f"user:{spec}"


def register(spec: str, component_names=("answer",), success_value: float = 1.0) -> str:
    """Registers the user's reward as a task (once per spec); returns its task name."""
    name = task_name(spec)
    if name not in TASKS:
        load(spec)                          # fail here, in the caller, not in a worker
        names = tuple(component_names)
        register_task(name, UserReward(spec), names, (1.0,) * len(names), success_component=names[0],
                      success_value=float(success_value))
    return name


__all__ = ["UserReward", "load", "register", "task_name"]
