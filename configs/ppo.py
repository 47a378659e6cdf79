"""PPO with a learned critic and GAE (the InstructGPT / verl recipe) on the quickstart task.

Token rewards: the outcome score on the last response token; advantages from GAE
(gamma = 1, lambda = 0.95, whitened over the batch), returns = A + V regressed by the
critic (clipped value loss, eps_v = 0.2); policy loss PPO-clip 0.2, token-mean.
`--config.rl.estimator=egae` bootstraps truncated responses from the critic instead of 0.
"""

from configs import quickstart


def get_config():
    c = quickstart.get_config()
    c.name = c.rl.algorithm = "ppo"
    c.rl.estimator = "gae"
    c.rl.estimator_kwargs = {"gamma": 1.0, "lam": 0.95}
    c.rl.loss = "ppo_clip"
    c.rl.loss_kwargs = {"eps_low": 0.2, "eps_high": 0.2}
    c.critic.lr = 1e-3
    return c
