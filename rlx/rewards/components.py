"""Reward components: what a task's reward is made of, and how the parts add up.

A task's checker returns a tuple of raw components per completion (e.g. format and
answer). The batch scorer stacks them into a `[C, N]` array and the scalar reward is
their weighted sum `r = Σ_c w_c · x_c`. BNPO ("BNPO: Beta Normalization Policy
Optimization") decomposes the reward into such components and fits one Beta
normalization per component, so the engine passes `components_CN` to the advantage
estimator unchanged; every other estimator uses the total.

Built-in tasks (weights chosen so that the total is the reward of the task's paper):
  * countdown, arithmetic, gsm8k: components (format ∈ {0,1}, answer ∈ {0,1}),
    weights (0, 1): the reward is binary correctness, in [0, 1] as BNPO and the
    single-stream Beta tracker require. A config can give format a weight.
  * knights_knaves: components (format ∈ {+1,−1}, answer ∈ {2,−1.5,−2}), weights
    (1, 1): exactly the DUMP / Logic-RL reward (see rlx/rewards/kk.py).
  * exact: one component (answer ∈ {0,1}).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from rlx.registry import Registry

Checker = Callable[[str, Mapping], tuple[float, ...]]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """How one task is scored.

    checker: (completion, example) -> raw components (one float per name).
    component_names: names of the C components, e.g. ("format", "answer").
    weights: default w_C of the total.
    success_component / success_value: a completion "succeeds" (for stats, replay and
      task filtering) when that component reaches that value.
    failure: the components of a completion whose checker failed or timed out — the
      task's minimum, so a failure never scores above a wrong answer (default: zeros).
    warmup: called once per process before the first completion is timed (e.g. to import
      a heavy library such as math-verify's sympy), or None. Must be module-level.
    """
    name: str
    checker: Checker
    component_names: tuple[str, ...]
    weights: tuple[float, ...]
    success_component: str = "answer"
    success_value: float = 1.0
    failure: tuple[float, ...] | None = None
    warmup: Callable[[], None] | None = None

    def __post_init__(self):
        if self.failure is None:
            object.__setattr__(self, "failure", (0.0,) * len(self.component_names))
        if len(self.failure) != len(self.component_names):
            raise ValueError(f"task {self.name!r}: {len(self.component_names)} component names but "
                             f"{len(self.failure)} failure values")
        if len(self.component_names) != len(self.weights):
            raise ValueError(f"task {self.name!r}: {len(self.component_names)} component names but "
                             f"{len(self.weights)} weights")
        if self.success_component not in self.component_names:
            raise ValueError(f"task {self.name!r}: success_component {self.success_component!r} "
                             f"not in {self.component_names}")

    def __call__(self, completion: str, example: Mapping) -> tuple[float, ...]:
        return self.checker(completion, example)

    @property
    def num_components(self) -> int:
        return len(self.component_names)


TASKS = Registry("reward task")


def register_task(name: str, checker: Checker, component_names: Sequence[str] = ("format", "answer"),
                  weights: Sequence[float] = (0.0, 1.0), *, success_component: str = "answer",
                  success_value: float = 1.0, failure: Sequence[float] | None = None,
                  warmup: Callable[[], None] | None = None) -> TaskSpec:
    """Register a task's checker under `name` (for `rlx.rewards.score`); returns its spec.
    `failure`: components given to a completion whose checker fails (default zeros; give
    the task's minimum when wrong answers score below 0); `warmup`: see `TaskSpec`."""
    spec = TaskSpec(name, checker, tuple(component_names), tuple(float(w) for w in weights),
                    success_component, float(success_value),
                    None if failure is None else tuple(float(x) for x in failure), warmup)
    TASKS.register(name)(spec)
    return spec


def get_task(name: str) -> TaskSpec:
    return TASKS.get(name)


def combine(components_CN, weights_C) -> np.ndarray:
    """Total reward `[N]` = Σ_c w_c · components[c] (float32)."""
    comp = np.asarray(components_CN, np.float64)
    w = np.asarray(weights_C, np.float64)
    if comp.ndim != 2 or w.shape != (comp.shape[0],):
        raise ValueError(f"weights shape {w.shape} does not match components shape {comp.shape} ([C, N])")
    return (w[:, None] * comp).sum(axis=0).astype(np.float32)


def as_dict(components_CN, names: Sequence[str]) -> dict[str, np.ndarray]:
    """{name: [N]} view of a `[C, N]` components array (for metrics)."""
    comp = np.asarray(components_CN)
    if comp.ndim != 2 or comp.shape[0] != len(names):
        raise ValueError(f"components shape {comp.shape} does not match {len(names)} names")
    return {n: comp[i] for i, n in enumerate(names)}
