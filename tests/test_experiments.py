"""experiments/compare.py: aggregation over seeds (the figure's mean and 95% interval)."""

import os
import sys

import numpy as np

from rlx.train.metrics import MetricWriter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))
import compare  # noqa: E402


def test_curves_mean_and_std_over_seeds(tmp_path):
    # Seed 0 logs accuracy 0.2, 0.4 at steps 0, 10; seed 1 logs 0.4, 0.8 and an extra
    # step 5 that seed 0 lacks (dropped: only common steps). Mean 0.3, 0.6; s (ddof 1)
    # 0.1414, 0.2828; t_{0.975,1} = 12.7062 -> half-widths 12.7062 * s / sqrt(2) = 1.2706, 2.5412.
    dirs = []
    for seed, vals in ((0, {0: 0.2, 10: 0.4}), (1, {0: 0.4, 5: 0.9, 10: 0.8})):
        d = tmp_path / f"run-s{seed}"
        w = MetricWriter(str(d))
        for step, v in vals.items():
            w.write(step, {"eval/accuracy": v})
        w.close()
        dirs.append(str(d))
    steps, mean, half, n = compare.curves(dirs, "eval/accuracy")
    np.testing.assert_array_equal(steps, [0, 10])
    assert n == 2
    np.testing.assert_allclose(mean, [0.3, 0.6])
    np.testing.assert_allclose(half, [1.27062, 2.54124], rtol=1e-5)


def test_unknown_config_is_an_error(tmp_path):
    import pytest
    with pytest.raises(SystemExit, match="no config file configs/nope.py"):
        compare.main(["--configs", "nope", "--out", str(tmp_path)])
