"""Tests for rlx.rewards.safe_eval: hand-computed values, malformed and adversarial input."""

import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlx.rewards.safe_eval import Limits, SafeEvalError, evaluate, parse_number


@pytest.mark.parametrize("text,value", [
    ("1+2*3", 7),             # precedence: 2*3 first
    ("(1+2)*3", 9),
    ("6/4*2", 3),             # exact: 3/2 * 2
    ("10-2-3", 5),            # left associative: (10-2)-3
    ("12/2/3", 2),            # (12/2)/3
    ("-(3+4)*2", -14),
    ("--5", 5),
    ("2 × 3 − 1 ÷ 2", Fraction(11, 2)),   # unicode aliases: 6 - 1/2
    ("0.5+0.25", Fraction(3, 4)),
    (" ( ( 7 ) ) ", 7),
])
def test_values(text, value):
    assert evaluate(text).value == value


def test_literals_are_reported():
    r = evaluate("(25-5)*3/1")
    assert r.literals == (25, 5, 3, 1) and r.integer_literals
    assert not evaluate("2.0*3").integer_literals


@pytest.mark.parametrize("text,msg", [
    ("9**9**9", "unexpected token"),
    ("9^9", "unexpected character"),
    ("2**10", "unexpected token"),
    ("1/0", "division by zero"),
    ("5/(3-3)", "division by zero"),
    ("", "empty expression"),
    ("(1+2", "unbalanced"),
    ("1+2)", "after a complete expression"),
    ("1 2", "after a complete expression"),
    ("abs(1)", "unexpected character"),
    ("__import__('os')", "unexpected character"),
    ("1e9", "unexpected character"),
    ("٣+1", "unexpected character"),         # Arabic-Indic digit: not ASCII
    ("１+1", "unexpected character"),         # full-width digit
    ("1..2", "malformed number"),
    ("3.", "malformed number"),
])
def test_rejects(text, msg):
    with pytest.raises(SafeEvalError, match=msg):
        evaluate(text)


def test_adversarial_inputs_fail_fast():
    big = Limits(max_chars=10**7, max_tokens=10**7)       # make the length limit not the first line of defence
    cases = [
        ("(" * 100_000 + "1" + ")" * 100_000, "nesting deeper"),
        ("-" * 100_000 + "1", "nesting deeper"),
        ("1" + "0" * 100_000, "more than 24 digits"),
        ("9" + "*9" * 300, "exceeds 512 bits"),             # 9^301 needs ~954 bits
        ("1/" + "/".join(["7"] * 300), "exceeds 512 bits"),  # denominator 7^300
    ]
    for text, msg in cases:
        t0 = time.perf_counter()
        with pytest.raises(SafeEvalError, match=msg):
            evaluate(text, big)
        assert time.perf_counter() - t0 < 1.0
    t0 = time.perf_counter()
    with pytest.raises(SafeEvalError, match="longer than 512"):
        evaluate("1+" * 500_000 + "1")                    # 1 MB, default limits
    with pytest.raises(SafeEvalError, match="must be a str"):
        evaluate(None)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("text,value", [
    ("42", 42), ("-3.5", Fraction(-7, 2)), ("1,234", 1234), ("1,234,567.5", Fraction(2469135, 2)),
    ("$18.00", 18), ("7.", 7), ("3/4", Fraction(3, 4)), (" +5 ", 5), (".5", Fraction(1, 2)), ("−2", -2),
])
def test_parse_number(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["1,23", "12,3456", "abc", "1/0", "٣", "1.2.3", "", "5 apples", "1e5",
                                  "9" * 100, "1" + "0" * 100_000])
def test_parse_number_rejects(text):
    with pytest.raises(SafeEvalError):
        parse_number(text)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=6), st.data())
def test_matches_fraction_arithmetic(nums, data):
    # Independent reference: fold left-to-right with explicit parentheses around each step,
    # ((a op b) op c) ..., computed with Fractions here.
    ops = [data.draw(st.sampled_from("+-*/")) for _ in nums[1:]]
    text, ref = str(nums[0]), Fraction(nums[0])
    for op, x in zip(ops, nums[1:]):
        text = f"({text}){op}{x}"
        if op == "/" and x == 0:
            with pytest.raises(SafeEvalError, match="division by zero"):
                evaluate(text)
            return
        ref = {"+": ref + x, "-": ref - x, "*": ref * x, "/": ref / x if x else None}[op]
    assert evaluate(text).value == ref
