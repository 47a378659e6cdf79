"""What every rollout kind shares: the run context it reads, the step inputs it gets, the
rollout it returns.

A rollout kind turns (params, tasks, key) into one training batch plus its metrics;
the engine (`rlx.train.engine`) is the loop that drives any kind:

    rollout = kind.collect(StepInputs(params, reference, critic, key, step, curriculum))
    state, metrics = update program[kind.update](state, rollout.batch, *rollout.update_args)
    critic update (rollout.critic), curriculum update (rollout.curriculum), log, checkpoint

A kind holds the state of its own between steps (dynamic sampling's carried groups,
SPO-tree's edge replay buffer, a file of preference pairs) and says what of it a
checkpoint keeps: arrays in `checkpoint_tree` (restored by Orbax), small host values
in `checkpoint_meta` (JSON).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass
class RunContext:
    """The pieces of a run a rollout kind reads (built once by the engine). `sampler_state`
    is the sampler's RNG state: whoever samples advances it here."""
    config: Any
    run_dir: str
    tokenizer: Any
    model_cfg: Any
    sampler_cfg: Any            # training samples
    greedy_cfg: Any             # evaluation
    programs: Any               # rlx.train.programs.Programs
    mesh: Any
    rules: Any
    train_src: Any              # rlx.train.data sources
    reward_task: str
    sampler_state: Any
    put: Callable               # host array -> batch-sharded global array
    sharding: Callable          # context for tracing model code under the mesh's rules
    encode_prompt: Callable | None = None   # prompt text -> ids (data.chat_template), None = encode


@dataclasses.dataclass
class StepInputs:
    """What one step's rollout may use: the current policy and reference params (None
    when the run has no reference), the critic's state (None without one), the step's
    data key, the step number and the curriculum's state (DUMP; None when uniform)."""
    params: Any
    reference: Any
    critic: Any
    key: Any
    step: int
    curriculum: Any


@dataclasses.dataclass
class Rollout:
    """One step's training batch and what the engine does with it.

    batch        the update program's batch (`rlx.types.Batch`, or a PreferenceBatch)
    metrics      host floats known before the update (rewards, lengths, advantages, ...)
    update_args  further arguments of the update program (preference: reference log-probs)
    critic       (returns, values) for the critic's update, or None
    curriculum   (source ids [B], sequence advantages [B], valid [B]) for DUMP, or None
    train_tokens tokens the update trains on, all epochs (for its throughput; 0: not logged)
    skipped      why this step has no batch to train on ("" = it has one): the engine
                 logs the metrics, warns, and leaves the policy unchanged
    """
    batch: Any
    metrics: dict
    update_args: tuple = ()
    critic: tuple | None = None
    curriculum: tuple | None = None
    train_tokens: float = 0.0
    skipped: str = ""


def old_and_ref_logprobs(ctx: RunContext, inputs: StepInputs, dev: dict, recompute: bool):
    """(old log-probs, reference log-probs or None) of a batch placed on the mesh (`dev`:
    prompt / completion tokens and masks, the sampler's "logprobs"): the sampler's as the
    old ones unless `recompute` (the trainer's forward under `inputs.params`), the
    reference's when the run has a reference. Call under `ctx.sharding()`."""
    args = (dev["prompt_tokens"], dev["prompt_mask"], dev["completion_tokens"], dev["completion_mask"])
    old = ctx.programs.logprobs(inputs.params, *args) if recompute else dev["logprobs"]
    ref = None if inputs.reference is None else ctx.programs.logprobs(inputs.reference, *args)
    return old, ref


def row_kl(old, ref, mask, kind: str):
    """Host [B]: each row's summed KL(old || ref) over `mask` (KL folded into the reward)."""
    import jax.numpy as jnp

    from rlx import losses
    from rlx.train.rollout import to_host
    return to_host(jnp.sum(jnp.where(mask, losses.kl(old, ref, kind), 0.0), axis=1))


class RolloutKind:
    """Base of the rollout kinds. `update` names the program that trains on the batch
    ("policy": `Programs.update`, "preference": `Programs.pref_update`)."""
    name = "?"
    update = "policy"

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    def collect(self, inputs: StepInputs) -> Rollout:
        raise NotImplementedError

    def evaluate(self, params) -> float | None:
        """The kind's own evaluation (a success rate), or None: the engine's greedy accuracy
        on the held-out prompts of `data.*`."""
        return None

    def demonstrations(self, num: int, seed: int):
        """SFT warm-start examples (prompt tokens, mask, completion tokens, mask): by default
        gold completions of the `data.*` task (`rlx.train.sft.demonstrations`)."""
        from rlx.train.sft import demonstrations
        return demonstrations(self.ctx, num, seed)

    def checkpoint_tree(self) -> dict:
        """Arrays the checkpoint holds for this kind (keys of the checkpoint's tree)."""
        return {}

    def restore_tree(self, tree: dict) -> None:
        """Takes back what `checkpoint_tree` saved (the restored checkpoint tree)."""

    def checkpoint_meta(self) -> dict:
        """JSON-able host state the checkpoint's meta holds for this kind."""
        return {}

    def restore_meta(self, meta: dict) -> None:
        """Takes back what `checkpoint_meta` saved (the restored checkpoint's meta)."""
