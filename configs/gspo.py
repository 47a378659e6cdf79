"""GSPO: sequence-level importance ratio exp(mean_t log rho) clipped to [1-3e-4, 1+4e-4],
GRPO advantages, seq-mean-token-mean aggregation."""

from configs import grpo


def get_config():
    c = grpo.get_config()
    c.name = c.rl.algorithm = "gspo"
    c.rl.loss = "gspo"
    c.rl.loss_kwargs = {"eps_low": 3e-4, "eps_high": 4e-4, "variant": "seq"}
    c.rl.agg = "seq-mean-token-mean"
    return c
