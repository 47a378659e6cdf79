"""BNPO on the quickstart task (for experiments/compare.py against configs/quickstart.py)."""

from configs import quickstart


def get_config():
    c = quickstart.get_config()
    c.name = c.rl.algorithm = "bnpo"
    c.rl.estimator = "bnpo"
    c.rl.estimator_kwargs = {"r_min": 0.0, "r_max": 1.0}
    return c
