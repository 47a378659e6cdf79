"""Preference pairs: any pairwise preference loss on offline or on-policy pairs.

The rollout kind of a `config.rl.loss` that names a preference loss (dpo, ipo, ...;
`rlx.train.preference` has the losses' update program and the pair sources). Per step
it builds `rl.prompts_per_step` pairs — on-policy (`pref.source="online"`: G samples
per prompt, best vs worst) or offline (a JSONL of pairs, or the task's gold answer vs a
corrupted one) — and the reference's sequence log-probs of both sides; the engine's
preference program trains on them.

Log-probs here are at temperature 1 whatever `rl.policy_temperature` says: DPO and its
family score sequences under the untempered policy (the DPO paper's pi_theta; TRL's
`DPOTrainer` does not divide by a temperature), and offline pairs have no sampler.
"""

from __future__ import annotations

import numpy as np

from rlx.data.preference import PreferenceBatch
from rlx.train import data as tdata
from rlx.train import preference as tpref
from rlx.train.kinds.base import Rollout, RolloutKind, StepInputs
from rlx.train.kinds.groups import Groups
from rlx.train.metrics_rl import rollout_metrics


class Preference(RolloutKind):
    name = "preference"
    update = "preference"

    def __init__(self, ctx):
        super().__init__(ctx)
        path = ctx.config.pref.path
        self.pairs = tpref.load_pairs(path) if path else None
        self._sampler = Groups(ctx)            # on-policy pairs: the groups kind's rounds

    def collect(self, inputs: StepInputs) -> Rollout:
        ctx, c = self.ctx, self.ctx.config
        key = inputs.key
        P, m = c.rl.prompts_per_step, {}
        if c.pref.source == "online":
            groups, info = self._sampler.sample_round(inputs.params, key, P, inputs.curriculum)
            pairs, valid = tpref.online_pairs(groups)
            b = PreferenceBatch(*(ctx.put(pairs[k]) for k in (
                "prompt_tokens", "prompt_mask", "chosen_tokens", "chosen_mask", "rejected_tokens",
                "rejected_mask")), ctx.put(valid))
            P_, G = groups["rewards"].shape
            m.update(rollout_metrics(groups["rewards"], groups["success"], groups["lengths"].reshape(-1),
                                     groups["finish_reason"].reshape(-1), np.ones((P_, G), bool),
                                     tuple(c.log.pass_k)))
            m.update(info)
        else:
            rng = np.random.default_rng([c.seed, inputs.step])
            if self.pairs is not None:
                idx = rng.integers(0, len(self.pairs), P)
                recs = [self.pairs[i] for i in idx]
                prompts, chosen, rejected = ([r[k] for r in recs] for k in ("prompt", "chosen", "rejected"))
            else:
                src, ex = tdata.select_prompts(key, ctx.train_src.sizes, P, "uniform")
                examples = ctx.train_src.lookup(src, ex)
                prompts = [e["prompt"] for e in examples]
                chosen = [tdata.demonstration(e) for e in examples]
                rejected = [tpref.corrupt(e, rng) for e in examples]
            valid = np.ones(P, bool)
            b = tpref.pair_batch(ctx, prompts, chosen, rejected, valid)
        with ctx.sharding():
            ref_c, ref_r = ctx.programs.pref_ref(inputs.reference, b)
        m["pairs/valid_frac"] = float(np.mean(valid))
        return Rollout(batch=b, metrics=m, update_args=(ref_c, ref_r))
