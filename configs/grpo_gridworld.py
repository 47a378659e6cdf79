"""The GRPO baseline of configs/gigpo_gridworld.py: the same model, warm start, maps and
budgets, with episode-level GRPO advantages (each episode's score normalized within the
G episodes of its map, (R - mean) / (std + 1e-6), on all its model tokens) — the GRPO
row of the GiGPO paper's comparison. Success on the held-out maps is logged at step 0
and at the end."""

from configs import gigpo_gridworld


def get_config():
    c = gigpo_gridworld.get_config()
    c.name = "grpo_gridworld"
    c.rl.algorithm = "grpo"
    c.rl.estimator = "grpo"
    c.rl.estimator_kwargs = {"ddof": 1, "eps": 1e-6}
    return c
