"""Fault injection: runs that are interrupted, resumed, damaged or misconfigured.

Each case asserts one of two outcomes: a clear error and the run directory untouched
(every file's bytes and every name unchanged), or a correct fallback and a finished run
equal to the uninterrupted one (the same metric records, timing aside, and the same
final state).
"""

import hashlib
import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rlx.train.checkpoint import CheckpointDamaged, Checkpointer, RestoreError, abstract_like
from rlx.train.config import ConfigError, apply_overrides, load_config, validate
from rlx.train.engine import Engine
from rlx.train.metrics import read_jsonl
from rlx.train.resume import RunDirError, config_changes
from rlx.train.state import TrainState
from rlx.train.update import apply_if_finite
from tests.test_engine import QUICKSTART, _deterministic, _run

# The runs here: the quickstart task, 6 steps of 4 prompts x 4 samples, checkpoints every 2.
OVERRIDES = ("log.progress=False", "data.eval_prompts=16", "sft.steps=60", "sft.batch_size=64",
             "rl.prompts_per_step=4", "rl.group_size=4", "rl.epochs=1", "rl.minibatches=1", "train.steps=6",
             "train.eval_every=0", "checkpoint.interval=2", "checkpoint.async_save=False", "mesh.shape=(1, 1, 1)")


def cfg(d, *extra):
    c = load_config(QUICKSTART)
    apply_overrides(c, [f"run_dir={d}", *OVERRIDES, *extra])
    return validate(c)


def snapshot(d) -> dict:
    """Every file under d: relative path -> sha256 of its bytes."""
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, d)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def records(d):
    return _deterministic(read_jsonl(os.path.join(d, "metrics.jsonl")))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted 6-step run every recovered run must equal."""
    d = tmp_path_factory.mktemp("ref") / "run"
    e, summary = _run(cfg(d))
    return {"dir": d, "records": records(d), "state": jax.tree.map(np.asarray, e.state), "summary": summary}


def interrupted(d, after: int, *extra):
    """A run stopped after `after` steps (as a crash would: no final save)."""
    _run(cfg(d, *extra), stop_after=after)


def assert_equals_reference(reference, d, engine):
    assert records(d) == reference["records"]
    for a, b in zip(jax.tree.leaves(reference["state"]), jax.tree.leaves(engine.state)):
        np.testing.assert_array_equal(a, np.asarray(b))


def state_files(d, step):
    root = os.path.join(d, "checkpoints", str(step), "state")
    return [os.path.join(r, f) for r, _, fs in os.walk(root) for f in fs
            if os.path.getsize(os.path.join(r, f)) > 256 and "manifest" not in f and "METADATA" not in f]


def test_fresh_run_into_an_existing_run_is_refused(tmp_path, reference):
    d = tmp_path / "run"
    interrupted(d, 4)
    before = snapshot(d)
    with pytest.raises(RunDirError, match=r"holds a run \(checkpoints at steps 2, 4; metrics\.jsonl\): "
                                          r"pass --resume .* or --overwrite"):
        Engine(cfg(d))
    assert snapshot(d) == before
    e, _ = _run(cfg(d), engine_kw={"overwrite": True})          # explicit: replaces it, a fresh run
    assert_equals_reference(reference, d, e)


def test_resume_without_a_checkpoint_is_a_fresh_run(tmp_path, reference):
    # Killed before its first checkpoint: --resume warns and runs like a fresh run,
    # warm start included (the same accuracy before RL and the same run).
    d = tmp_path / "run"
    interrupted(d, 1)
    assert not os.listdir(d / "checkpoints")
    e, summary = _run(cfg(d), engine_kw={"resume": True})
    assert summary["accuracy_before"] == reference["summary"]["accuracy_before"] > 0
    assert_equals_reference(reference, d, e)


def test_all_checkpoints_damaged_fails_and_touches_nothing(tmp_path):
    d = tmp_path / "run"
    interrupted(d, 4)
    for step in (2, 4):
        for f in state_files(d, step):
            with open(f, "r+b") as fh:
                fh.truncate(16)
    before = snapshot(d)
    with pytest.raises(RestoreError, match=r"no checkpoint in .* could be restored: step 4 \(.*\); step 2 \("):
        Engine(cfg(d), resume=True)
    assert snapshot(d) == before


def test_a_config_that_changes_shapes_or_semantics_is_refused(tmp_path, reference):
    d = tmp_path / "run"
    interrupted(d, 4)
    before = snapshot(d)
    with pytest.raises(ConfigError, match=r"config\.model\.hidden_size: 64 -> 128(.|\n)*config\.optimizer\.lr"):
        Engine(cfg(d, "model.hidden_size=128", "optimizer.lr=1e-3"), resume=True)
    with pytest.raises(ConfigError, match=r"config\.train\.steps: 6 -> 8(.|\n)*--allow-change=train\.steps"):
        Engine(cfg(d, "train.steps=8"), resume=True)
    assert snapshot(d) == before
    # placement, logging and speed-only keys may change; an allowed change goes through
    assert config_changes({"mesh": {"shape": [1, 1, 1]}, "log": {"every": 1}, "train": {"forward_rows": 0}},
                          {"mesh": {"shape": [2, 1, 1]}, "log": {"every": 5}, "train": {"forward_rows": 8}}) == []
    # A key the checkpoint's config lacks (an older rlx) counts as its default; another value is a change.
    defaults = {"env": {"name": "", "replay": 0}}
    assert config_changes({}, {"env": {"name": "", "replay": 0}}, defaults=defaults) == []
    assert config_changes({}, {"env": {"name": "gridworld", "replay": 0}}, defaults=defaults) == [
        "config.env.name: '' -> 'gridworld'"]
    e, _ = _run(cfg(d, "train.steps=8", "log.progress=False"), engine_kw={"resume": True,
                                                                          "allow_changes": ("train.steps",)})
    assert e.step == 8


@pytest.mark.parametrize("damage", ["bitflip", "truncate", "delete"])
def test_damaged_latest_step_falls_back_and_is_set_aside(tmp_path, reference, damage):
    # Step 4 damaged (same-size byte flips, a truncated file, a deleted file): resume falls
    # back to step 2, moves step 4 aside, reaches step 4 again and saves it, and finishes
    # equal to the uninterrupted run.
    d = tmp_path / "run"
    interrupted(d, 4)
    f = max(state_files(d, 4), key=os.path.getsize)
    if damage == "bitflip":
        with open(f, "r+b") as fh:
            data = bytearray(fh.read())
            for i in range(len(data) // 3, len(data) // 3 + 8):
                data[i] ^= 0x10
            fh.seek(0)
            fh.write(data)
    elif damage == "truncate":
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
    else:
        os.remove(f)
    e, _ = _run(cfg(d), engine_kw={"resume": True})
    aside = [n for n in os.listdir(d / "checkpoints") if n.startswith("4.corrupt-")]
    assert len(aside) == 1
    assert sorted(n for n in os.listdir(d / "checkpoints") if n.isdigit()) == ["2", "4", "6"]
    assert_equals_reference(reference, d, e)


def test_fingerprint_and_finite_checks(tmp_path):
    # Orbax restores flipped bits silently; the fingerprint in meta catches them. A
    # checkpoint whose params are not finite fails the caller's check. Either way the
    # previous step is restored.
    ck = Checkpointer(str(tmp_path / "ck"), keep=3, async_save=False)
    good = {"params": {"w": jnp.arange(6.0).reshape(3, 2)}}
    ck.save(1, good, {})
    ck.save(2, {"params": {"w": jnp.full((3, 2), jnp.nan)}}, {})
    ck.wait()

    def check(t):
        if not np.all(np.isfinite(np.asarray(t["params"]["w"]))):
            raise CheckpointDamaged("not finite")

    step, state, _, damaged = ck.restore_latest(abstract_like(good), check)
    assert step == 1 and damaged[0][0] == 2 and "not finite" in damaged[0][1]
    ck.save(3, good, {"note": 1})
    ck.wait()
    meta = ck.read_meta(3)
    meta["fingerprint"][0] ^= 1                         # what a flipped bit in the array would do
    with open(os.path.join(ck.directory, "3", "meta", "metadata"), "w") as fh:
        json.dump(meta, fh)
    step, _, _, damaged = ck.restore_latest(abstract_like(good), check)
    assert step == 1 and "fingerprint" in damaged[0][1]
    ck.close()


def test_half_written_metrics_line_and_a_finished_run(tmp_path, reference, caplog):
    d = tmp_path / "run"
    interrupted(d, 4)
    with open(d / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 5, "loss": 0.1')             # killed mid-write
    e, summary = _run(cfg(d), engine_kw={"resume": True})
    assert any("partial last record" in r.message for r in caplog.records)
    assert_equals_reference(reference, d, e)
    assert summary["accuracy_before"] == reference["summary"]["accuracy_before"]   # not the last eval
    # Resuming the finished run does nothing and changes nothing.
    before = snapshot(d)
    e2, again = _run(cfg(d), engine_kw={"resume": True})
    assert again["complete"] and again["accuracy_after"] == summary["accuracy_after"] and e2.step == 6
    assert snapshot(d) == before


def test_sigterm_saves_and_resume_is_identical(tmp_path, reference, monkeypatch, capsys):
    # SIGTERM during step 3: the step finishes, a checkpoint is written at step 3 (not on
    # the interval), the CLI exits 143 with one line; --resume then equals the
    # uninterrupted run.
    d = tmp_path / "run"
    real = Engine.rl_step
    handler_before = signal.getsignal(signal.SIGTERM)

    def step_then_signal(self):
        m = real(self)
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return m

    monkeypatch.setattr(Engine, "rl_step", step_then_signal)
    from rlx.train.__main__ import main
    args = [f"--config={QUICKSTART}"] + [f"--config.{o}" for o in (f"run_dir={d}", *OVERRIDES)]
    with pytest.raises(SystemExit) as ex:
        main(args)
    assert ex.value.code == 128 + signal.SIGTERM
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("SIGTERM: stopped after step 3 with a checkpoint in") and "--resume" in err[-1]
    assert sorted(n for n in os.listdir(d / "checkpoints") if n.isdigit()) == ["2", "3"]
    assert signal.getsignal(signal.SIGTERM) == handler_before       # handlers restored
    monkeypatch.setattr(Engine, "rl_step", real)
    e, _ = _run(cfg(d), engine_kw={"resume": True})
    assert_equals_reference(reference, d, e)


def test_non_finite_updates_are_skipped_and_stop_the_run(tmp_path, monkeypatch):
    # apply_if_finite: a NaN gradient leaves params, optimizer state and step unchanged.
    opt = optax.adam(0.1)
    st = TrainState.create({"w": jnp.ones(3)}, opt, jax.random.key(0))
    new, mets = apply_if_finite(st, {"w": jnp.array([1.0, jnp.nan, 0.0])}, opt, jnp.array(False), {})
    assert float(mets["update/skipped"]) == 1.0 and int(new.step) == 0
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(st)):
        np.testing.assert_array_equal(a, b)
    # In the engine: NaN advantages every step -> every update skipped and counted; after
    # train.max_nonfinite_steps=2 such steps the run stops with an error, and the
    # checkpoints on disk stay finite.
    from rlx.train import estimate
    real = estimate.advantages_for

    def nan_adv(*a, **k):
        adv_BT, adv_PG, met, ret = real(*a, **k)
        return adv_BT * jnp.nan, adv_PG, met, ret

    monkeypatch.setattr(estimate, "advantages_for", nan_adv)
    d = tmp_path / "run"
    e = Engine(cfg(d, "train.max_nonfinite_steps=2", "checkpoint.interval=1"))
    try:
        params0 = jax.tree.map(np.asarray, e.state.params)
        with pytest.raises(FloatingPointError, match=r"2 consecutive steps with non-finite loss"):
            e.run()
        for a, b in zip(jax.tree.leaves(params0), jax.tree.leaves(e.state.params)):
            np.testing.assert_array_equal(a, np.asarray(b))
        assert [r["update/skipped"] for r in read_jsonl(str(d / "metrics.jsonl")) if "loss" in r] == [1.0, 1.0]
    finally:
        e.close()


def test_init_from_an_rlx_run_and_an_hf_export(tmp_path):
    # model.init_from loads the policy of an rlx run (its newest checkpoint) or of an HF
    # directory; the new run's initial params are exactly those.
    src = tmp_path / "src"
    e0, _ = _run(cfg(src, "checkpoint.export_hf=True"))
    want = jax.tree.map(np.asarray, e0.state.params)
    for i, path in enumerate((src, src / "checkpoints" / "6", src / "hf")):
        e = Engine(cfg(tmp_path / f"dst{i}", f"model.init_from={path}", "sft.steps=0"))
        try:
            for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(e.state.params)):
                np.testing.assert_array_equal(a, np.asarray(b))
        finally:
            e.close()
    with pytest.raises(FileNotFoundError, match="neither an HF model directory"):
        Engine(cfg(tmp_path / "x", f"model.init_from={tmp_path / 'nope'}"))
    with pytest.raises(ValueError, match="does not fit this model's architecture"):
        Engine(cfg(tmp_path / "y", f"model.init_from={src}", "model.intermediate_size=96"))


def test_start_up_errors_name_the_problem(tmp_path, caplog, capsys):
    from rlx.data.jsonl import records
    from rlx.train.__main__ import main

    def bad(*overrides):
        c = load_config(QUICKSTART)
        apply_overrides(c, list(overrides))
        with pytest.raises(ConfigError) as ex:
            validate(c)
        return str(ex.value)

    # a loss the engine cannot train is refused naming the loss (not an unrelated key)
    msg = bad("rl.loss=lipo")
    assert "config.rl.loss: the engine trains pairwise" in msg and "minibatches" not in msg
    # keyword values are checked by calling the loss at start-up
    assert "config.rl.loss_kwargs: loss 'ppo_clip' rejects these values" in bad("rl.loss_kwargs.eps_low=-3")
    assert "group_size=1 makes every advantage 0" in bad("rl.group_size=1")
    # a type error in an override is one short line
    c = load_config(QUICKSTART)
    with pytest.raises(ConfigError, match=r"^config\.rl\.group_size: expected int, got 'abc'$"):
        apply_overrides(c, ["rl.group_size=abc"])
    # --help
    with pytest.raises(SystemExit) as ex:
        main(["--help"])
    assert ex.value.code == 0 and "--resume" in capsys.readouterr().out
    # an unwritable checkpoint directory fails at start-up
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="cannot write checkpoints to"):
        Engine(cfg(tmp_path / "file" / "run"))
    # greedy sampling with groups: warned
    e = Engine(cfg(tmp_path / "greedy", "sampler.temperature=0.0", "sft.steps=0"))
    e.close()
    assert any("zero reward variance" in r.getMessage() for r in caplog.records)
    # data files: non-UTF-8 and empty files name the file (and line)
    (tmp_path / "latin1.jsonl").write_bytes(b'{"a": 1}\n{"b": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"latin1\.jsonl:2: not UTF-8"):
        list(records(str(tmp_path / "latin1.jsonl")))
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match=r"empty\.jsonl: no records"):
        list(records(str(tmp_path / "empty.jsonl")))
