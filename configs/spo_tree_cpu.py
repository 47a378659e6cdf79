"""SPO-tree at CPU scale: the quickstart model and task, 3-3 trees of 1-token segments."""

from configs import spo_tree
from configs.cpu_scale import on_quickstart


def get_config():
    c = on_quickstart(spo_tree.get_config(), "spo_tree_cpu")
    c.spo.branching = (3, 3)
    c.spo.segment_len = 1                # answers are 2-3 tokens: one digit per level
    c.spo.train_edges = 64
    c.spo.replay_capacity = 1024
    c.rl.prompts_per_step = 8
    c.rl.minibatches = 2
    c.train.steps = 60
    c.train.eval_every = 20
    return c
