"""GRPO (DeepSeekMath): group-normalized advantages + PPO-clip, token-mean aggregation.

A = (r - mean_g) / (std_g + 1e-6) with ddof=1; PPO clip 0.2; KL to the reference
policy as a k3 loss term (coefficient 0.04 in DeepSeekMath; 0 here by default for
CPU-scale runs without a reference model — set --config.rl.kl_coef=0.04).
"""

from configs import base


def get_config():
    c = base.get_config()
    c.name = "grpo"
    c.rl.algorithm = "grpo"
    c.rl.estimator = "grpo"
    c.rl.estimator_kwargs = {"ddof": 1, "eps": 1e-6}
    c.rl.loss = "ppo_clip"
    c.rl.loss_kwargs = {"eps_low": 0.2, "eps_high": 0.2}
    c.rl.agg = "token-mean"
    return c
