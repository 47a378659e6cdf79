"""CPU-scale variants of algorithm configs: the algorithm's pieces on the quickstart task.

`on_quickstart(paper_config)` keeps the quickstart's model, task, sampler, SFT warm start
and schedule, and takes from the algorithm's config what defines the algorithm: the
`rl` estimator / loss / aggregation / KL / dynamic-sampling settings and the `spo`,
`critic` and `pref` sections. Used by the *_arith and *_cpu configs.
"""

from configs import quickstart

RL_KEYS = ("algorithm", "estimator", "estimator_kwargs", "loss", "loss_kwargs", "agg", "kl_agg", "whiten_scope",
           "kl_coef", "kl_kind", "kl_placement", "entropy_coef", "dynamic_sampling", "max_sampling_rounds",
           "gen_batch_multiple", "dynamic_overflow", "allow_partial_batch", "overlong_cache")


def on_quickstart(paper, name: str):
    c = quickstart.get_config()
    c.name = name
    for k in RL_KEYS:
        c.rl[k] = paper.rl[k]
    c.spo, c.critic, c.pref = paper.spo, paper.critic, paper.pref
    return c
