"""rlx.eval: the pass@k / maj@k estimators by hand, and the CLI on a trained run."""

import json
import math

import pytest
from helpers.engine_configs import one_step_config

from rlx.eval import main, maj_at_k, pass_at_k
from rlx.train.engine import Engine
from rlx.train.metrics import read_jsonl


def test_pass_at_k_by_hand():
    # n = 5, c = 2, k = 2: 1 - C(3, 2) / C(5, 2) = 1 - 3 / 10
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7, abs=1e-12)
    assert pass_at_k(5, 2, 1) == pytest.approx(2 / 5, abs=1e-12)           # k = 1: c / n
    assert pass_at_k(16, 3, 4) == pytest.approx(1 - math.comb(13, 4) / math.comb(16, 4), abs=1e-12)
    assert pass_at_k(4, 1, 4) == 1.0 and pass_at_k(4, 0, 4) == 0.0          # k = n: any correct
    assert pass_at_k(8, 0, 3) == 0.0 and pass_at_k(8, 6, 3) == 1.0          # c = 0; fewer than k wrong
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(4, 1, 5)


def test_maj_at_k_by_hand():
    ans = ["3", "4", "3", None, "5", "5"]
    ok = [True, False, True, False, False, False]
    # k = 6: votes 3:2, 5:2, 4:1 -> tie between 3 and 5, the earliest (3) wins: right.
    assert maj_at_k(ans, ok, 6) == 1.0
    # k = 3: blocks [3, 4, 3] (3 wins: right) and [None, 5, 5] (5 wins: wrong) -> 1/2.
    assert maj_at_k(ans, ok, 3) == 0.5
    # k = 1: each sample alone; None never wins -> the accuracy, 2/6.
    assert maj_at_k(ans, ok, 1) == pytest.approx(2 / 6)
    assert maj_at_k([None, None], [False, False], 2) == 0.0


def test_cli_on_a_trained_run_matches_its_greedy_accuracy(tmp_path, capsys):
    # A short run (SFT warm start + 1 RL step) records its greedy accuracy on its 16
    # held-out prompts; `rlx.eval` at temperature 0 on the run directory measures the
    # same prompts with the same params: pass@1 = that accuracy (the demo's check), and
    # with identical greedy samples pass@2 = maj@1 = pass@1.
    run = tmp_path / "run"
    c = one_step_config("quickstart", run, "sft.steps=200", "sft.batch_size=32", "data.eval_prompts=16",
                        "rl.prompts_per_step=4", "rl.group_size=2", "rl.minibatches=1", "checkpoint.interval=1",
                        "checkpoint.async_save=False")
    e = Engine(c)
    try:
        e.run()
    finally:
        e.close()
    acc = [r for r in read_jsonl(str(run / "metrics.jsonl")) if "eval/accuracy_final" in r][0]["eval/accuracy_final"]
    out = main([f"--checkpoint={run}", "--temperature=0", "--n=2", "--k=1,2", f"--out={tmp_path / 'ev'}"])
    row = out["table"]["all"]
    assert row["prompts"] == 16 and row["pass@1"] == pytest.approx(acc, abs=1e-9)
    assert row["pass@2"] == row["maj@1"] == row["pass@1"] and 0 < row["pass@1"]
    recs = [json.loads(line) for line in open(tmp_path / "ev" / "samples.jsonl")]
    assert len(recs) == 32 and {"prompt", "completion", "answer", "reward", "length", "truncated"} <= set(recs[0])
    assert json.load(open(tmp_path / "ev" / "eval.json"))["table"]["all"] == row
    assert "pass@1" in capsys.readouterr().out
    # `rlx.generate` on the same run, greedy: the completion rlx.eval recorded for that prompt.
    from rlx.generate import main as generate_main
    out = generate_main([f"--checkpoint={run}", f"--prompt={recs[0]['prompt']}", "--n=2", "--temperature=0", "--json"])
    assert [s["completion"] for s in out[0]] == [recs[0]["completion"]] * 2
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["completion"] for p in printed] == [recs[0]["completion"]] * 2
    # --data=<a JSONL file>: its records, scored by the math task; two files' worth of
    # sources would be rows of the table, one file is the "all" row.
    data = tmp_path / "probs.jsonl"
    data.write_text("".join(json.dumps({"problem": f"{a}+{a}=", "answer": str(2 * a)}) + "\n" for a in range(1, 6)))
    out = main([f"--checkpoint={run}", f"--data={data}", "--temperature=0", "--n=1", f"--out={tmp_path / 'ev2'}"])
    assert out["task"] == "math" and out["table"]["all"]["prompts"] == 5
    recs = [json.loads(line) for line in open(tmp_path / "ev2" / "samples.jsonl")]
    assert [r["gold"] for r in recs] == ["2", "4", "6", "8", "10"]
    assert all(r["success"] for r in recs if r["answer"] == r["gold"])       # the gold itself is accepted
    assert not any(r["success"] for r in recs if r["answer"] is None)         # no answer, no success


def test_cli_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as ex:
        main([f"--checkpoint={tmp_path}", "--n=2", "--k=1"])
    assert ex.value.code == 2 and "neither an rlx run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([f"--checkpoint={tmp_path}", "--n=2", "--k=4"])
    assert "--k" in capsys.readouterr().err
