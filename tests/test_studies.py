"""experiments/study.py and the reproduction studies: intervals, verdicts, seeds, --quick.

Interval values are derived by hand: for x = (1, 2, 3), mean 2, s = 1 (ddof 1), t_{0.975,2}
= 4.302653 (t tables), half = 4.302653 / sqrt(3) = 2.484138.
"""

import importlib
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from rlx.train.metrics import MetricWriter

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")
sys.path.insert(0, EXPERIMENTS)
import study  # noqa: E402

STUDIES = ("bnpo_variance", "dr_grpo_length", "dump_vs_uniform", "spo_chain_vs_grpo", "spo_tree_vs_chain",
           "dapo_ablation", "prefix_grouper", "unlikeliness")
VERDICTS = ("reproduced", "not reproduced at this scale", "inconclusive")


def test_interval_t_based():
    ci = study.interval([1.0, 2.0, 3.0])
    assert ci["n"] == 3 and ci["mean"] == 2.0
    assert abs(ci["half"] - 2.484138) < 1e-6 and abs(ci["lo"] - (2 - 2.484138)) < 1e-6
    one = study.interval([0.5])
    assert one["n"] == 1 and one["mean"] == 0.5 and math.isnan(one["half"])
    assert study.interval([float("nan"), 4.0, 6.0])["n"] == 2      # NaN (no measurement) is left out


def test_verdict_follows_the_interval():
    assert study.verdict([1.0, 1.1, 0.9], "x").startswith("reproduced")
    assert study.verdict([-1.0, -1.1, -0.9], "x").startswith("not reproduced at this scale")
    assert study.verdict([1.0, -1.0, 0.2], "x").startswith("inconclusive")
    assert study.verdict([1.0], "x").startswith("inconclusive (one seed)")


def test_band_averages_common_steps_and_regrid_interpolates():
    x, m, h, n = study.band({0: ([0, 10], [0.2, 0.4]), 1: ([0, 5, 10], [0.4, 0.9, 0.8])})
    assert x.tolist() == [0, 10] and n == 2
    np.testing.assert_allclose(m, [0.3, 0.6])
    # t_{0.975,1} = 12.7062; s = 0.1414 and 0.2828 -> half = 12.7062 * s / sqrt(2)
    np.testing.assert_allclose(h, [12.7062 * 0.1, 12.7062 * 0.2], rtol=1e-5)
    g = study.regrid({0: ([0, 100], [0.0, 1.0]), 1: ([0, 50, 80], [0.0, 0.5, 0.5])}, points=3)
    np.testing.assert_allclose(g[0][0], [0, 40, 80])
    np.testing.assert_allclose(g[0][1], [0, 0.4, 0.8])
    np.testing.assert_allclose(g[1][1], [0, 0.4, 0.5])


def test_accuracy_vs_tokens_counts_continuations(tmp_path):
    w = MetricWriter(str(tmp_path))
    w.write(0, {"eval/accuracy": 0.1})
    w.write(1, {"tokens/sampled": 100.0, "spo/mc_tokens": 50.0})
    w.write(2, {"tokens/sampled": 80.0, "spo/mc_tokens": 20.0, "eval/accuracy": 0.5})
    w.close()
    x, acc = study.accuracy_vs_tokens(str(tmp_path))
    assert x.tolist() == [0.0, 250.0] and acc.tolist() == [0.1, 0.5]


def test_seeds_and_vary(tmp_path):
    a = study.parse_args("x", "doc", ["--seeds", "3,4", "--vary", "init", "--runs", str(tmp_path)])
    assert a.seeds == [3, 4] and a.vary == "init"
    assert study.parse_args("x", "doc", ["--quick", "--runs", str(tmp_path)]).seeds == [0]
    with pytest.raises(SystemExit):
        study.parse_args("x", "doc", ["--seeds", "a,b"])


@pytest.mark.parametrize("name", STUDIES)
def test_quick_mode(name, tmp_path):
    """Each study's --quick mode runs end to end and writes its results (what the README's numbers come from)."""
    # A fresh interpreter per study, as a user runs it: a study builds several Engines, and
    # in a long-lived xdist worker their programs pile up (a worker crashed here once, CI of
    # 1535169); a crash in the subprocess is an ordinary failure with its stderr shown.
    mod = importlib.import_module(name)
    out = tmp_path / "out"
    env = dict(os.environ, JAX_PLATFORMS="cpu", RLX_COMPILE_CACHE=jax.config.jax_compilation_cache_dir or "",
               XLA_FLAGS="--xla_llvm_disable_expensive_passes=true", PYTHONFAULTHANDLER="1")
    proc = subprocess.run([sys.executable, os.path.join(EXPERIMENTS, f"{name}.py"), "--quick", "--runs",
                           str(tmp_path / "runs"), "--out", str(out), "--set", "mesh.shape=(1, 1, 1)"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    with open(out / "results.json") as f:
        saved = json.load(f)
    assert saved["study"] == name and saved["seeds"] == [0] and saved["quick"] is True
    assert saved["verdict"].startswith(VERDICTS) and saved["summary"] in proc.stdout   # the printed summary
    assert set(saved["runs"]) == {arm.name for arm in mod.ARMS} if hasattr(mod, "ARMS") else True
    for per_seed in saved["runs"].values():          # every run's metrics, per step
        assert "eval/accuracy" in per_seed["0"] and per_seed["0"]["eval/accuracy"][0][0] == 0
    assert saved["measures"] and os.path.exists(out / f"{name}.png") and os.path.exists(out / "results.md")


def test_init_seed_fixes_the_warm_start_and_seed_the_rl_randomness(tmp_path):
    """init_seed=0 with seeds 0 and 1: the same warm-started params (init, problems, SFT),
    different data keys; init_seed=-1 (= seed): seed 1 starts from other params."""
    from helpers.engine_configs import one_step_config

    from rlx.train.engine import Engine

    def start(seed, init):
        c = one_step_config("quickstart", tmp_path / f"s{seed}i{init}", f"seed={seed}", f"init_seed={init}",
                            "sft.steps=2")
        eng = Engine(c, overwrite=True)
        try:
            return ([np.asarray(x) for x in jax.tree.leaves(eng.state.params)],
                    np.asarray(jax.random.key_data(eng.data_key)))
        finally:
            eng.close()

    (p0, k0), (p1, k1), (q1, _) = start(0, 0), start(1, 0), start(1, -1)
    assert all(np.array_equal(a, b) for a, b in zip(p0, p1))
    assert not np.array_equal(k0, k1)
    assert not all(np.array_equal(a, b) for a, b in zip(p0, q1))
