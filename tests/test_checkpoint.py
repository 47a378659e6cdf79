"""Tests for rlx.train.checkpoint and rlx.train.metrics (engine plumbing)."""

import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np

from rlx.train.checkpoint import Checkpointer, abstract_like
from rlx.train.metrics import MetricWriter, read_jsonl


def _state(s):
    return {"params": {"w": jnp.full((3, 2), float(s))}, "step": jnp.int32(s),
            "rng": jax.random.key_data(jax.random.key(s))}


def test_save_restore_keep_and_meta(tmp_path):
    ck = Checkpointer(str(tmp_path / "ck"), keep=2, async_save=True)
    for s in (1, 2, 3):
        ck.save(s, _state(s), {"data_pos": s * 10, "config": {"a": 1}})
    ck.wait()
    assert ck.steps() == [2, 3]              # keep=2 dropped step 1
    step, state, meta, damaged = ck.restore_latest(abstract_like(_state(0)))
    assert step == 3 and damaged == []
    assert {k: v for k, v in meta.items() if k != "fingerprint"} == {"data_pos": 30, "config": {"a": 1}}
    np.testing.assert_array_equal(state["params"]["w"], np.full((3, 2), 3.0))
    np.testing.assert_array_equal(state["rng"], jax.random.key_data(jax.random.key(3)))
    ck.close()


def test_damaged_latest_falls_back_with_warning(tmp_path, caplog):
    ck = Checkpointer(str(tmp_path / "ck"), keep=3, async_save=False)
    for s in (1, 2):
        ck.save(s, _state(s), {"data_pos": s})
    ck.wait()
    # Damage step 2: delete every array data file of its state item.
    for root, _, files in os.walk(tmp_path / "ck" / "2" / "state"):
        for f in files:
            if "manifest" in f or root.endswith("/d"):
                os.remove(os.path.join(root, f))
    with caplog.at_level(logging.WARNING):
        step, state, meta, damaged = ck.restore_latest(abstract_like(_state(0)))
    assert step == 1 and meta["data_pos"] == 1 and [s for s, _ in damaged] == [2]
    np.testing.assert_array_equal(state["params"]["w"], np.full((3, 2), 1.0))
    assert any("step 2" in r.message and "restored step 1 instead" in r.message for r in caplog.records)


def test_interrupted_save_is_invisible(tmp_path):
    # An Orbax save in progress lives in a temporary directory; a leftover one (process
    # killed mid-save) must not be listed as a step.
    ck = Checkpointer(str(tmp_path / "ck"), keep=3, async_save=False)
    ck.save(1, _state(1), {})
    ck.wait()
    os.makedirs(tmp_path / "ck" / "2.orbax-checkpoint-tmp-123" / "state")
    ck2 = Checkpointer(str(tmp_path / "ck"), keep=3, async_save=False)
    assert ck2.steps() == [1]


def test_metric_writer_jsonl_and_resume_truncation(tmp_path):
    w = MetricWriter(str(tmp_path), jsonl=True, tensorboard=True)
    for s in range(1, 6):
        w.write(s, {"reward/mean": jnp.float32(s / 10), "n": np.int32(s), "bad": float("nan")})
    w.close()
    recs = read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in recs] == [1, 2, 3, 4, 5]
    assert recs[0]["n"] == 1 and abs(recs[0]["reward/mean"] - 0.1) < 1e-7 and recs[0]["bad"] is None
    assert any(f.startswith("events") for f in os.listdir(tmp_path / "tb"))
    # Resuming from a checkpoint at step 3 drops the records logged after it.
    w = MetricWriter(str(tmp_path), resume_step=3)
    w.write(4, {"reward/mean": 0.9})
    w.close()
    recs = read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in recs] == [1, 2, 3, 4] and recs[-1]["reward/mean"] == 0.9
    json.dumps(recs)


def test_plot_writes_png(tmp_path):
    from rlx import plot
    for name, slope in (("a", 1.0), ("b", 2.0)):
        d = tmp_path / name
        w = MetricWriter(str(d))
        for s in range(5):
            w.write(s, {"reward/mean": slope * s, "loss": 1.0 / (s + 1)})
        w.close()
    out = plot.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c.png")])
    assert os.path.getsize(out) > 1000
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
