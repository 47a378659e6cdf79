"""Tests for the DUMP / Logic-RL Knights & Knaves reward (rlx.rewards.kk).

Scores from the official rule (DUMP verl/utils/reward_score/kk.py): format +1/-1;
answer +2 (all correct), -1.5 (parses, wrong), -2 (does not parse or format failed).
"""

import itertools
import json
import os

import pytest

from rlx.data import knights_knaves as kkdata
from rlx.rewards import score
from rlx.rewards.kk import MAX_SCORE, kk_components, kk_reward, parse_gold, parse_prediction

GOLD = "(1) Zoe is a knight\n(2) Ben is a knave"


def _resp(answer, think="reasoning"):
    return f"<think>{think}</think>\n<answer>{answer}</answer>"


@pytest.mark.parametrize("response,expected", [
    (_resp(GOLD), (1.0, 2.0)),                                        # max: 3
    (_resp("Zoe is a knight, Ben is a knave"), (1.0, 2.0)),           # numbering is not required
    (_resp("(1) zoe IS A Knight\n(2) BEN is a KNAVE"), (1.0, 2.0)),   # case-insensitive
    (_resp("(1) Zoe is a knave\n(2) Ben is a knave"), (1.0, -1.5)),   # parses, wrong -> 1 - 1.5
    (_resp("(1) Zoe is a knight"), (1.0, -2.0)),                      # 1 role for 2 people
    (_resp(GOLD + "\nknights everywhere"), (1.0, -2.0)),              # 3 role words for 2 people
    (_resp("(1) Zoey is a knight\n(2) Ben is a knave"), (1.0, -2.0)),  # \bZoe\b does not match Zoey
    (_resp("(1) Zoe is knight\n(2) Ben is a knave"), (1.0, -2.0)),    # "is a" required
    (_resp(""), (1.0, -2.0)),                                         # empty answer
    (f"<answer>{GOLD}</answer>", (-1.0, -2.0)),                       # no think: format fails, answer skipped
    (_resp(GOLD) + " trailing", (-1.0, -2.0)),                        # text after </answer>
    (_resp(GOLD) + "\n<|im_end|>", (1.0, 2.0)),                       # the one allowed trailer
    (_resp(GOLD) + _resp(GOLD), (-1.0, -2.0)),                        # tags twice
    (f"<answer>{GOLD}</answer><think>x</think>", (-1.0, -2.0)),       # order
    ("", (-1.0, -2.0)),
])
def test_official_rule(response, expected):
    assert kk_components(response, GOLD) == expected
    assert kk_reward(response, GOLD) == sum(expected)


def test_prefix_and_optional_think():
    # A template that pre-fills "<think>" passes it as the response prefix.
    assert kk_reward("r</think><answer>" + GOLD + "</answer>", GOLD, response_prefix="<think>") == 3.0
    assert kk_reward(f"<answer>{GOLD}</answer>", GOLD, require_think=False) == 3.0
    assert kk_reward(f"<answer>{GOLD}</answer>", GOLD) == -3.0


def test_parsers():
    assert parse_gold(GOLD) == {"Zoe": "knight", "Ben": "knave"}
    with pytest.raises(ValueError, match="cannot parse line"):
        parse_gold("(1) ???")
    assert parse_prediction("Ben is a knave. Zoe is a knight.", ["Zoe", "Ben"]) == {"Zoe": "knight", "Ben": "knave"}
    assert parse_prediction("Zoe is a knight", ["Zoe", "Ben"]) is None


def test_score_api_uses_template():
    ex = {"task": "knights_knaves", "answer": GOLD, "template": "think"}
    r, c, st = score("knights_knaves", [_resp(GOLD), _resp("(1) Zoe is a knave\n(2) Ben is a knave"), "junk"],
                     [ex] * 3)
    assert r.tolist() == [3.0, -0.5, -3.0]
    assert c.tolist() == [[1.0, 1.0, -1.0], [2.0, -1.5, -2.0]]
    assert st.successes == 1 and st.format_ok == 2
    r, _, _ = score("knights_knaves", [f"<answer>{GOLD}</answer>"], [{**ex, "template": "answer"}])
    assert r.tolist() == [3.0]


def test_shared_data_gold_gets_the_maximum_and_other_assignments_less():
    data_dir = "/work/shared/data/knights_knaves"
    checked = 0
    for n in range(3, 8):
        with open(os.path.join(data_dir, f"people{n}_num1000.jsonl")) as f:
            recs = [json.loads(line) for line in f]
        for k, rec in enumerate(recs):
            gold = rec["solution_text_format"]
            assert kk_reward(_resp(gold), gold) == MAX_SCORE == 3.0
            # Every single-person flip is a parsable wrong answer: 1 - 1.5.
            for i in range(n):
                sol = list(rec["solution"])
                sol[i] = not sol[i]
                assert kk_reward(_resp(kkdata.solution_text_format(rec["names"], sol)), gold) == -0.5
            if k < 20:   # and every other assignment, exhaustively, for 20 puzzles per file
                for sol in itertools.product([False, True], repeat=n):
                    if list(sol) != rec["solution"]:
                        assert kk_reward(_resp(kkdata.solution_text_format(rec["names"], sol)), gold) < 3.0
            checked += 1
    assert checked == 5000
