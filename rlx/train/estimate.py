"""Feeding an advantage estimator from an RL batch (the engine's side of `rlx.advantages`).

Estimators are pure functions with different inputs (rewards, lengths, sequence
log-probs, answer clusters, token rewards, ...). The engine offers each the inputs its
signature names, from what a rollout holds:

  rewards [P, G], valid [P, G]     every group estimator
  lengths [P, G]                   opo (length-weighted baseline)
  seq_logp [P, G]                  unlikeliness (mean token log pi_old of each sample)
  cluster_ids [P, G]               seed_grpo (samples with the same final answer)
  rewards [B, T], mask [B, T]      reinforce_pp (outcome score on the last token)
  + values [B, T] (the critic)      gae, egae (PPO; truncated = finished by length);
                                   also returns the critic's regression targets

Estimators that need what an RL batch of single-turn completions does not have —
multi-step trajectories (gigpo: driven by the episodes kind, `EPISODE_ESTIMATORS`), budgets (brpo), exit
positions (s_grpo), per-prompt state (single_stream, history_length) — are used as
functions directly; SPO's Monte-Carlo values come from rlx.train.kinds.spo_chain;
`ENGINE_ESTIMATORS` lists what a config can name, and validation rejects the rest.
"""

from __future__ import annotations

import inspect

import jax.numpy as jnp
import numpy as np

from rlx import advantages

ENGINE_ESTIMATORS = ("grpo", "dr_grpo", "rloo", "lite_ppo", "ngrpo", "bnpo", "hardness_weighted",
                     "kalman", "opo", "passk", "unlikeliness", "seed_grpo", "reinforce_pp",
                     "reinforce_pp_baseline", "gae", "egae", "spo_chain", "spo_tree")
CRITIC_ESTIMATORS = ("gae", "egae")
# What multi-turn episodes (rlx.train.kinds.episodes, `env.name` set) drive: GiGPO, REINFORCE++
# over turn rewards, and the group estimators that read only the G episode scores of a task.
EPISODE_GROUP_ESTIMATORS = ("grpo", "dr_grpo", "rloo", "lite_ppo", "ngrpo", "bnpo", "hardness_weighted",
                            "kalman", "passk", "reinforce_pp_baseline")
EPISODE_ESTIMATORS = ("gigpo", "reinforce_pp") + EPISODE_GROUP_ESTIMATORS


def advantages_for(rl, rewards_PG: np.ndarray, valid_PG: np.ndarray, groups: dict, flat: dict,
                   old_logp_BT, mask_BT, values_BT=None, components_CPG: np.ndarray | None = None):
    """(token advantages [B, T] device array, sequence advantages [P, G] numpy, metrics,
    critic returns [B, T] or None). `components_CPG`: the reward components an estimator
    decomposes (BNPO's advantage decomposition: one advantage per component, averaged)
    in place of the total `rewards_PG`."""
    name = rl.estimator
    if name not in ENGINE_ESTIMATORS:
        raise ValueError(f"config.rl.estimator: {name!r} cannot be driven by the RL engine "
                         f"(supported: {', '.join(ENGINE_ESTIMATORS)})")
    fn = advantages.get(name)
    kw = dict(rl.estimator_kwargs)
    P, G = rewards_PG.shape
    params = inspect.signature(fn).parameters
    mask = jnp.asarray(mask_BT)
    returns = None
    if name in CRITIC_ESTIMATORS:
        scores = jnp.asarray(np.where(valid_PG, rewards_PG, 0.0).reshape(P * G))
        tok_r = advantages.outcome_token_rewards(scores, mask)
        if name == "egae":
            trunc = jnp.asarray(flat["finish_reason"] == 1)
            adv_BT, metrics = fn(tok_r, values_BT, mask, trunc, **kw)
        else:
            adv_BT, metrics = fn(tok_r, values_BT, mask, **kw)
        g = {k: kw[k] for k in ("gamma", "lam") if k in kw}
        _, returns = advantages.gae_advantages_and_returns(tok_r, values_BT, mask, **g)
    elif name == "reinforce_pp":
        tok_r = advantages.outcome_token_rewards(jnp.asarray(rewards_PG.reshape(P * G)), mask)
        adv_BT, metrics = fn(tok_r, mask, **kw)
    elif name == "reinforce_pp_baseline":
        adv_BT, metrics = fn(jnp.asarray(rewards_PG), mask, jnp.asarray(valid_PG), **kw)
    else:
        if components_CPG is not None and name != "bnpo":
            raise ValueError(f"config.rl.advantage_decomposition: estimator {name!r} does not decompose rewards")
        r = rewards_PG if components_CPG is None else components_CPG
        args = {"rewards": jnp.asarray(r), "valid": jnp.asarray(valid_PG)}
        if "lengths" in params:
            args["lengths"] = jnp.asarray(flat["lengths"].reshape(P, G), jnp.float32)
        if "seq_logp" in params:
            m = mask.astype(jnp.float32)
            seq = jnp.sum(jnp.where(mask, old_logp_BT, 0.0), 1) / jnp.maximum(jnp.sum(m, 1), 1.0)
            args["seq_logp"] = seq.reshape(P, G)
        if "cluster_ids" in params:
            args["cluster_ids"] = jnp.asarray(groups["cluster_ids"])
        adv_PG, metrics = fn(**args, **kw)
        adv_BT = advantages.to_tokens(adv_PG, mask)
    seq_PG = _sequence_view(adv_BT, mask, P, G)
    return adv_BT, seq_PG, metrics, returns


def _sequence_view(adv_BT, mask_BT, P: int, G: int) -> np.ndarray:
    """Each response's scalar advantage (token mean; what DUMP's scheduler consumes)."""
    from rlx.train.rollout import to_host
    m = mask_BT.astype(jnp.float32)
    seq = jnp.sum(jnp.where(mask_BT, adv_BT, 0.0), 1) / jnp.maximum(jnp.sum(m, 1), 1.0)
    return to_host(seq).reshape(P, G)
