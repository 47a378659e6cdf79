"""Pinned engine metrics: each rollout kind's runs must keep the metrics they had.

`tests/data/engine_golden.json` holds, per named run, the deterministic metrics (timing
left out) of every logged step, recorded by the engine as it was before its rollout
kinds were split into `rlx.train.rollouts` (commit 6d35122, jax 0.10.2 on this CPU).
Restructuring the engine must not change any of them. XLA:CPU is deterministic for one
program on one machine, but not across CPUs: the same wheel on another x86 model (vector
width, FMA) rounds reductions differently — seen here as relative differences up to 5e-5
in ratio_max / grad_norm after one update (2026-12-03, AMD EPYC against the recording
machine). So floats are compared to |got - pinned| <= 1e-6 + 1e-3 |pinned| (a change of
behaviour moves them by far more), and DPO's `reward_accuracy` is not compared at step 1:
it counts pairs with margin > 0 while the policy still equals the reference, i.e. the
sign of margins of rounding size.

Re-pinned on 2026-12-07 (issue 19, the official SPO / DAPO wiring): spo_chain_cpu,
spo_tree_cpu and lora_spo_chain_cpu (SPO's micro-batch whitening, its summed KL, the
truncated-response reward and its metric) and dapo_dynamic (two new metrics, values
unchanged); every other run keeps its 6d35122 values.

These are not expected values in the usual sense: nothing here is derived; they pin the
behaviour of the code that an independent review accepted (the estimator and loss
tests check the values themselves). To re-pin after an intended change of behaviour,
run the tests with RLX_RECORD_GOLDEN=1 and say why in the commit.
"""

from __future__ import annotations

import json
import math
import os

from rlx.train.engine import TIMING_PREFIXES
from rlx.train.metrics import read_jsonl

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "engine_golden.json")


# Metrics added after the runs were pinned, checked by their own tests
# (tests/test_metrics_rl.py): not compared here, so adding them needs no re-pin.
UNPINNED = ("response/length_correct", "response/length_incorrect")


def _records(run_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith(TIMING_PREFIXES) and k not in UNPINNED}
            for r in read_jsonl(os.path.join(str(run_dir), "metrics.jsonl"))]


RTOL, ATOL = 1e-3, 1e-6
# (metric, step) pairs decided by the sign of rounding-size numbers (module docstring).
_ILL_CONDITIONED = {("reward_accuracy", 1)}
# Metrics that are means of differences of nearly equal numbers (kl_k1 = mean(log pi_old -
# log pi) after an update): a rounding-level change of the params moves them by up to
# ~1e-5 absolute, i.e. far more than 1e-3 relative when they are ~3e-3 (seen 2026-12-07
# between two x86 machines, the same code and wheel: 0.0035538 vs 0.0035594).
_ABS_TOL = {"kl_k1": 2e-5}


def _same(a, b, key: str = "") -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(a - b) <= max(ATOL, _ABS_TOL.get(key, 0.0)) + RTOL * abs(b)
    return a == b


def check_golden(name: str, run_dir) -> None:
    """Asserts that the metrics of the run in `run_dir` equal the pinned run `name`."""
    got = _records(run_dir)
    pinned = {}
    if os.path.exists(PATH):
        with open(PATH) as f:
            pinned = json.load(f)
    if os.environ.get("RLX_RECORD_GOLDEN"):
        pinned[name] = got
        with open(PATH, "w") as f:
            json.dump(pinned, f, indent=1, sort_keys=True)
        return
    assert name in pinned, f"no pinned metrics for {name!r} in {PATH}"
    want = pinned[name]
    assert len(got) == len(want), (name, len(got), len(want))
    for g, w in zip(got, want):
        assert sorted(g) == sorted(w), (name, g.get("step"), sorted(set(g) ^ set(w)))
        bad = {k: (g[k], w[k]) for k in w if (k, g.get("step")) not in _ILL_CONDITIONED and not _same(g[k], w[k], k)}
        assert not bad, (name, g.get("step"), bad)
