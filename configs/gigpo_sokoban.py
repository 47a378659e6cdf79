"""GiGPO on the procedural Sokoban (one box, a 4x4 room), a tiny model, CPU, minutes.

Paper: "Group-in-Group Policy Optimization for LLM Agent Training" (GiGPO; official code
verl-agent, whose Sokoban runs are 6x6 rooms with one box on Qwen2.5-1.5B/7B). Here the
room is 4x4 inside its walls, the box scrambled off its target by 10 reverse moves
(shortest solutions take 1-6 moves, 2-3 typically), at most 6 moves an episode, and the
observation is the map plus a line of the four cells next to the player and the four
beyond them (what a push needs). The random tiny model is warm-started on a BFS
expert's shortest solutions with random moves mixed in (rate 0.3), deliberately short,
then GiGPO trains it with verl-agent's defaults (gamma 0.95, omega 1, mean_norm, the
invalid-action penalty 0.1) on 8 levels x 8 episodes per step. Success (every box on a
target, greedy) on 64 held-out levels is logged at step 0 and at the end. verl-agent
shapes Sokoban's reward per step (+/-1 per box, -0.1 per move, +10 solved); rlx keeps
the outcome only (see rlx/envs/sokoban.py).

Measured (2 CPU cores, seed 0): it does NOT improve at this size — greedy success 0.391
after the warm start, 0.344 after 40 steps (15 min); with --config.optimizer.lr=1e-3 and
60 steps 0.234. The sampled success rose from 0.28 (first 10 steps) to 0.35-0.38.
"""

from configs import gigpo_gridworld


def get_config():
    c = gigpo_gridworld.get_config()
    c.name = "gigpo_sokoban"
    c.env.name = "sokoban"
    c.env.task_kwargs = {"width": 4, "height": 4, "boxes": 1, "wall_prob": 0.0, "scramble": 10, "max_steps": 6,
                         "hint": False, "neighbors": True}
    c.env.max_turns = 6
    c.env.max_turn_tokens = 6             # "right" + EOS
    c.env.max_prompt_tokens = 52          # BOS + the 6x6 map and the neighbours' line (50 characters)
    c.env.max_total_tokens = 344          # 6 turns x (6 + 51)
    return c
