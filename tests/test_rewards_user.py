"""The user's own reward function (rlx.rewards.user, `--config.reward.fn`)."""

import pytest
from helpers.engine_configs import assert_refused, one_step_config

from rlx.rewards import score, user

MODULE = '''
def exact(completion, example):
    return float(completion.strip() == str(example["answer"]))

def parts(completion, example):
    return (float(completion.startswith("1")), float(len(completion) < 3))

def boom(completion, example):
    raise ZeroDivisionError("user bug")

def one_arg(completion):
    return 1.0
'''


@pytest.fixture
def module(tmp_path):
    p = tmp_path / "my_reward.py"
    p.write_text(MODULE)
    return str(p)


@pytest.mark.parametrize("workers", [0, 1])
def test_user_reward_is_scored_like_a_checker(module, workers):
    # In-process and in a worker process (the wrapper is pickled by its spec string).
    exs = [{"answer": "12"}, {"answer": "7"}]
    r, comps, st = score(user.register(f"{module}:exact"), ["12", "8"], exs, workers=workers)
    assert r.tolist() == [1.0, 0.0] and comps is None and st.errors == 0
    name = user.register(f"{module}:parts", ("starts_1", "short"))
    r, comps, st = score(name, ["12", "0"], exs, weights=(1.0, 2.0), workers=workers)
    assert comps.tolist() == [[1.0, 0.0], [1.0, 1.0]] and r.tolist() == [3.0, 2.0]
    r, _, st = score(user.register(f"{module}:boom"), ["1"], exs[:1], workers=workers)
    assert r.tolist() == [0.0] and st.errors == 1 and "ZeroDivisionError: user bug" in st.last_error


@pytest.mark.parametrize("spec, msg", [
    ("no_colon", "must be 'module.path:function'"),
    ("/nowhere/x.py:f", "no such file"),
    ("rlx_no_such_module_xyz:f", "cannot import 'rlx_no_such_module_xyz': ModuleNotFoundError"),
    ("{module}:missing", "has no callable 'missing'"),
    ("{module}:one_arg", "cannot be called as fn(completion, example)"),
])
def test_bad_specs_fail_at_validation_in_one_line(tmp_path, module, spec, msg):
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        user.load(spec.format(module=module))
    assert_refused("quickstart", tmp_path / "run", [f"reward.fn={spec.format(module=module)}"], "config.reward.fn")


def test_engine_step_with_a_user_reward(tmp_path, module):
    from rlx.train.engine import Engine
    e = Engine(one_step_config("quickstart", tmp_path / "run", f"reward.fn={module}:exact", "rl.prompts_per_step=4",
                               "rl.group_size=2", "rl.minibatches=1"))
    try:
        assert e.reward_task == f"user:{module}:exact"
        m = e.rl_step()
    finally:
        e.close()
    assert m["reward/errors"] == 0 and "loss" in m
