"""The episodes rollout kind: multi-turn gridworld episodes through the engine (GiGPO,
ARPO replay, exact resume, the greedy success evaluation), the mapping of per-turn
advantages onto tokens, the warm start's demonstrations, and config errors. Expected
values are derived by hand in the comments."""

import os
import types
from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import models
from rlx.train import update as tupdate
from rlx.train.build import build_sampler_config
from rlx.train.config import ConfigError, apply_overrides, load_config, validate
from rlx.train.engine import TIMING_PREFIXES, Engine
from rlx.train.kinds import StepInputs, kind_name
from rlx.train.kinds.episodes import Episodes, token_advantages, turn_end_rewards
from rlx.train.metrics import read_jsonl
from rlx.types import Batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIGPO = os.path.join(ROOT, "configs", "gigpo_gridworld.py")


def tiny(run_dir, *overrides):
    c = load_config(GIGPO)
    apply_overrides(c, [f"run_dir={run_dir}", "log.progress=False", "env.task_kwargs.size=3",
                        "env.task_kwargs.neighbors=False",
                        "env.max_turns=3", "env.max_prompt_tokens=16", "env.max_total_tokens=56",
                        "env.eval_tasks=4", "model.hidden_size=32", "model.num_layers=1",
                        "model.intermediate_size=64", "sft.steps=4", "sft.batch_size=16",
                        "rl.prompts_per_step=2", "rl.group_size=4", "rl.minibatches=1", "train.steps=2",
                        "train.eval_every=0", "checkpoint.interval=1", "checkpoint.async_save=False",
                        "mesh.shape=(1, 1, 1)", *overrides])
    return validate(c)


# --------------------------------------------------------------------------- tokens of turns
# One episode, 9 columns: model turn 0 (2 tokens), observation (2), model turn 1 (3),
# observation (1), padding (1).
TURN_OF = np.array([[0, 0, 0, 0, 1, 1, 1, 1, -1]])
LOSS = np.array([[1, 1, 0, 0, 1, 1, 1, 0, 0]], bool)


def test_turn_advantages_land_on_their_model_tokens_only():
    adv = token_advantages(np.array([[0.5, -2.0]]), TURN_OF, LOSS)
    np.testing.assert_array_equal(adv, [[0.5, 0.5, 0, 0, -2, -2, -2, 0, 0]])


def test_turn_rewards_sit_on_each_turns_last_model_token():
    r = turn_end_rewards(np.array([[1.0, 3.0]]), TURN_OF, LOSS)
    np.testing.assert_array_equal(r, [[0, 1, 0, 0, 0, 0, 3, 0, 0]])


def _kind_for(config):
    """An Episodes kind on a minimal context (no engine): what `_advantages` and
    `demonstrations` read."""
    tok = models.build_tokenizer()
    ctx = types.SimpleNamespace(config=config, tokenizer=tok, sampler_cfg=build_sampler_config(config, tok))
    return Episodes(ctx)


def test_gigpo_advantages_of_two_episodes_by_hand(tmp_path):
    # P=1 task, G=2 episodes of K=2 turns, no invalid actions (penalty irrelevant).
    #   A: turns in states 0, 1 with rewards 0, 1 (reaches G);  B: states 0, 4, rewards 0, 0.
    # Episode level (mean_norm, statistics over steps: both have 2): R = 1, 0; mean 0.5
    #   -> A^E = +0.5, -0.5.
    # Step level: returns (gamma 0.95) A: [0.95, 1], B: [0, 0]. Anchor group of state 0 =
    #   {A0: 0.95, B0: 0}, mean 0.475 -> +0.475, -0.475; states 1 and 4 are singletons -> 0.
    # A = A^E + A^S: A0 = 0.975, A1 = 0.5, B0 = -0.975, B1 = -0.5.
    c = tiny(tmp_path / "r", "rl.group_size=2", "rl.prompts_per_step=1")
    kind = _kind_for(c)
    step_r = np.array([[0.0, 1.0], [0.0, 0.0]], np.float32)
    rows = {"turn_exists": np.ones((2, 2), bool), "turn_state_ids": np.array([[0, 1], [0, 4]])}
    turn_of = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    lmask = np.array([[1, 0, 1, 0], [1, 0, 1, 0]], bool)
    adv, seq, _ = kind._advantages(step_r, step_r.sum(1).reshape(1, 2), np.ones((1, 2), bool), rows, lmask,
                                   turn_of, 1, 2, 2)
    np.testing.assert_allclose(adv, [[0.975, 0, 0.5, 0], [-0.975, 0, -0.5, 0]], rtol=1e-5)
    np.testing.assert_allclose(seq, [[0.7375, -0.7375]], rtol=1e-5)       # token means of the rows


def test_episode_level_grpo_puts_one_advantage_on_every_model_token(tmp_path):
    # Scores 1, 0 of a group of 2: mean 0.5, std (ddof 1) = 0.7071 -> +-0.7071.
    c = tiny(tmp_path / "r", "rl.estimator=grpo", "rl.group_size=2", "rl.prompts_per_step=1")
    kind = _kind_for(c)
    lmask = np.array([[1, 0, 1, 0], [1, 1, 0, 0]], bool)
    adv, _, _ = kind._advantages(None, np.array([[1.0, 0.0]], np.float32), np.ones((1, 2), bool), {}, lmask,
                                 np.zeros((2, 4), int), 1, 2, 2)
    a = 0.5 / np.sqrt(0.5)
    np.testing.assert_allclose(adv, [[a, 0, a, 0], [-a, -a, 0, 0]], rtol=1e-5)


def _bfs_next(rows):
    """Independent reference: the set of first moves of shortest hole-free paths from A to G."""
    n = len(rows)
    pos = next((r, c) for r in range(n) for c in range(n) if rows[r][c] == "A")
    goal = (n - 1, n - 1)
    dist, todo = {goal: 0}, deque([goal])
    while todo:
        r, c = todo.popleft()
        for q in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= q[0] < n and 0 <= q[1] < n and rows[q[0]][q[1]] != "H" and q not in dist:
                dist[q] = dist[(r, c)] + 1
                todo.append(q)
    moves = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
    best = min(dist.get((pos[0] + d[0], pos[1] + d[1]), 99) for d in moves.values())
    return {m for m, d in moves.items() if dist.get((pos[0] + d[0], pos[1] + d[1]), 99) == best}


def test_demonstrations_are_expert_moves_on_token_histories(tmp_path):
    c = tiny(tmp_path / "r")
    kind = _kind_for(c)
    tok = kind.ctx.tokenizer
    p_tok, p_mask, c_tok, c_mask = kind.demonstrations(40, seed=0)
    assert p_tok.shape == (40, 16 + 56) and c_tok.shape == (40, 6)
    prev = None
    continued = 0
    for i in range(40):
        hist = p_tok[i][p_mask[i]].tolist()
        move = tok.decode(c_tok[i][c_mask[i]].tolist(), skip_special_tokens=True)
        assert c_tok[i][c_mask[i]][-1] == tok.eos_token_id
        grid = tok.decode(hist[-11:]).split("\n")       # the latest observation: the 3x3 map (11 characters)
        assert len(grid) == 3 and all(len(r) == 3 for r in grid), grid
        assert move in _bfs_next(grid), (grid, move)
        if prev is not None and hist[:len(prev)] == prev:      # the same episode, one turn later:
            continued += 1                                     # history + move + EOS + new map
            taken = hist[len(prev):]
            assert taken.index(tok.eos_token_id) >= 2 and len(taken) == taken.index(tok.eos_token_id) + 1 + 11
        prev = hist
    assert continued >= 10


def test_config_errors_name_the_key(tmp_path):
    c = tiny(tmp_path / "r")
    assert kind_name(c) == "episodes"
    for override, msg in (("env.name=maze", "unknown environment 'maze'"),
                          ("env.task_kwargs.holes=3", "env.task_kwargs.holes: not a task key"),
                          ("env.task_kwargs.map_seed=3", "set per task by the run"),
                          ("env.eval_seed=10", "env.eval_seed: must be >= env.train_tasks"),
                          ("env.prefill_chunk=-1", "env.prefill_chunk: must be >= 0"),
                          ("rl.estimator=gae", "multi-turn episodes (env.name='gridworld') drive"),
                          ("rl.dynamic_sampling=True", "does not apply to multi-turn episodes")):
        bad = load_config(GIGPO)
        apply_overrides(bad, [override])
        with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            validate(bad)
    plain = load_config(os.path.join(ROOT, "configs", "grpo.py"))
    apply_overrides(plain, ["rl.estimator=gigpo"])
    with pytest.raises(ConfigError, match="gigpo needs multi-step episodes: set env.name"):
        validate(plain)


# --------------------------------------------------------------------------- loss mask
def test_observation_tokens_carry_no_gradient():
    # Same batch twice, advantages and old log-probs changed only where loss_mask is 0
    # (observation tokens): the loss and every gradient are unchanged; changed on a model
    # token, they change.
    cfg = models.tiny(vocab_size=20, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                      intermediate_size=32)
    params = models.init_params(cfg, jax.random.key(0))
    rng = np.random.default_rng(0)
    B, Lp, T = 2, 3, 8
    lmask = np.array([[1, 1, 0, 0, 1, 1, 0, 0], [1, 0, 0, 1, 1, 1, 1, 0]], bool)
    base = dict(prompt_tokens=jnp.asarray(rng.integers(4, 20, (B, Lp)), jnp.int32),
                prompt_mask=jnp.ones((B, Lp), bool),
                completion_tokens=jnp.asarray(rng.integers(4, 20, (B, T)), jnp.int32),
                completion_mask=jnp.ones((B, T), bool), loss_mask=jnp.asarray(lmask))
    adv = rng.normal(size=(B, T)).astype(np.float32)
    old = -rng.random((B, T)).astype(np.float32)
    spec = tupdate.UpdateSpec(loss="ppo_clip", loss_kwargs=(("eps_high", 0.2), ("eps_low", 0.2)), agg="token-mean")
    den = jnp.asarray(float(lmask.sum()))

    def grads(a, o):
        b = Batch.create(**base, advantages=jnp.asarray(a), old_logprobs=jnp.asarray(o))
        return jax.grad(lambda p: tupdate.micro_loss(p, cfg, spec, b, den, 1.0)[0])(params)

    g0 = grads(adv, old)
    noise = np.where(lmask, 0.0, 50.0 * rng.normal(size=(B, T))).astype(np.float32)
    g1 = grads(adv + noise, old + noise)
    for x, y in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    bumped = adv.copy()
    bumped[0, 0] += 5.0                               # a model token
    g2 = grads(bumped, old)
    assert any(not np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(g0), jax.tree.leaves(g2)))


# --------------------------------------------------------------------------- the engine
def _deterministic(path):
    return [{k: v for k, v in r.items() if not k.startswith(TIMING_PREFIXES)} for r in read_jsonl(str(path))]


def test_gigpo_gridworld_runs_resumes_exactly_and_masks_observations(tmp_path):
    # 2 steps of GiGPO with ARPO replay on 3x3 maps: uninterrupted == 1 step, stop,
    # --resume, 1 step (replay buffer and sampler state in the checkpoint); the success
    # evaluation is logged at step 0 and at the end.
    over = ("env.replay=2", "env.train_tasks=3")          # few tasks: groups meet their stored successes
    full = Engine(tiny(tmp_path / "a", *over))
    try:
        full.run()
        ra = _deterministic(tmp_path / "a" / "metrics.jsonl")
        assert [r["step"] for r in ra] == [0, 1, 2, 2]
        assert 0.0 <= ra[0]["eval/accuracy"] <= 1.0 and "eval/accuracy_final" in ra[-1]
        for k in ("adv/anchor_groups", "episode/turns_mean", "replay/injected", "env/errors", "accuracy"):
            assert k in ra[1], k
        stored = np.asarray(full.kind.replay.valid_TK).copy()
        # a fresh rollout from the trained policy: observation tokens (the maps) are never trained on
        r = full.kind.collect(StepInputs(params=full.state.params, reference=None, critic=None,
                                         key=jax.random.key(7), step=5, curriculum=None))
        b = r.batch
        toks, cm, lm = (np.asarray(x) for x in (b.completion_tokens, b.completion_mask, b.loss_mask))
        tok = full.tokenizer
        for i in range(toks.shape[0]):
            context = tok.decode(toks[i][cm[i] & ~lm[i]].tolist(), skip_special_tokens=True)
            assert set(context) <= set("SGHA.\n"), context       # map characters only
            assert lm[i].any() and not (lm[i] & ~cm[i]).any()
        assert np.all(np.asarray(b.advantages)[~lm] == 0)
    finally:
        full.close()
    split = tiny(tmp_path / "b", *over)
    e = Engine(split)
    try:
        e.run(stop_after=1)
    finally:
        e.close()
    e = Engine(split, resume=True)
    try:
        e.run()
        assert e.kind.replay is not None
        np.testing.assert_array_equal(np.asarray(e.kind.replay.valid_TK), stored)
    finally:
        e.close()
    assert _deterministic(tmp_path / "b" / "metrics.jsonl") == ra
