"""DisCO: discriminative objective over positive/negative answers of a group (log-mean-exp
of negative scores, tau = 10), score logL, KL constraint (delta 1e-4, beta 1e3). Uses
the group's binary rewards directly (the advantage is not used)."""

from configs import grpo


def get_config():
    c = grpo.get_config()
    c.name = c.rl.algorithm = "disco"
    c.rl.loss = "disco"
    c.rl.loss_kwargs = {"score": "logL", "variant": "disco", "tau": 10.0, "delta": 1e-4, "beta": 1e3}
    return c
