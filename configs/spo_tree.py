"""SPO-tree (Segment Policy Optimization, tree variant) with the paper's GSM8K defaults.

One 6-6-6 tree per prompt: each node generates a 30-token segment (the last level runs to
the end); finished nodes are leaves scored by the task; V(node) = mean of its children;
each edge (query = parent text, response = child segment) is a sample with
A = V(child) - V(parent) ("rloo"), zero-advantage edges dropped; edges live 8 iterations
in the replay buffer, at most 32 per question per draw; probability mask and whitening
as in SPO-chain; PPO-clip 0.2, log-ratio clamp 10, k3 KL 1e-4; temperature 0.6, top-p 0.9.
`configs/spo_tree_cpu.py` runs in minutes on a CPU.
"""

from configs import spo_chain


def get_config():
    c = spo_chain.get_config()
    c.name = c.rl.algorithm = "spo_tree"
    c.rl.estimator = "spo_tree"
    c.spo.branching = (6, 6, 6)
    c.spo.segment_len = 30
    c.spo.tree_mode = "rloo"
    c.spo.train_edges = 256
    c.spo.replay_capacity = 8192
    c.spo.replay_max_age = 8
    c.spo.replay_per_question = 32
    c.rl.minibatches = 4
    return c
