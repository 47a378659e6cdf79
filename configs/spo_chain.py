"""SPO-chain (Segment Policy Optimization, chain variant) with the paper's GSM8K defaults.

Cutpoints at low-probability tokens (p < 0.9), every 5th kept; V at each cutpoint = mean
reward of K = 9 Monte-Carlo continuations (4 for long chains of thought); segment
advantages V(c_k) - V(c_{k-1}), probability mask (p > 0.9 -> A = 0, out of the loss),
whitening of each training micro-batch (`rl.whiten_scope`; the official micro-batch is
2 rows per GPU x the GPUs, so set `rl.micro_batches` to minibatch rows / (2 x devices) to
match it); PPO-clip 0.2 with the log-ratio clamped at +-10, k3 KL 1e-4 summed over a
response's tokens and averaged over responses (`rl.kl_agg`, official
`(k3 * mask).sum(1).mean()`); a response cut by the length budget scores 0; uncapped
cutpoints; sampling temperature 0.6, top-p 0.9, and the trained policy pi_0.6. A real run wants a real model and data
(`--config.model.source=hf --config.model.hf_path=... --config.data.task=gsm8k
--config.data.path=gsm8k_train.jsonl`); `configs/spo_chain_cpu.py` runs in minutes on a CPU.
"""

from configs import grpo


def get_config():
    c = grpo.get_config()
    c.name = c.rl.algorithm = "spo_chain"
    c.rl.estimator = "spo_chain"
    c.rl.estimator_kwargs = {}
    c.rl.loss = "ppo_clip"
    c.rl.loss_kwargs = {"eps_low": 0.2, "eps_high": 0.2, "log_ratio_clamp": 10.0}
    c.rl.kl_coef = 1e-4
    c.rl.kl_kind = "k3"
    c.spo.threshold = 0.9
    c.spo.cutpoint_interval = 5
    c.spo.mc_samples = 9
    c.spo.num_cuts = 0                   # no cap (official)
    c.spo.truncated_reward = "zero"
    c.rl.whiten_scope = "micro_batch"
    c.rl.kl_agg = "seq-mean-token-sum"
    c.sampler.temperature = 0.6
    c.sampler.top_p = 0.9
    c.sampler.max_new_tokens = 512
    c.sampler.max_prompt_len = 256
    return c
