"""Multi-turn episodes of an environment: P tasks x G episodes, credit across turns.

The rollout kind of `env.name` (an environment of `rlx.envs.ENVS`). Per step:

  1. `rl.prompts_per_step` tasks drawn uniformly from the `env.train_tasks` training
     tasks (task i = `env.task_kwargs` with the environment's seed key = i), each played
     `rl.group_size` times by the policy (`rlx.envs.episodes.run_episodes`, token-in /
     token-out; an `EnvPool` steps the environments with `env.workers` threads and a
     per-step timeout).
  2. Step rewards r_t = environment reward - `env.invalid_action_penalty` x [action
     did not parse] (verl-agent's invalid-action penalty, coefficient 0.1 there); the
     episode score is R = sum_t r_t; an episode succeeds when the environment rewarded it
     (sum of its environment rewards > 0: the gridworld's goal, a solved Sokoban).
  3. ARPO replay (`env.replay` = successes kept per task, 0 = off): a group without a
     success takes one stored success of its task in place of one of its episodes
     (`rlx.curriculum.replay`); the batch's old log-probs are then recomputed by the
     trainer for every row (the replayed ones were sampled by an older policy).
  4. Advantages, by `rl.estimator`:
       gigpo           GiGPO (`rlx.advantages.gigpo`): episode groups (the G episodes of a
                       task) + step groups of equal anchor states (the environment's
                       `state_id` a turn's action was taken in), gamma, omega; each turn's
                       advantage on that turn's model tokens.
       reinforce_pp    REINFORCE++: each turn's reward on its last model token, returns to
                       go that pass *through* observation tokens (they carry no loss and
                       reset nothing), batch-whitened.
       a group estimator (grpo, rloo, dr_grpo, ...): the episode-level baseline of the
                       GiGPO paper's GRPO / RLOO rows — one advantage per episode from
                       the G scores of its task, on all its model tokens.
  5. The batch: the first prompt as the prompt, everything after it (model turns and
     observations) as the completion, `loss_mask` 1 on model tokens only (observation
     tokens are context: no loss, no gradient).

Evaluation (`evaluate`): `env.eval_tasks` held-out tasks (seed key `env.eval_seed + i`,
disjoint from the training numbers; a small map family can still repeat a training map
by chance), one greedy episode each; the success rate is the run's `eval/accuracy`.

The SFT warm start (`demonstrations`) needs an environment with `expert_action()` (the
gridworld's shortest safe path, Sokoban's shortest solution, the tool task's
check-then-answer; None where the expert has no move, which ends that demonstration
episode): demonstration episodes follow the expert, with the environment's
`random_action` instead at rate 0.3 where it has one (so they visit the states a weak
policy reaches), and each turn gives one example: the history so far as the prompt (tokens exactly as
`run_episodes` builds them) and the expert's move + EOS as the completion.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from rlx import advantages
from rlx.curriculum import replay as arpo
from rlx.envs import ENVS, EnvPool
from rlx.envs.episodes import DONE, ENV_ERROR, MAX_TURNS, TRUNCATED, EpisodeBudget, run_episodes
from rlx.train.kinds.base import Rollout, RolloutKind, StepInputs, old_and_ref_logprobs, row_kl
from rlx.train.rollout import to_host
from rlx.types import Batch

DEMO_RANDOM_RATE = 0.3
# Row arrays of one episode (what ARPO's buffer stores per success).
ROW_KEYS = ("prompt_tokens", "prompt_mask", "tokens", "mask", "loss_mask", "logprobs", "turn_of_token",
            "turn_rewards", "turn_state_ids", "turn_valid_action", "turn_exists")


def budget_of(e) -> EpisodeBudget:
    return EpisodeBudget(max_turns=int(e.max_turns), max_turn_tokens=int(e.max_turn_tokens),
                         max_prompt_tokens=int(e.max_prompt_tokens), max_total_tokens=int(e.max_total_tokens))


def encoders(tokenizer, system: str = ""):
    """(encode_prompt, encode_observation, decode) for a tokenizer: its chat template when
    it has one (`rlx.envs.chat.chat_encoders`, prefix-checked), else plain text — the
    first observation encoded as a prompt (with the tokenizer's BOS), later ones appended
    without special tokens (rlx's character tokenizer)."""
    if getattr(tokenizer, "chat_template", None):
        from rlx.envs.chat import chat_encoders
        ep, eo = chat_encoders(tokenizer, system=system or None)
    else:
        def ep(text):
            return tokenizer.encode(text)

        def eo(text):
            return tokenizer.encode(text, add_special_tokens=False)

    def decode(ids):
        return tokenizer.decode(list(ids), skip_special_tokens=True)
    return ep, eo, decode


def token_advantages(adv_NK: np.ndarray, turn_of_token: np.ndarray, loss_mask: np.ndarray) -> np.ndarray:
    """[N, T]: each model token gets its turn's advantage; observation and padding tokens 0."""
    turn = np.clip(turn_of_token, 0, adv_NK.shape[1] - 1)
    return np.where(loss_mask, np.take_along_axis(adv_NK, turn, axis=1), 0.0).astype(np.float32)


def turn_end_rewards(step_r_NK: np.ndarray, turn_of_token: np.ndarray, loss_mask: np.ndarray) -> np.ndarray:
    """[N, T]: each turn's reward on the last model token of that turn (0 elsewhere)."""
    N, T = loss_mask.shape
    out = np.zeros((N, T), np.float32)
    for i in range(N):
        cols = np.flatnonzero(loss_mask[i])
        if not cols.size:
            continue
        turns = turn_of_token[i, cols]
        last = cols[np.r_[turns[1:] != turns[:-1], True]]        # last model token of each turn
        out[i, last] = step_r_NK[i, turn_of_token[i, last]]
    return out


class Episodes(RolloutKind):
    name = "episodes"

    def __init__(self, ctx):
        super().__init__(ctx)
        e = ctx.config.env
        self.env_cls = ENVS[e.name]
        self.task_kwargs = dict(e.task_kwargs)
        self.budget = budget_of(e)
        self.pool = EnvPool(self.env_cls, workers=int(e.workers), step_timeout_s=float(e.step_timeout_s))
        self.encode_prompt, self.encode_observation, self.decode = encoders(ctx.tokenizer, e.system)
        self.replay = None                 # ARPO: successes kept per training task
        if e.replay:
            b, K = self.budget, self.budget.max_turns
            Lp, T = b.max_prompt_tokens, b.max_total_tokens
            row = {"prompt_tokens": np.zeros(Lp, np.int32), "prompt_mask": np.zeros(Lp, bool),
                   "tokens": np.zeros(T, np.int32), "mask": np.zeros(T, bool), "loss_mask": np.zeros(T, bool),
                   "logprobs": np.zeros(T, np.float32), "turn_of_token": np.zeros(T, np.int32),
                   "turn_rewards": np.zeros(K, np.float32), "turn_state_ids": np.zeros(K, np.int32),
                   "turn_valid_action": np.zeros(K, bool), "turn_exists": np.zeros(K, bool)}
            self.replay = arpo.init(row, int(e.train_tasks), int(e.replay))

    def task(self, number: int) -> dict:
        return {**self.task_kwargs, self.env_cls.SEED_KEY: int(number)}

    def play(self, params, scfg, numbers, seeds):
        """Episodes of the tasks `numbers` (one per entry), the sampler state advanced."""
        ctx = self.ctx
        with ctx.sharding():
            eps, ctx.sampler_state = run_episodes(
                params, ctx.model_cfg, scfg, ctx.sampler_state, self.pool, [self.task(n) for n in numbers],
                [int(s) for s in seeds], encode_prompt=self.encode_prompt,
                encode_observation=self.encode_observation, decode=self.decode, budget=self.budget, put=ctx.put,
                kv_carry=bool(ctx.config.env.kv_carry), prefill_chunk=int(ctx.config.env.prefill_chunk))
        return eps

    # ------------------------------------------------------------------ one step
    def collect(self, inputs: StepInputs) -> Rollout:
        ctx, c = self.ctx, self.ctx.config
        e, rl = c.env, c.rl
        P, G = rl.prompts_per_step, rl.group_size
        N = P * G
        k_task, k_replay = jax.random.split(inputs.key)
        task_P = np.asarray(jax.random.randint(k_task, (P,), 0, int(e.train_tasks)))
        stats0 = (self.pool.stats.errors, self.pool.stats.timeouts)
        t0 = time.perf_counter()
        eps = self.play(inputs.params, ctx.sampler_cfg, np.repeat(task_P, G),
                        inputs.step * N + np.arange(N))
        t_sample = time.perf_counter() - t0
        rows = {k: getattr(eps, k) for k in ROW_KEYS}
        # state ids folded into int32 (JAX's default integers): equal states stay equal, distinct
        # ones collide only when they differ by a multiple of 2^31 - 1
        rows["turn_state_ids"] = (rows["turn_state_ids"] % (2**31 - 1)).astype(np.int32)
        env_return = eps.turn_rewards.sum(axis=1)
        success = sampled_success = (env_return > 0).reshape(P, G)     # metrics: the sampled episodes'
        replayed = np.zeros((P, G), bool)
        if e.replay:
            rows, success, replayed = self._replay(k_replay, task_P, rows, success)
        K = rows["turn_rewards"].shape[1]
        exists = rows["turn_exists"]
        step_r = np.where(exists, rows["turn_rewards"] - float(e.invalid_action_penalty)
                          * ~rows["turn_valid_action"], 0.0).astype(np.float32)
        score_PG = step_r.sum(axis=1).reshape(P, G)
        valid_PG = exists.any(axis=1).reshape(P, G)            # an episode whose reset failed has no turn
        lmask = rows["loss_mask"]

        # the trainer's batch: first prompt | everything after it, trimmed of unused columns
        used = rows["mask"].any(axis=0)
        T = int(np.flatnonzero(used)[-1]) + 1 if used.any() else 1
        Lp_used = rows["prompt_mask"].any(axis=0)
        lp0 = int(np.flatnonzero(Lp_used)[0]) if Lp_used.any() else rows["prompt_mask"].shape[1] - 1
        from rlx.train.rollout import bucket_width
        t = bucket_width(T, rows["mask"].shape[1], int(rl.pad_multiple))
        lp = bucket_width(rows["prompt_mask"].shape[1] - lp0, rows["prompt_mask"].shape[1], int(rl.pad_multiple))
        sl_p, sl_c = slice(rows["prompt_mask"].shape[1] - lp, None), slice(0, t)
        host = {"prompt_tokens": rows["prompt_tokens"][:, sl_p], "prompt_mask": rows["prompt_mask"][:, sl_p],
                "completion_tokens": rows["tokens"][:, sl_c], "completion_mask": rows["mask"][:, sl_c],
                "logprobs": rows["logprobs"][:, sl_c]}
        lmask, turn_of = lmask[:, sl_c], rows["turn_of_token"][:, sl_c]
        dev = {k: ctx.put(v) for k, v in host.items()}
        with ctx.sharding():
            old, ref = old_and_ref_logprobs(ctx, inputs, dev, rl.recompute_old_logprobs or replayed.any())
            kl_folded = ref is not None and rl.kl_placement == "reward"
            if kl_folded:                              # per-episode KL of the model tokens off the score
                score_PG = score_PG - rl.kl_coef * row_kl(old, ref, ctx.put(lmask), rl.kl_kind).reshape(P, G)
            adv_BT, adv_PG, est = self._advantages(step_r, score_PG, valid_PG, rows, lmask, turn_of, P, G, K,
                                                   episode_scores=kl_folded)
            batch = Batch.create(
                prompt_tokens=dev["prompt_tokens"], prompt_mask=dev["prompt_mask"],
                completion_tokens=dev["completion_tokens"], completion_mask=dev["completion_mask"],
                advantages=ctx.put(adv_BT), old_logprobs=old, ref_logprobs=ref,
                rewards=ctx.put(score_PG.reshape(N).astype(np.float32)), valid=ctx.put(valid_PG.reshape(N)),
                loss_mask=ctx.put(lmask))
        model_tokens = lmask.sum(axis=1)
        m = {"reward/mean": float(env_return.mean()), "reward/score_mean": float(score_PG.mean()),
             "accuracy": float(sampled_success.mean()),
             "response/length_mean": float(model_tokens.mean()), "response/length_max": float(model_tokens.max()),
             "episode/turns_mean": float(exists.sum(axis=1).mean()),
             "episode/invalid_action_frac": float((exists & ~rows["turn_valid_action"]).sum()
                                                  / max(exists.sum(), 1)),
             "groups/zero_variance_frac": float((np.ptp(score_PG, axis=1) == 0).mean()),
             "env/errors": float(self.pool.stats.errors - stats0[0]),
             "env/timeouts": float(self.pool.stats.timeouts - stats0[1]),
             "replay/injected": float(replayed.sum()),
             "tokens/sampled": float(eps.loss_mask.sum()), "time/sample": t_sample,
             "batch/prompt_columns": float(lp), "batch/completion_columns": float(t)}
        for name, code in (("done", DONE), ("max_turns", MAX_TURNS), ("truncated", TRUNCATED),
                           ("env_error", ENV_ERROR)):
            m[f"episode/end_{name}_frac"] = float((eps.end_reason == code).mean())
        m.update({f"adv/{k}": float(to_host(v)) for k, v in est.items()})
        m["throughput/sample_tokens_per_s"] = m["tokens/sampled"] / max(t_sample, 1e-9)
        return Rollout(batch=batch, metrics=m, train_tokens=rl.epochs * float(model_tokens.sum()))

    def _advantages(self, step_r, score_PG, valid_PG, rows, lmask, turn_of, P, G, K, episode_scores=False):
        """(token advantages [N, T] numpy, sequence advantages [P, G], estimator metrics).
        `episode_scores`: GiGPO's episode level reads `score_PG` (the KL folded into it)
        instead of the sum of the step rewards it equals otherwise."""
        rl = self.ctx.config.rl
        kw = dict(rl.estimator_kwargs)
        if episode_scores and rl.estimator == "gigpo":
            kw["episode_rewards"] = jnp.asarray(score_PG)
        fn = advantages.get(rl.estimator)
        if rl.estimator == "gigpo":
            ids = np.where(rows["turn_exists"], rows["turn_state_ids"], -1)
            adv_PGK, est = fn(jnp.asarray(step_r.reshape(P, G, K)), jnp.asarray(ids.reshape(P, G, K)),
                              jnp.asarray(rows["turn_exists"].reshape(P, G, K)), valid=jnp.asarray(valid_PG), **kw)
            adv_NK = np.asarray(adv_PGK).reshape(P * G, K)
            adv = token_advantages(adv_NK, turn_of, lmask)
        elif rl.estimator == "reinforce_pp":
            tok_r = turn_end_rewards(step_r, turn_of, lmask)
            a, est = fn(jnp.asarray(tok_r), jnp.asarray(lmask), **kw)
            adv = np.where(lmask, np.asarray(a), 0.0).astype(np.float32)
        else:
            if rl.estimator == "reinforce_pp_baseline":
                a, est = fn(jnp.asarray(score_PG), jnp.asarray(lmask), jnp.asarray(valid_PG), **kw)
                adv = np.where(lmask, np.asarray(a), 0.0).astype(np.float32)
            else:
                adv_PG, est = fn(rewards=jnp.asarray(score_PG), valid=jnp.asarray(valid_PG), **kw)
                adv = np.where(lmask, np.asarray(adv_PG).reshape(P * G, 1), 0.0).astype(np.float32)
        n = np.maximum(lmask.sum(axis=1), 1)
        return adv, (adv.sum(axis=1) / n).reshape(P, G), est

    # ------------------------------------------------------------------ ARPO replay
    def _replay(self, key, task_P, rows, success_PG):
        e = self.ctx.config.env
        P, G = success_PG.shape
        del e
        items = {k: v.reshape((P, G) + v.shape[1:]) for k, v in rows.items()}
        task = jnp.asarray(task_P, jnp.int32)
        rewards = jnp.asarray(items["turn_rewards"].sum(axis=2))
        new, _, succ, replayed = arpo.inject(self.replay, key, task, items, rewards, jnp.asarray(success_PG))
        self.replay = arpo.add(self.replay, task, items, rewards, jnp.asarray(success_PG))
        new = {k: np.asarray(v).reshape((P * G,) + v.shape[2:]) for k, v in new.items()}
        return new, np.asarray(succ), np.asarray(replayed)

    def checkpoint_tree(self) -> dict:
        return {} if self.replay is None else {"replay": self.replay}

    def restore_tree(self, tree: dict) -> None:
        if "replay" in tree:
            self.replay = tree["replay"]

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, params) -> float:
        """Greedy success rate on the held-out tasks."""
        e = self.ctx.config.env
        n = int(e.eval_tasks)
        if not n:
            return 0.0
        eps = self.play(params, self.ctx.greedy_cfg, int(e.eval_seed) + np.arange(n), np.arange(n))
        return float((eps.turn_rewards.sum(axis=1) > 0).mean())

    # ------------------------------------------------------------------ SFT warm start
    def demonstrations(self, num: int, seed: int):
        """`num` (history, expert move) examples as (prompt tokens [num, W], mask, completion
        tokens [num, max_turn_tokens], mask), W = max_prompt_tokens + max_total_tokens."""
        env = self.env_cls()
        if not hasattr(env, "expert_action"):
            raise ValueError(f"config.sft.steps: environment {self.ctx.config.env.name!r} has no expert_action() "
                             "for demonstrations; set sft.steps=0 (or init_from a warm-started model)")
        tok, s, b = self.ctx.tokenizer, self.ctx.sampler_cfg, self.budget
        stop = int(s.stop_ids[0])
        rng = np.random.default_rng(seed)
        W = b.max_prompt_tokens + b.max_total_tokens
        p_tok = np.full((num, W), s.pad_id, np.int32)
        p_mask = np.zeros((num, W), bool)
        c_tok = np.full((num, b.max_turn_tokens), s.pad_id, np.int32)
        c_mask = np.zeros((num, b.max_turn_tokens), bool)
        i = 0
        while i < num:
            obs = env.reset(self.task(int(rng.integers(self.ctx.config.env.train_tasks))), 0)
            hist = list(self.encode_prompt(obs))
            if len(hist) > b.max_prompt_tokens:
                raise ValueError(f"config.env.max_prompt_tokens: the first observation takes {len(hist)} tokens, "
                                 f"more than {b.max_prompt_tokens}")
            rest = 0
            for _ in range(b.max_turns):
                expert = env.expert_action()
                if expert is None:                       # the expert has no move from here
                    break
                act = (tok.encode(expert, add_special_tokens=False) + [stop])[:b.max_turn_tokens]
                if i < num:
                    p_tok[i, W - len(hist):], p_mask[i, W - len(hist):] = hist, True
                    c_tok[i, :len(act)], c_mask[i, :len(act)] = act, True
                    i += 1
                mix = hasattr(env, "random_action") and rng.random() < DEMO_RANDOM_RATE
                move = env.random_action(rng) if mix else expert
                res = env.step(move)
                obs_ids = list(self.encode_observation(res.observation))
                taken = tok.encode(move, add_special_tokens=False) + [stop]
                rest += len(taken) + len(obs_ids)
                if res.done or rest + b.max_turn_tokens > b.max_total_tokens:
                    break
                hist += taken + obs_ids
        return p_tok, p_mask, c_tok, c_mask
