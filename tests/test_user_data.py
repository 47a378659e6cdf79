"""The user's own JSONL data (`data.task=jsonl`): field mapping, checker choice, several
files as curriculum sources, loud warnings for prompts that do not fit (issue 20 item 2)."""

import json
import logging

import pytest
from helpers.engine_configs import assert_refused, one_step_config

from rlx.train.engine import Engine


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_two_files_are_two_sources_under_dump(tmp_path, caplog):
    # {"prompt", "answer"} records (the layout that gsm8k's loader refused), numeric
    # checking, DUMP over the two files; one prompt of file b is too long for the
    # 24-token prompt budget and the start warns, saying how many.
    a = _write(tmp_path / "easy.jsonl", [{"prompt": f"{i}+1=", "answer": str(i + 1)} for i in range(6)])
    b = _write(tmp_path / "hard.jsonl", [{"prompt": f"{i}*{i}=", "answer": str(i * i)} for i in range(5)]
               + [{"prompt": "x" * 40, "answer": "0", "id": "too-long"}])
    c = one_step_config("quickstart", tmp_path / "run", "data.task=jsonl", f"data.path={a},{b}",
                        "data.prompt_field=prompt", "data.checker=numeric", "data.template=compact",
                        "data.curriculum=dump", "sampler.max_prompt_len=24", "rl.prompts_per_step=4",
                        "rl.group_size=2", "rl.minibatches=1")
    with caplog.at_level(logging.WARNING, logger="rlx"):
        e = Engine(c)
    try:
        assert e.train_src.names == ["easy", "hard"] and e.train_src.sizes.tolist() == [6, 6]
        assert e.reward_task == "numeric"
        assert "1 of 12 training prompts" in caplog.text
        ex = e.train_src.lookup([1], [5])[0]
        assert ex["answer"] == "0" and ex["id"] == "too-long"           # other fields are kept
        m = e.rl_step()
    finally:
        e.close()
    assert m["reward/errors"] == 0 and "loss" in m
    # DUMP tracks the two sources: the step's 8 samples counted by source, probabilities sum to 1
    assert m["dump/count/0"] + m["dump/count/1"] == 8
    assert m["dump/prob/0"] + m["dump/prob/1"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("overrides, key", [
    (("data.task=jsonl", "data.path=x.jsonl", "data.checker=regex"), "data.checker"),
    (("data.task=jsonl",), "data.path"),
])
def test_bad_user_data_settings_are_refused(tmp_path, overrides, key):
    assert_refused("quickstart", tmp_path, overrides, key)
