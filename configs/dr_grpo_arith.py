"""Dr. GRPO on the quickstart task (for experiments/compare.py against configs/quickstart.py)."""

from configs import dr_grpo
from configs.cpu_scale import on_quickstart


def get_config():
    return on_quickstart(dr_grpo.get_config(), "dr_grpo_arith")
