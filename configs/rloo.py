"""RLOO: leave-one-out baseline A_i = r_i - mean_{j != i} r_j, with PPO-clip."""

from configs import grpo


def get_config():
    c = grpo.get_config()
    c.name = c.rl.algorithm = "rloo"
    c.rl.estimator = "rloo"
    c.rl.estimator_kwargs = {}
    return c
