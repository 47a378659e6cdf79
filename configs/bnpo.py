"""BNPO: Beta-normalized advantages (alpha, beta fitted to the batch's group means each
step), PPO-clip, token-mean. Rewards must lie in [r_min, r_max] = [0, 1]."""

from configs import grpo


def get_config():
    c = grpo.get_config()
    c.name = c.rl.algorithm = "bnpo"
    c.rl.estimator = "bnpo"
    c.rl.estimator_kwargs = {"r_min": 0.0, "r_max": 1.0}
    return c
