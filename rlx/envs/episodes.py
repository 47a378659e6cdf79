"""Multi-turn episodes, token-in / token-out: the model acts, the environment answers.

    eps, state = run_episodes(params, model_cfg, scfg, state, pool, tasks, seeds,
                              encode=tok_encode, decode=tok_decode, budget=EpisodeBudget(...))

Each of N episodes (one per (task, seed), stepped by an `EnvPool`) is one token sequence
built by appending token ids — never by re-tokenizing its history:

    first prompt = encode_prompt(reset observation)
    turn k:  model tokens as sampled (up to the stop token or `max_turn_tokens`)
             + encode_observation(environment's answer to the decoded turn)

so each turn's prompt is an exact token prefix of the next one and of the final
sequence. A model turn cut by `max_turn_tokens` before its stop token is closed with
the first of `scfg.stop_ids` (as context, loss mask 0) before the observation, so that
observations always follow a finished turn (what `rlx.envs.chat.chat_encoders`'
observation tokens assume). The trainer's view (`Episodes`): the first prompt (left-padded) and the rest
as one right-padded "completion" whose `loss_mask` is 1 on model tokens and 0 on
observation tokens (context for the forward, no loss, no gradient), with the sampler's
log-probs of the model tokens (at `logprob_temperature`, as `SampleOutput.logprobs`).

Per turn: the reward, the state id the action was taken in (GiGPO's anchor state),
`valid_action`. An episode ends when the environment says done, when it fails (EnvPool:
reward 0), at `max_turns`, or when the next turn would not fit `max_total_tokens`
(truncated).

The KV cache carries across turns (`kv_carry`, the default; `rlx.sampling.multiturn`):
the first prompts are prefilled once, and each later turn feeds only the new
observation tokens through the cache before decoding. When the next turn would not fit
the cache (max_prompt_tokens + max_total_tokens + max_turn_tokens columns; rows that
stopped early leave masked columns), or a live episode's observation encodes to no
tokens, the histories are re-prefilled compactly. `kv_carry=False` re-prefills the
whole history every turn (the sampler called with it as the prompt) — the same tokens
from the same randomness, each turn paying a prefill of everything so far.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rlx import sampling
from rlx.envs.pool import EnvPool
from rlx.sampling import multiturn
from rlx.sampling.config import split_state

# Episode end reasons
DONE, MAX_TURNS, TRUNCATED, ENV_ERROR = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class EpisodeBudget:
    max_turns: int = 4
    max_turn_tokens: int = 16          # new tokens of one model turn
    max_prompt_tokens: int = 64        # the first prompt
    max_total_tokens: int = 128        # everything after the first prompt: turns and observations

    def __post_init__(self):
        for k in ("max_turns", "max_turn_tokens", "max_prompt_tokens", "max_total_tokens"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"EpisodeBudget.{k}: must be >= 1, got {getattr(self, k)}")
        if self.max_turn_tokens > self.max_total_tokens:
            raise ValueError(f"EpisodeBudget: max_turn_tokens {self.max_turn_tokens} exceeds max_total_tokens "
                             f"{self.max_total_tokens}")


@dataclasses.dataclass
class Episodes:
    """N episodes as host arrays (T = budget.max_total_tokens, K = budget.max_turns)."""
    prompt_tokens: np.ndarray      # int32 [N, Lp] left-padded first prompt
    prompt_mask: np.ndarray        # bool [N, Lp]
    tokens: np.ndarray             # int32 [N, T] model turns and observations, right-padded
    mask: np.ndarray               # bool [N, T] real tokens
    loss_mask: np.ndarray          # bool [N, T] model tokens
    logprobs: np.ndarray           # float32 [N, T] sampler log-probs of model tokens (0 elsewhere)
    turn_of_token: np.ndarray      # int32 [N, T] the turn a token belongs to (-1: padding)
    turn_rewards: np.ndarray       # float32 [N, K]
    turn_state_ids: np.ndarray     # int64 [N, K] state the turn's action was taken in
    turn_valid_action: np.ndarray  # bool [N, K]
    turn_exists: np.ndarray        # bool [N, K]
    num_turns: np.ndarray          # int32 [N]
    end_reason: np.ndarray         # int32 [N] DONE / MAX_TURNS / TRUNCATED / ENV_ERROR
    texts: list                    # [N][turns] decoded model turns

    @property
    def returns(self) -> np.ndarray:
        """Undiscounted episode return [N]."""
        return self.turn_rewards.sum(axis=1)


def _left_pad(rows: list[list[int]], width: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    toks = np.full((len(rows), width), pad, np.int32)
    mask = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        if r:
            toks[i, width - len(r):] = r
            mask[i, width - len(r):] = True
    return toks, mask


def run_episodes(params, model_cfg, scfg, sampler_state, pool: EnvPool, tasks: list[dict], seeds: list[int], *,
                 encode_prompt, encode_observation, decode, budget: EpisodeBudget, put=None, kv_carry: bool = True,
                 prefill_chunk: int = 32):
    """Runs the episodes (see the module docstring); returns (Episodes, sampler state).

    `encode_prompt(text) -> ids` tokenizes the first observation as the first prompt,
    `encode_observation(text) -> ids` each later observation (both may apply a chat
    template), `decode(ids) -> text` the model's turn for the environment. `scfg` gives
    temperature, top-k/p, stop ids and pad id; its lengths are replaced by the budget's.
    With `kv_carry`, observations enter the cache `prefill_chunk` tokens per forward (0:
    one token per decode step; `rlx.sampling.multiturn.append_tokens`)."""
    if prefill_chunk < 0:
        raise ValueError(f"run_episodes: prefill_chunk must be >= 0, got {prefill_chunk}")
    N, K, T = len(tasks), budget.max_turns, budget.max_total_tokens
    W = budget.max_prompt_tokens + T                      # the sampler's prompt width: the whole history
    turn_cfg = scfg.replace(max_prompt_len=W, max_new_tokens=budget.max_turn_tokens, rows_per_call=0)
    put = put or (lambda x: x)
    obs = pool.reset(tasks, seeds)
    prompts, live = [], np.ones(N, bool)
    end = np.full(N, DONE, np.int32)
    for i, o in enumerate(obs):
        ids = [] if o is None else list(encode_prompt(o))
        if len(ids) > budget.max_prompt_tokens:
            raise ValueError(f"episode {i}: the first prompt has {len(ids)} tokens, more than "
                             f"EpisodeBudget.max_prompt_tokens={budget.max_prompt_tokens}")
        prompts.append(ids)
        if o is None:
            live[i], end[i] = False, ENV_ERROR
    rest = [[] for _ in range(N)]                       # tokens after the first prompt
    is_model = [[] for _ in range(N)]
    lps = [[] for _ in range(N)]
    turn_of = [[] for _ in range(N)]
    rewards = np.zeros((N, K), np.float32)
    state_ids = np.zeros((N, K), np.int64)
    valid_action = np.zeros((N, K), bool)
    exists = np.zeros((N, K), bool)
    texts = [[] for _ in range(N)]
    S = W + budget.max_turn_tokens                      # cache columns (kv_carry) the turns may fill
    spare = prefill_chunk                               # a last chunk writes past its tokens
    pending, ds, col = [[] for _ in range(N)], None, 0   # tokens not yet in the cache
    current_state = np.array([int(e.initial_state_id) if e is not None else -1 for e in pool.envs], np.int64)
    for k in range(K):
        for i in range(N):                               # the next turn must fit the total budget
            if live[i] and len(rest[i]) + budget.max_turn_tokens > T:
                live[i], end[i] = False, TRUNCATED
        if not live.any():
            break
        if kv_carry:
            lens = np.array([len(p) if live[i] else 0 for i, p in enumerate(pending)], np.int32)
            O = int(lens.max()) if k else 0
            if k == 0 or (lens[live] == 0).any() or col + O + budget.max_turn_tokens > S:
                width = budget.max_prompt_tokens if k == 0 else W        # (re-)prefill the histories
                toks, mask = _left_pad([prompts[i] + rest[i] for i in range(N)], width, scfg.pad_id)
                ds = multiturn.open_cache(params, model_cfg, turn_cfg, put(toks), put(mask), total_len=S + spare)
                col = width
            else:                                                          # only the new tokens
                obs_t = np.full((N, T), scfg.pad_id, np.int32)
                for i in np.flatnonzero(lens):
                    obs_t[i, :lens[i]] = pending[i]
                ds = multiturn.append_tokens(params, model_cfg, turn_cfg, ds, put(obs_t), put(lens), np.int32(col),
                                             chunk=prefill_chunk)
                col += O
            key, sampler_state = split_state(sampler_state)
            ds, t_, m_, lp_ = multiturn.decode_turn(params, model_cfg, turn_cfg, ds, key, put(live), np.int32(col),
                                                    steps=budget.max_turn_tokens)
            new_t, m_, new_lp = (np.asarray(x) for x in (t_, m_, lp_))
            new_l = m_.sum(axis=1)
            col += int(new_l.max())
        else:
            hist = [prompts[i] + rest[i] for i in range(N)]
            toks, mask = _left_pad(hist, W, scfg.pad_id)
            out, sampler_state = sampling.generate(params, model_cfg, turn_cfg, sampler_state, put(toks), put(mask), 1)
            new_t, new_l, new_lp = (np.asarray(x) for x in (out.completion_tokens, out.lengths, out.logprobs))
        pending = [[] for _ in range(N)]
        actions = [None] * N
        for i in np.flatnonzero(live):
            ids = new_t[i, :new_l[i]].tolist()
            rest[i] += ids
            is_model[i] += [True] * len(ids)
            lps[i] += new_lp[i, :new_l[i]].tolist()
            turn_of[i] += [k] * len(ids)
            actions[i] = decode(ids)
            texts[i].append(actions[i])
            exists[i, k] = True
            state_ids[i, k] = current_state[i]
        results = pool.step(actions)
        for i in np.flatnonzero(live):
            r = results[i]
            rewards[i, k] = r.reward
            valid_action[i, k] = bool(r.info.get("valid_action", False))
            current_state[i] = int(r.info.get("state_id", -1))
            if r.done:
                live[i], end[i] = False, ENV_ERROR if "error" in r.info else DONE
                continue
            ids = list(encode_observation(r.observation))
            if scfg.stop_ids and (not rest[i] or rest[i][-1] not in scfg.stop_ids):
                ids = [int(scfg.stop_ids[0])] + ids       # a turn cut by its budget is closed
            room = T - len(rest[i])
            if len(ids) > room:                       # the observation does not fit: the episode ends here
                ids = ids[:room]
                live[i], end[i] = False, TRUNCATED
            rest[i] += ids
            pending[i] = ids
            is_model[i] += [False] * len(ids)
            lps[i] += [0.0] * len(ids)
            turn_of[i] += [k] * len(ids)
    end[live] = MAX_TURNS
    p_tok, p_mask = _left_pad(prompts, budget.max_prompt_tokens, scfg.pad_id)
    tok = np.full((N, T), scfg.pad_id, np.int32)
    msk = np.zeros((N, T), bool)
    lmask = np.zeros((N, T), bool)
    lp = np.zeros((N, T), np.float32)
    tof = np.full((N, T), -1, np.int32)
    for i in range(N):
        n = len(rest[i])
        tok[i, :n], msk[i, :n], lmask[i, :n], lp[i, :n], tof[i, :n] = rest[i], True, is_model[i], lps[i], turn_of[i]
    return Episodes(p_tok, p_mask, tok, msk, lmask, lp, tof, rewards, state_ids, valid_action, exists,
                    exists.sum(axis=1).astype(np.int32), end, texts), sampler_state
