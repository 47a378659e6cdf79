"""Weights & Biases logging (`log.wandb=True`): the calls rlx makes, checked against a
stand-in `wandb` module (the real package is optional and not installed for the tests)."""

import math
import sys
import types

import pytest
from helpers.engine_configs import one_step_config

from rlx.train.metrics import MetricWriter


class FakeRun:
    def __init__(self):
        self.logs, self.finished = [], False

    def log(self, metrics, step):
        self.logs.append((dict(metrics), step))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    mod = types.ModuleType("wandb")
    mod.inits, mod.runs = [], []
    mod.util = types.SimpleNamespace(generate_id=lambda: "run0001")

    def init(**kw):
        mod.inits.append(kw)
        mod.runs.append(FakeRun())
        return mod.runs[-1]
    mod.init = init
    monkeypatch.setitem(sys.modules, "wandb", mod)
    return mod


def test_writer_logs_to_wandb_and_resumes_the_same_run(tmp_path, fake_wandb):
    w = MetricWriter(str(tmp_path), wandb={"project": "p", "name": "n", "mode": "offline", "config": {"a": 1}})
    w.write(3, {"loss": 1.5, "bad": math.nan, "count": 2})
    w.close()
    kw = fake_wandb.inits[0]
    assert kw == {"project": "p", "name": "n", "mode": "offline", "config": {"a": 1}, "dir": str(tmp_path),
                  "id": "run0001", "resume": "allow"}
    assert fake_wandb.runs[0].logs == [({"loss": 1.5, "count": 2}, 3)] and fake_wandb.runs[0].finished
    assert (tmp_path / "wandb_id").read_text() == "run0001"
    fake_wandb.util.generate_id = lambda: "another"               # a resumed run keeps its id
    MetricWriter(str(tmp_path), resume_step=3, wandb={"project": "p"}).close()
    assert fake_wandb.inits[1]["id"] == "run0001"


def test_engine_passes_its_config_and_metrics(tmp_path, fake_wandb):
    from rlx.train.engine import Engine
    e = Engine(one_step_config("quickstart", tmp_path / "run", "log.wandb=True", "rl.prompts_per_step=2",
                               "rl.group_size=2", "rl.minibatches=1"))
    try:
        e.run()
    finally:
        e.close()
    kw = fake_wandb.inits[0]
    assert kw["mode"] == "offline" and kw["project"] == "rlx" and kw["config"]["rl"]["group_size"] == 2
    steps = [s for _, s in fake_wandb.runs[0].logs]
    assert steps[0] == 0 and 1 in steps and any("loss" in m for m, s in fake_wandb.runs[0].logs if s == 1)
    assert fake_wandb.runs[0].finished


def test_missing_wandb_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match="pip install wandb"):
        MetricWriter(str(tmp_path), wandb={"project": "p"})
