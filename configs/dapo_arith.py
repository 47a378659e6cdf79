"""DAPO on the quickstart task: clip-higher, dynamic sampling as the official recipe
(rounds of 3 x P prompts, overflow discarded), overlong shaping (for experiments/compare.py
against configs/quickstart.py)."""

from configs import dapo
from configs.cpu_scale import on_quickstart


def get_config():
    c = on_quickstart(dapo.get_config(), "dapo_arith")
    c.rl.overlong_cache = 1              # of the 4-token budget: the 4th token is penalized
    return c
