"""Forking a shipped config from a file outside the checkout (issue 20 item 4)."""

import os
import subprocess
import sys

FORK = '''
from configs import grpo


def get_config():
    c = grpo.get_config()
    c.name = "my_grpo"
    c.rl.group_size = 4
    return c
'''


def test_a_config_outside_the_checkout_forks_a_shipped_one(tmp_path):
    # A fresh interpreter in a directory that is not the repo (and does not hold a
    # `configs/`): `from configs import grpo` resolves to rlx's installed configs.
    work = tmp_path / "project"
    work.mkdir()
    (work / "my_config.py").write_text(FORK)
    code = ("from rlx.train.config import load_config, validate; "
            "c = validate(load_config('my_config.py')); print(c.name, c.rl.group_size, c.rl.estimator)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["my_grpo", "4", "grpo"]
