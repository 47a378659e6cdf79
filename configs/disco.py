"""DisCO: discriminative objective over positive/negative answers of a group (log-mean-exp
of negative scores, tau = 10), score logL, KL constraint (delta 1e-4, beta 1e3). Uses
the group's binary rewards directly (the advantage is not used).

As the official script (Optimization-AI/DisCO `scripts/train/run_disco_logL_1.5b_8k.sh`):
the constraint's KL is k1 = log pi_old - log pi (`ppo_kl_type=kl`), sampling temperature
0.6 — and so the trained policy pi_0.6 (`rl.policy_temperature` follows the sampler, as
verl divides the logits by the rollout temperature) — 8 samples per prompt, no
reference model. Its batch (128 prompts, minibatches of 32, one epoch), lr 2e-6 and
8k-token responses are left to the run.
"""

from configs import grpo


def get_config():
    c = grpo.get_config()
    c.name = c.rl.algorithm = "disco"
    c.rl.loss = "disco"
    c.rl.loss_kwargs = {"score": "logL", "variant": "disco", "tau": 10.0, "delta": 1e-4, "beta": 1e3,
                        "kl_estimator": "k1"}
    c.rl.group_size = 8
    c.rl.kl_coef = 0.0
    c.sampler.temperature = 0.6
    return c
