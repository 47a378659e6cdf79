"""Pinned engine metrics: each rollout kind's runs must keep the metrics they had.

`tests/data/engine_golden.json` holds, per named run, the deterministic metrics (timing
left out) of every logged step, recorded by the engine as it was before its rollout
kinds were split into `rlx.train.rollouts` (commit 6d35122, jax 0.10.2 on this CPU).
Restructuring the engine must not change any of them: the check is exact (bit-identical
floats), as XLA:CPU is deterministic for one program on one machine.

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


def _records(run_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith(TIMING_PREFIXES)}
            for r in read_jsonl(os.path.join(str(run_dir), "metrics.jsonl"))]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
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
        bad = {k: (g[k], w[k]) for k in w if not _same(g[k], w[k])}
        assert not bad, (name, g.get("step"), bad)
