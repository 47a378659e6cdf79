"""Policy losses, KL estimators, entropy regularizers and loss aggregation.

Every function is pure, `jax.jit`-compatible and model-free: it takes log-probs,
advantages and masks (plus group structure where needed) and returns
`(loss, metrics)`. Policy losses are chosen by name:

    loss_fn = rlx.losses.get("ppo_clip")
    loss, metrics = loss_fn(logp, old_logp, adv, mask, eps_high=0.28)

The registry (`POLICY_LOSSES`, a `rlx.registry.Registry("policy loss")`) holds ppo_clip,
gspo, cispo, reg_grpo (policy.py) and disco, drpo, trpa (contrastive.py). Aggregation
modes and their exactness under sharding / gradient accumulation: aggregate.py.

Preference losses (DPO family, listwise, self-play, token-level; table E) take sequence
log-probs of chosen / rejected responses instead, and live in their own registry
(`PREFERENCE`; `preference_get`, `preference_names`): preference.py, pairwise.py,
listwise.py, selfplay.py, online_pairs.py, token_pref.py.
"""

from rlx.losses import listwise, online_pairs, pairwise, preference, selfplay, token_pref  # noqa: E402,I001
from rlx.losses.aggregate import AGG_MODES, aggregate, aggregate_parts
from rlx.losses.contrastive import disco, drpo, trpa
from rlx.losses.kl import KL_KINDS, kl, kl_in_reward, kl_loss
from rlx.losses.policy import POLICY_LOSSES, cispo, gspo, ppo_clip, reg_grpo
from rlx.losses.preference import PREFERENCE, dpo, hinge, ipo, robust_dpo
from rlx.losses.preference import get as preference_get
from rlx.losses.preference import names as preference_names
from rlx.losses.regularizers import entropy_bonus, spo_probability_mask, targeted_entropy


def get(name: str):
    """The policy loss registered under `name` (KeyError listing the known names)."""
    return POLICY_LOSSES.get(name)


def names() -> list[str]:
    """Sorted names of the registered policy losses."""
    return POLICY_LOSSES.names()


__all__ = [
    "AGG_MODES", "KL_KINDS", "POLICY_LOSSES", "aggregate", "aggregate_parts", "cispo", "disco",
    "drpo", "entropy_bonus", "get", "gspo", "kl", "kl_in_reward", "kl_loss", "names", "ppo_clip",
    "reg_grpo", "spo_probability_mask", "targeted_entropy", "trpa",
    "PREFERENCE", "dpo", "hinge", "ipo", "listwise", "online_pairs", "pairwise", "preference",
    "preference_get", "preference_names", "robust_dpo", "selfplay", "token_pref",
]
