"""Advantage estimators: pure, jit-compatible functions returning `(advantages, metrics)`.

Choose one by name (`rlx.advantages.get("grpo")`, `names()` lists them). Layouts:
group estimators take `rewards` `[P, G]` (+ optional `valid`); token-level ones take
`[B, T]` arrays with a mask; GiGPO takes per-step `[P, G, S]` arrays; the trackers take
flat `[B]` samples with prompt ids and a state pytree. `to_tokens` broadcasts `[P, G]`
sequence advantages to `[B, T]` tokens (row p * G + g = sample g of prompt p).

Every estimator is already `jax.jit`-compiled (keywords that select code paths, e.g.
`ddof`, `mode`, `whiten`, `norm_by_std`, are static); called inside a caller's jit it
is inlined. Metrics are scalar arrays: `degenerate_groups` (groups with < 2 valid
samples, which get advantage 0), `invalid_samples` (masked or NaN/Inf, advantage 0),
`nonfinite_rewards`, plus estimator-specific ones.

| name | module | paper |
|---|---|---|
| grpo, dr_grpo, rloo, lite_ppo, ngrpo, opo, passk, kalman | group | GRPO family |
| hardness_weighted, unlikeliness, seed_grpo | reweight | Confucius3-Math, Unlikely, SEED |
| bnpo | beta | BNPO (with advantage decomposition) |
| gae, egae, reinforce_pp, reinforce_pp_baseline | gae | PPO, T-PPO, REINFORCE++ |
| gigpo | step | GiGPO |
| brpo, s_grpo | budget | AnytimeReasoner, S-GRPO |
| single_stream, history_length | trackers | Single-stream PO, HAPO (stateful) |
| spo_chain, spo_tree | segment, tree | SPO (segment / tree Monte-Carlo credit assignment) |

Not implemented: the "heterogeneous" HAPO (entropy-adaptive sampling, token-level
redistribution and clipping spans the sampler and the loss, not one estimator).
"""

from rlx.advantages import beta, budget, group, reweight, step, trackers
from rlx.advantages.beta import bnpo
from rlx.advantages.budget import brpo, s_grpo
from rlx.advantages.core import ESTIMATORS, get, names, register, to_tokens

# `rlx.advantages.gae` is the estimator function (it shadows its module, which stays
# importable as `sys.modules["rlx.advantages.gae"]`; everything in it is re-exported).
from rlx.advantages.gae import (
    egae,
    gae,
    gae_advantages_and_returns,
    outcome_token_rewards,
    reinforce_pp,
    reinforce_pp_baseline,
)
from rlx.advantages.group import dr_grpo, grpo, kalman, lite_ppo, ngrpo, opo, passk, rloo
from rlx.advantages.reweight import hardness_weighted, seed_grpo, semantic_entropy, unlikeliness
from rlx.advantages.step import gigpo
from rlx.advantages.trackers import (
    HistoryState,
    SingleStreamState,
    history_init,
    history_length,
    policy_drift,
    sampling_weights,
    single_stream,
    single_stream_init,
    single_stream_update,
)

__all__ = [
    "ESTIMATORS", "HistoryState", "SingleStreamState", "beta", "bnpo", "brpo", "budget",
    "dr_grpo", "egae", "gae", "gae_advantages_and_returns", "get", "gigpo",
    "grpo", "group", "hardness_weighted", "history_init", "history_length", "kalman",
    "lite_ppo", "names", "ngrpo", "opo", "outcome_token_rewards", "passk", "policy_drift",
    "register", "reinforce_pp", "reinforce_pp_baseline", "reweight", "rloo", "s_grpo",
    "sampling_weights", "seed_grpo", "semantic_entropy", "single_stream", "single_stream_init",
    "single_stream_update", "step", "to_tokens", "trackers", "unlikeliness",
]

# SPO-chain / SPO-tree (segment.py, tree.py): importing them registers "spo_chain" and "spo_tree".
from rlx.advantages import segment, tree  # noqa: E402
from rlx.advantages.segment import (  # noqa: E402
    Cutpoints,
    probability_masked_advantages,
    spo_chain,
    spo_cutpoints,
)
from rlx.advantages.tree import (  # noqa: E402
    TreeAdvantages,
    edge_token_advantages,
    spo_tree,
    tree_layout,
    tree_node_mask,
    tree_values,
)

__all__ += [
    "Cutpoints", "TreeAdvantages", "edge_token_advantages", "probability_masked_advantages",
    "segment", "spo_chain", "spo_cutpoints", "spo_tree", "tree", "tree_layout", "tree_node_mask",
    "tree_values",
]
