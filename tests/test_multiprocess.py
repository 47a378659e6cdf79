"""Multi-process run: 2 processes x 4 virtual CPU devices under `jax.distributed`
(coordinator on 127.0.0.1) train a few GRPO steps with an Orbax save / resume in the
middle, and match the single-process 8-device run."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np

from rlx.train.engine import TIMING_PREFIXES
from rlx.train.metrics import read_jsonl

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path, devices8):
    from helpers.multiprocess_worker import MP_OVERRIDES
    from test_engine import _run, small_config

    mp_dir = tmp_path / "mp"
    port = str(_free_port())
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["RLX_TEST_COMPILE_CACHE"] = jax.config.jax_compilation_cache_dir
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "helpers", "multiprocess_worker.py"),
                               str(i), port, str(mp_dir)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    assert "process 0 done at step 4" in outs[0] and "process 1 done at step 4" in outs[1]
    assert sorted(os.listdir(mp_dir / "checkpoints")) == ["2", "4"]

    # The same config in this single process, on the same 8 (virtual) devices, uninterrupted.
    one, _ = _run(small_config(tmp_path / "sp", *MP_OVERRIDES))
    r_mp = read_jsonl(str(mp_dir / "metrics.jsonl"))
    r_sp = read_jsonl(str(tmp_path / "sp" / "metrics.jsonl"))
    assert [r["step"] for r in r_mp] == [r["step"] for r in r_sp] == [0, 1, 2, 3, 4, 4]
    for a, b in zip(r_sp, r_mp):
        for k, v in a.items():
            if k.startswith(TIMING_PREFIXES) or not isinstance(v, (int, float)) or v is None:
                continue
            assert abs(v - b[k]) <= 1e-4 * max(1.0, abs(v)), (a["step"], k, v, b[k])
    saved = np.load(mp_dir / "params.npz")
    for path, leaf in jax.tree_util.tree_leaves_with_path(one.state.params):
        np.testing.assert_allclose(saved[jax.tree_util.keystr(path)], np.asarray(leaf), atol=4e-4, rtol=0)
