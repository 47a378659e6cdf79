"""rlx.plot: the evaluation curve's final point, no duplicate panel, no overwritten curves.png."""

import os

from rlx import plot
from rlx.train.metrics import MetricWriter


def _run(path, records):
    w = MetricWriter(str(path))
    for step, m in records:
        w.write(step, m)
    w.close()
    return str(path)


def test_final_evaluation_ends_the_evaluation_curve():
    recs = [{"step": 0, "eval/accuracy": 0.2}, {"step": 5, "reward/mean": 0.5, "eval/accuracy": 0.4},
            {"step": 10, "eval/accuracy_final": 0.6}]
    assert plot.points(recs, "eval/accuracy") == [(0, 0.2), (5, 0.4), (10, 0.6)]
    assert plot.points(recs, "reward/mean") == [(5, 0.5)]


def test_accuracy_panel_dropped_only_when_it_repeats_reward(tmp_path):
    binary = {"a": [{"step": 1, "reward/mean": 0.5, "accuracy": 0.5}, {"step": 2, "reward/mean": 0.7, "accuracy": 0.7}]}
    drawn = plot.plot_runs(binary, str(tmp_path / "b.png"))
    assert "accuracy" not in drawn and "reward/mean" in drawn
    shaped = {"a": [{"step": 1, "reward/mean": 0.4, "accuracy": 0.5}]}        # a shaped reward: two curves
    assert "accuracy" in plot.plot_runs(shaped, str(tmp_path / "s.png"))
    final_only = {"a": [{"step": 3, "eval/accuracy_final": 0.9}]}
    assert plot.plot_runs(final_only, str(tmp_path / "f.png")) == ["eval/accuracy"]


def test_several_runs_write_compare_png_not_a_runs_curves(tmp_path):
    d0 = _run(tmp_path / "r0", [(1, {"reward/mean": 0.1})])
    d1 = _run(tmp_path / "r1", [(1, {"reward/mean": 0.2})])
    out = plot.main([d0, d1])
    assert out == os.path.join(str(tmp_path), "compare.png") and os.path.exists(out)
    assert not os.path.exists(os.path.join(d0, "curves.png"))
    assert plot.main([d0]) == os.path.join(d0, "curves.png")
