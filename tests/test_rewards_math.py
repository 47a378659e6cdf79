"""The `math` task (rlx.rewards.math_answers): extraction, math-verify equivalence, failures.

The pairs are written by hand: each equivalent pair is the same value in two notations a
grader must accept, each non-equivalent pair a near miss it must reject.
"""

import json
import threading
import time

import pytest

import tests.helpers.checkers  # noqa: F401 - registers the test_math_parser_* tasks
from rlx.rewards import score
from rlx.rewards.math_answers import extract_answer, gold_from_solution, is_equivalent, last_boxed

EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"),                    # fraction vs decimal
    ("\\frac{1}{2}", "\\dfrac{1}{2}"),          # \dfrac vs \frac
    ("\\frac12", "1/2"),
    ("\\{1, 2, 3\\}", "\\{3, 1, 2\\}"),         # a set, reordered
    ("(1, 2]", "(1,2]"),                        # an interval
    ("3", "x = 3"),                             # an assignment against its value
    ("5\\text{ cm}", "5"),                      # units
    ("50\\%", "50"),                            # percentages
    ("\\text{(B)}", "B"),                       # \text{}
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("x^2 + 2x + 1", "(x+1)^2"),
    ("12", "12.0"),
    ("(3, -1)", "(3,-1)"),                      # a tuple
    ("\\infty", "\\infty"),
    ("10", "\\$10"),                            # currency
    ("30^\\circ", "30"),                         # degrees
    ("1000", "1{,}000"),                        # a thousands separator
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),   # a matrix
]
NEAR_MISSES = [
    ("(1, 2)", "(2, 1)"),                       # a tuple, reordered
    ("[0, 1)", "[0, 1]"),                       # an interval with the wrong end
    ("\\frac{1}{3}", "0.33"),
    ("10", "100"),
    ("-3", "3"),
    ("\\pi", "3.14159"),
    ("\\sqrt{2}", "2"),
    ("\\frac{3}{4}", "\\frac{4}{3}"),
    ("[2, 5)", "(2, 5)"),
]


@pytest.mark.parametrize("gold, pred", EQUIVALENT)
def test_equivalent_forms_are_accepted(gold, pred):
    assert is_equivalent(pred, gold)


@pytest.mark.parametrize("gold, pred", NEAR_MISSES)
def test_near_misses_are_rejected(gold, pred):
    assert not is_equivalent(pred, gold)


def test_extraction():
    assert last_boxed("first \\boxed{1} then \\boxed{\\frac{a}{b^{2}}}.") == "\\frac{a}{b^{2}}"   # nested braces
    assert last_boxed("\\fbox{7}") == "7" and last_boxed("so \\boxed 5$.") == "5"
    assert last_boxed("\\boxed{unbalanced") is None and last_boxed("no box") is None
    # tagged answers first (a box inside wins), then the last box, then (compact) the first line
    assert extract_answer("<answer>It is \\boxed{4}.</answer>") == "4"
    assert extract_answer("work \\boxed{9} <answer>3</answer>") == "3"
    assert extract_answer("so the answer is \\boxed{9}") == "9"
    assert extract_answer("42\nbecause", "compact") == "42" and extract_answer("42\nbecause", "answer") is None
    assert gold_from_solution("We get $x=2$, so \\boxed{\\frac{3}{4}}.") == "\\frac{3}{4}"
    assert gold_from_solution(" 17 ") == "17"
    with pytest.raises(ValueError, match="empty"):
        gold_from_solution("  ")


def test_score_is_the_public_entry():
    ex = {"answer": "\\frac{1}{2}", "template": "answer"}
    r, comps, st = score("math", ["<answer>0.5</answer>", "<answer>0.25</answer>", "no answer"], [ex] * 3)
    assert r.tolist() == [1.0, 0.0, 0.0]
    assert comps.tolist() == [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]       # (format, answer)
    assert st.errors == st.timeouts == 0


def _in_thread(fn):
    out = {}
    th = threading.Thread(target=lambda: out.update(res=fn()))
    th.start()
    th.join(timeout=60)
    assert not th.is_alive()
    return out["res"]


@pytest.mark.parametrize("where", ["main", "thread"])
def test_a_hang_or_crash_inside_the_parser_scores_zero_and_is_counted(where):
    # The parser of these tasks loops forever / raises RecursionError (tests/helpers/
    # checkers.py); in the main thread SIGALRM stops the loop, off it a worker process
    # is killed at the deadline. Either way: reward 0, one timeout / one error.
    ex = [{"answer": "2", "template": "answer"}]

    def run(task):
        return score(task, ["<answer>2</answer>"], ex, time_limit_s=0.5)

    call = (lambda f: f()) if where == "main" else _in_thread
    t0 = time.perf_counter()
    r, _, st = call(lambda: run("test_math_parser_hangs"))
    assert r.tolist() == [0.0] and st.timeouts == 1 and st.errors == 0
    assert time.perf_counter() - t0 < 30
    r, _, st = call(lambda: run("test_math_parser_crashes"))
    assert r.tolist() == [0.0] and st.errors == 1 and "RecursionError" in st.last_error


def test_math_jsonl_with_field_mapping(tmp_path):
    from rlx.data import math_problems
    p = tmp_path / "train.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in [
        {"question": "What is 1/2 + 1/4?", "solution": "Add: $\\frac{1}{2}+\\frac{1}{4} = \\boxed{\\frac{3}{4}}$."},
        {"question": "2 + 2?", "solution": "4"}]) + "\n")
    exs = math_problems.load_jsonl(str(p), prompt_field="question", answer_field="solution")
    assert [e["answer"] for e in exs] == ["\\frac{3}{4}", "4"]
    assert exs[0]["prompt"].startswith("What is 1/2 + 1/4?") and "<answer>" in exs[0]["prompt"]
    with pytest.raises(ValueError, match=r"train.jsonl:1: field 'problem'.*question, solution"):
        math_problems.load_jsonl(str(p))                        # the default field names are absent


def test_engine_trains_on_a_math_jsonl(tmp_path):
    # `--config.data.task=math --config.data.path=...` end to end for one step on the
    # untrained quickstart model: the prompts are the file's problems, every completion
    # is scored by the math checker (in the reward worker processes) without a failure.
    from helpers.engine_configs import one_step_config

    from rlx.train.engine import Engine
    rows = [{"problem": f"What is {a}/{a + 1} of {a + 1}?", "answer": f"\\boxed{{{a}}}"} for a in range(1, 9)]
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = one_step_config("quickstart", tmp_path / "run", "data.task=math", f"data.path={path}", "data.template=answer",
                        "sampler.max_prompt_len=48", "rl.prompts_per_step=4", "rl.group_size=2", "rl.minibatches=1")
    e = Engine(c)
    try:
        assert {ex["answer"] for ex in e.ctx.train_src.lookup([0] * 8, list(range(8)))} == {str(a) for a in range(1, 9)}
        m = e.rl_step()
    finally:
        e.close()
    assert m["reward/errors"] == 0 and m["prompts/truncated"] == 0 and "loss" in m
