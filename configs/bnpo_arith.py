"""BNPO on the quickstart task (for experiments/compare.py against configs/quickstart.py)."""

from configs import bnpo
from configs.cpu_scale import on_quickstart


def get_config():
    return on_quickstart(bnpo.get_config(), "bnpo_arith")
