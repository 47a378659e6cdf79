"""rlx.train.metrics_rl.rollout_metrics: the lengths split by outcome (values by hand)."""

import numpy as np

from rlx.train.metrics_rl import rollout_metrics


def test_lengths_of_correct_and_incorrect_rows():
    # 2 prompts x 3 samples; row-major lengths 2 4 6 | 1 3 5; correct: rows 0, 4; row 5 invalid.
    # correct lengths {2, 3} -> 2.5; incorrect valid rows 1, 2, 3 -> (4 + 6 + 1) / 3.
    success = np.array([[1, 0, 0], [0, 1, 0]], bool)
    valid = np.array([[1, 1, 1], [1, 1, 0]], bool)
    lengths = np.array([2, 4, 6, 1, 3, 5])
    m = rollout_metrics(success.astype(float), success, lengths, np.zeros(6, int), valid)
    assert m["response/length_correct"] == 2.5
    assert abs(m["response/length_incorrect"] - 11 / 3) < 1e-12
    assert m["response/length_mean"] == 3.5          # over every row, as before


def test_a_split_without_rows_is_left_out():
    success = np.ones((1, 2), bool)
    m = rollout_metrics(success.astype(float), success, np.array([3, 5]), np.zeros(2, int), success)
    assert m["response/length_correct"] == 4.0
    assert "response/length_incorrect" not in m
