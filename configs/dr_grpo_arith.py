"""Dr. GRPO on the quickstart task (for experiments/compare.py against configs/quickstart.py)."""

from configs import quickstart


def get_config():
    c = quickstart.get_config()
    c.name = c.rl.algorithm = "dr_grpo"
    c.rl.estimator = "dr_grpo"
    c.rl.estimator_kwargs = {}
    c.rl.agg = "seq-mean-token-sum-norm"
    return c
