"""A checker whose module takes 2 s to import: a worker process that unpickles it pays
that before it can score anything (tests/test_rewards_pool.py)."""

import time

time.sleep(2.0)


def echo(completion, example):
    return (float(completion),)
