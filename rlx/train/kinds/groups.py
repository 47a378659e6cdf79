"""Single-turn groups: G sampled completions per prompt, scored, one advantage estimator.

The rollout kind of GRPO and its variants (every estimator of
`rlx.train.estimate.ENGINE_ESTIMATORS` but the SPO ones): a round samples
`rl.group_size` completions for each of `rl.prompts_per_step` prompts
(`rlx.train.rollout.generate_round`); with `rl.dynamic_sampling` rounds are drawn
until the batch holds groups with reward variance (DAPO, `rlx.curriculum.dynamic`; the
overflow discarded or carried into the next step, see `Groups.collect_groups`). Then:
the overlong penalty, old log-probs (the sampler's, or recomputed — then compared with
the sampler's and, with `rl.rollout_correction`, corrected), reference log-probs (KL in
the loss, or subtracted from the reward), critic values (PPO), the estimator's token
advantages, and the batch trimmed of all-padding columns.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rlx.curriculum import dynamic, recovery
from rlx.losses import rollout_correction
from rlx.train import data as tdata
from rlx.train import estimate
from rlx.train.kinds.base import Rollout, RolloutKind, StepInputs, old_and_ref_logprobs, row_kl
from rlx.train.metrics_rl import rollout_metrics
from rlx.train.rollout import generate_round, to_host, trim_padding
from rlx.types import Batch

_agreement = jax.jit(rollout_correction.agreement)
_correction = jax.jit(rollout_correction.rollout_correction,
                      static_argnames=("is_level", "is_threshold", "rs_level", "rs_threshold", "rs_threshold_lower"))

# dtypes of a group's arrays (the carry's JSON in the checkpoint's meta is read back with them)
CARRY_DTYPES = {"prompt_tokens": np.int32, "completion_tokens": np.int32, "prompt_mask": bool,
                "completion_mask": bool, "finish_reason": np.int32, "lengths": np.int32,
                "success": bool, "cluster_ids": np.int32, "source_ids": np.int32, "example_ids": np.int32}


class Groups(RolloutKind):
    name = "groups"
    trim = True              # drop all-padding columns before the update (`rl.pad_multiple`)

    def __init__(self, ctx):
        super().__init__(ctx)
        self.carry = None    # dynamic sampling: groups carried into the next batch
        self.update_widths: set[tuple[int, int]] = set()    # distinct (prompt, completion) widths

    # ------------------------------------------------------------------ sampling
    def sample_round(self, params, key, num_prompts: int, curriculum):
        """One round: `num_prompts` prompts drawn by the curriculum, G samples each, scored."""
        ctx, c = self.ctx, self.ctx.config
        src, ex = tdata.select_prompts(key, ctx.train_src.sizes, num_prompts, c.data.curriculum,
                                       curriculum, c.data.dump_c, c.data.dump_tau)
        examples = ctx.train_src.lookup(src, ex)
        with ctx.sharding():
            return generate_round(ctx, params, examples, src, ex, c.rl.group_size, ctx.sampler_cfg, ctx.put)

    def collect_groups(self, params, key, curriculum) -> tuple[dict, np.ndarray, dict]:
        """Groups for one batch: (groups [P, ...], valid_P, info). With dynamic sampling
        (DAPO) rounds of `rl.gen_batch_multiple` x P prompts are drawn until P groups with
        reward variance are kept, at most `rl.max_sampling_rounds`; the kept groups beyond
        P are discarded (`rl.dynamic_overflow="discard"`, official) or carried into the
        next batch ("recover"). info["dynamic/skipped"] = 1 when the rounds ran out and
        `rl.allow_partial_batch` is off: the caller must not train on the batch."""
        r = self.ctx.config.rl
        P = r.prompts_per_step
        if not r.dynamic_sampling:
            groups, info = self.sample_round(params, key, P, curriculum)
            return groups, np.ones(P, bool), info
        gen = P * r.gen_batch_multiple
        infos = []

        def round_fn(i):
            g, inf = self.sample_round(params, jax.random.fold_in(key, i), gen, curriculum)
            infos.append(inf)
            return g, g["rewards"], None

        # Capacity: rounds stop once P groups are kept, so at most P - 1 + gen are ever held.
        buf = self._carry_buffer(P + gen)
        batch, valid, buf, dinfo = dynamic.fill_batch(round_fn, buf, P, max_rounds=r.max_sampling_rounds)
        batch, valid, n = jax.tree.map(np.asarray, batch), np.asarray(valid), int(buf.size)
        skip = not valid.all() and not r.allow_partial_batch
        if r.dynamic_overflow == "recover":
            # The carry: the oldest groups left in the buffer (what `recovery.pop(buf, n)`
            # takes), read on the host so that no program is compiled per carry size; a
            # skipped step keeps its kept groups too (they come first).
            rest = jax.tree.map(lambda x: np.asarray(x)[:n], buf.data)
            if skip:
                k = int(valid.sum())
                rest = jax.tree.map(lambda a, b: np.concatenate([a[:k], b]), batch, rest)
            self.carry = None if len(rest["rewards"]) == 0 else rest
            discarded = 0
        else:
            self.carry = None
            discarded = n + (int(valid.sum()) if skip else 0)
        dinfo["dynamic/carried_out"] = float(0 if self.carry is None else len(self.carry["rewards"]))
        dinfo["dynamic/discarded"] = float(discarded)
        dinfo["dynamic/skipped"] = float(skip)
        info = {k: sum(i[k] for i in infos) for k in infos[0]} if infos else {}
        info.update(dinfo)
        return batch, valid, info

    def _carry_buffer(self, capacity: int) -> recovery.GroupBuffer:
        """A group buffer holding the carried groups (built on the host: fixed shapes, no
        compile per carry size; equal to `recovery.push(recovery.init(...), carry)`)."""
        data = {k: np.zeros((capacity,) + v.shape, v.dtype) for k, v in self._group_template().items()}
        n = 0 if self.carry is None else len(self.carry["rewards"])
        for k in data:
            if n:
                data[k][:n] = self.carry[k]
        return recovery.GroupBuffer(data=jax.tree.map(jnp.asarray, data), size=jnp.asarray(n, jnp.int32),
                                    dropped=jnp.zeros((), jnp.int32))

    def _group_template(self) -> dict:
        """Zeros shaped like one group of `generate_round`'s output (buffer layout)."""
        from rlx.rewards import get_task
        ctx = self.ctx
        G, Lp, T = ctx.config.rl.group_size, ctx.sampler_cfg.max_prompt_len, ctx.sampler_cfg.max_new_tokens
        C = max(1, get_task(ctx.reward_task).num_components)
        shapes = {"prompt_tokens": (G, Lp), "prompt_mask": (G, Lp), "completion_tokens": (G, T),
                  "completion_mask": (G, T), "logprobs": (G, T), "sampling_logprobs": (G, T),
                  "finish_reason": (G,), "lengths": (G,), "rewards": (G,), "success": (G,),
                  "components": (C, G), "cluster_ids": (G,), "source_ids": (), "example_ids": ()}
        return {k: np.zeros(s, CARRY_DTYPES.get(k, np.float32)) for k, s in shapes.items()}

    def checkpoint_meta(self) -> dict:
        return {"carry": None if self.carry is None else {k: v.tolist() for k, v in self.carry.items()}}

    def restore_meta(self, meta: dict) -> None:
        self.carry = None if meta.get("carry") is None else {
            k: np.asarray(v, dtype=CARRY_DTYPES.get(k, np.float32)) for k, v in meta["carry"].items()}

    # ------------------------------------------------------------------ advantages
    def advantages(self, inputs: StepInputs, groups, flat, dev, rewards_PG, valid_PG, old, values):
        """(token advantages [B, T], sequence advantages [P, G], loss mask or None,
        estimator metrics, critic returns or None): the config's estimator."""
        adv_BT, adv_PG, est_metrics, returns = estimate.advantages_for(
            self.ctx.config.rl, rewards_PG, valid_PG, groups, flat, old, dev["completion_mask"], values,
            components_CPG=self.decomposed_rewards(groups))
        return adv_BT, adv_PG, None, est_metrics, returns

    def decomposed_rewards(self, groups) -> np.ndarray | None:
        """[C', P, G]: the reward components of nonzero weight (`data.reward_weights`, else
        the task's), raw, when `rl.advantage_decomposition` (BNPO; official: the accuracy
        and format rewards, each BNPO-normalized, averaged); else None."""
        c = self.ctx.config
        if not c.rl.advantage_decomposition:
            return None
        from rlx.rewards import get_task
        w = tuple(c.data.reward_weights) or get_task(self.ctx.reward_task).weights
        comps = np.asarray(groups["components"]).transpose(1, 0, 2)          # [C, P, G]
        if comps.shape[0] != len(w):      # a single-component task: the scorer returns the total
            return comps
        return comps[[i for i, x in enumerate(w) if x != 0]]

    def rollout_correction(self, old, dev, adv_BT, loss_mask):
        """With the trainer's recomputed pi_old: the sampler-vs-trainer agreement metrics
        (`rollout/*`) and, when `rl.rollout_correction` asks for it, the truncated IS
        weights folded into the advantages and the rejected tokens taken out of the loss
        mask (rlx/losses/rollout_correction.py). (adv_BT, loss_mask, metrics)."""
        c = self.ctx.config
        if not c.rl.recompute_old_logprobs:
            return adv_BT, loss_mask, {}
        mask = dev["completion_mask"]
        met = _agreement(old, dev["logprobs"], mask)
        rc = c.rl.rollout_correction
        if rc.is_level != "none" or rc.rs_level != "none":
            w, keep, cmet = _correction(old, dev["logprobs"], mask, is_level=rc.is_level,
                                        is_threshold=float(rc.is_threshold), rs_level=rc.rs_level,
                                        rs_threshold=float(rc.rs_threshold),
                                        rs_threshold_lower=float(rc.rs_threshold_lower) or None)
            met.update(cmet)
            if rc.is_level != "none":
                adv_BT = adv_BT * w.astype(adv_BT.dtype)
            if rc.rs_level != "none":
                loss_mask = keep if loss_mask is None else loss_mask & keep
        return adv_BT, loss_mask, {f"rollout/{k}": float(to_host(v)) for k, v in met.items()}

    # ------------------------------------------------------------------ one step
    def collect(self, inputs: StepInputs) -> Rollout:
        ctx, c = self.ctx, self.ctx.config
        progs = ctx.programs
        groups, valid_P, info = self.collect_groups(inputs.params, inputs.key, inputs.curriculum)
        if info.get("dynamic/skipped"):
            kept = f"dynamic sampling kept {int(valid_P.sum())} of {len(valid_P)} groups"
            return Rollout(batch=None, metrics=info,
                           skipped=f"{kept} in rl.max_sampling_rounds={c.rl.max_sampling_rounds} rounds "
                                   f"(rl.allow_partial_batch=True trains on them)")
        P, G = groups["rewards"].shape
        B = P * G
        valid_PG = np.broadcast_to(valid_P[:, None], (P, G)).copy()
        flat = {k: v.reshape((B,) + v.shape[2:]) for k, v in groups.items()
                if k not in ("components", "cluster_ids", "source_ids", "example_ids")}
        if self.trim:
            flat = trim_padding(flat, c.rl.pad_multiple)
        rewards_PG = groups["rewards"].copy()
        ov = c.rl.overlong_cache
        if ov:
            from rlx.rewards import overlong_penalty
            rewards_PG += np.asarray(overlong_penalty(flat["lengths"], max_len=c.sampler.max_new_tokens,
                                                      cache_len=ov)).reshape(P, G)
        dev = {k: ctx.put(flat[k]) for k in ("prompt_tokens", "prompt_mask", "completion_tokens",
                                             "completion_mask", "logprobs")}
        with ctx.sharding():
            old, ref = old_and_ref_logprobs(ctx, inputs, dev, c.rl.recompute_old_logprobs)
            if ref is not None and c.rl.kl_placement == "reward":
                kl_B = row_kl(old, ref, dev["completion_mask"], c.rl.kl_kind)
                rewards_PG = rewards_PG - c.rl.kl_coef * kl_B.reshape(P, G)
            values = None
            if inputs.critic is not None:
                values = progs.values(inputs.critic.params, dev["prompt_tokens"], dev["prompt_mask"],
                                      dev["completion_tokens"], dev["completion_mask"])
            adv_BT, adv_PG, loss_mask, est_metrics, returns = self.advantages(
                inputs, groups, flat, dev, rewards_PG, valid_PG, old, values)
            adv_BT, loss_mask, rc_metrics = self.rollout_correction(old, dev, adv_BT, loss_mask)
            batch = Batch.create(
                prompt_tokens=dev["prompt_tokens"], prompt_mask=dev["prompt_mask"],
                completion_tokens=dev["completion_tokens"], completion_mask=dev["completion_mask"],
                advantages=adv_BT, old_logprobs=old, ref_logprobs=ref,
                rewards=ctx.put(rewards_PG.reshape(B)), valid=ctx.put(valid_PG.reshape(B)), loss_mask=loss_mask)
        self.update_widths.add((batch.prompt_tokens.shape[1], batch.completion_tokens.shape[1]))
        m = rollout_metrics(groups["rewards"], groups["success"], flat["lengths"], flat["finish_reason"],
                            valid_PG, tuple(c.log.pass_k))
        m.update({(k if k.startswith("spo/") else f"adv/{k}"): float(to_host(v)) for k, v in est_metrics.items()})
        m.update(info)
        m.update(rc_metrics)
        m["batch/prompt_columns"] = float(flat["prompt_tokens"].shape[1])      # after trim_padding
        m["batch/completion_columns"] = float(flat["completion_tokens"].shape[1])
        m["compile/update_programs"] = float(len(self.update_widths))    # one compile per distinct width
        m["throughput/sample_tokens_per_s"] = info.get("tokens/sampled", 0.0) / max(info.get("time/sample", 0), 1e-9)
        return Rollout(batch=batch, metrics=m,
                       critic=None if inputs.critic is None else (returns, values),
                       curriculum=(np.repeat(groups["source_ids"], G), adv_PG.reshape(B), valid_PG.reshape(B)),
                       train_tokens=c.rl.epochs * float(flat["completion_mask"].sum()))
