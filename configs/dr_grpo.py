"""Dr. GRPO ("Understanding R1-Zero-Like Training"): A = r - mean_g (no std), and the
constant-denominator aggregation seq-mean-token-sum-norm (no length bias)."""

from configs import grpo


def get_config():
    c = grpo.get_config()
    c.name = c.rl.algorithm = "dr_grpo"
    c.rl.estimator = "dr_grpo"
    c.rl.estimator_kwargs = {}
    c.rl.agg = "seq-mean-token-sum-norm"
    return c
