"""BNPO: Beta-normalized advantages (alpha, beta fitted to the batch's group means each
step), PPO-clip. Rewards must lie in [r_min, r_max] = [0, 1].

As the official script (changyi7231/BNPO `recipe/bnpo/run.sh`): clip-higher 0.2 / 0.28,
dual-clip c = 10, `loss_agg_mode=seq-mean-token-sum`, no KL, sampling temperature 1,
top-p 1, one PPO epoch; 16 samples per prompt, 32 prompts per step, one minibatch
(`ppo_mini_batch_size` = the batch), lr 1e-6 with 10 warm-up steps, grad clip 1 — the
batch shape and optimizer are left to the run (a CPU run cannot afford them).
Advantage decomposition (`use_advantage_decomposition`, off in the script): set
`rl.advantage_decomposition=True` and give the components weights, e.g.
`--config.data.reward_weights="(1.0, 1.0)"` (format + answer, the script's
`use_format_reward=True`): one BNPO advantage per component, averaged.
"""

from configs import grpo


def get_config():
    c = grpo.get_config()
    c.name = c.rl.algorithm = "bnpo"
    c.rl.estimator = "bnpo"
    c.rl.estimator_kwargs = {"r_min": 0.0, "r_max": 1.0}
    c.rl.loss_kwargs = {"eps_low": 0.2, "eps_high": 0.28, "dual_clip": 10.0}
    c.rl.agg = "seq-mean-token-sum"
    c.rl.advantage_decomposition = False
    c.rl.kl_coef = 0.0
    return c
