"""Tests for the countdown and arithmetic generators and the prompt templates.

Expected values are recomputed here independently: arithmetic answers with a small
precedence evaluator over the generator's operand/operator lists (not the library's
parser); countdown solvability by an exhaustive search over all ways of combining the
numbers (written in this file).
"""

import itertools
from fractions import Fraction

import pytest

from rlx.data import arithmetic, countdown, render


def _reachable(nums):
    """All values reachable using every number exactly once with + - * / (exhaustive)."""
    if len(nums) == 1:
        return {nums[0]}
    out = set()
    for i, j in itertools.permutations(range(len(nums)), 2):
        rest = [nums[k] for k in range(len(nums)) if k not in (i, j)]
        a, b = nums[i], nums[j]
        cands = {a + b, a - b, a * b} | ({a / b} if b != 0 else set())
        for c in cands:
            out |= _reachable(rest + [c])
    return out


def _arith_value(operands, operators):
    """Standard precedence: fold * and / into terms, then add the signed terms."""
    terms, signs = [Fraction(operands[0])], []
    for op, x in zip(operators, operands[1:]):
        if op in "*/":
            terms[-1] = terms[-1] * x if op == "*" else terms[-1] / x
        else:
            signs.append(op)
            terms.append(Fraction(x))
    total = terms[0]
    for s, t in zip(signs, terms[1:]):
        total = total + t if s == "+" else total - t
    return total


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_countdown_is_solvable_by_construction(level):
    cfg = countdown.LEVELS[level]
    for ex in countdown.generate(10, seed=5, level=level):
        nums = ex["numbers"]
        assert len(nums) == cfg.count and all(1 <= x <= cfg.max_number for x in nums)
        assert 1 <= ex["target"] <= cfg.max_target
        assert Fraction(ex["target"]) in _reachable([Fraction(x) for x in nums])
        # The stored solution uses exactly the numbers (digits runs of the expression).
        lits = sorted(int(t) for t in "".join(c if c.isdigit() else " " for c in ex["answer"]).split())
        assert lits == sorted(nums)
        assert ex["use_all"] is True and ex["source"] == f"countdown_l{level}"


def test_countdown_levels_grow_in_difficulty():
    counts = [countdown.LEVELS[lv].count for lv in sorted(countdown.LEVELS)]
    sizes = [countdown.LEVELS[lv].max_number for lv in sorted(countdown.LEVELS)]
    assert counts == sorted(counts) and sizes == sorted(sizes) and counts[0] < counts[-1]


@pytest.mark.parametrize("level", sorted(arithmetic.LEVELS))
def test_arithmetic_answers_and_levels(level):
    cfg = arithmetic.LEVELS[level]
    for ex in arithmetic.generate(20, seed=1, level=level):
        assert len(ex["operators"]) == cfg.ops and set(ex["operators"]) <= set(cfg.operators)
        assert all(0 <= x < 10 ** cfg.digits or op == "/" for x, op in zip(ex["operands"][1:], ex["operators"]))
        value = _arith_value(ex["operands"], ex["operators"])
        assert value.denominator == 1 and ex["answer"] == str(value.numerator)
        assert ex["expression"] == str(ex["operands"][0]) + "".join(
            f"{o}{x}" for o, x in zip(ex["operators"], ex["operands"][1:]))
        assert ex["prompt"] == ex["expression"] + "="          # compact default: "12+7="


def test_generators_are_deterministic_and_random_access():
    for mod, level in ((countdown, 3), (arithmetic, 5)):
        a = mod.generate(6, seed=9, level=level)
        assert a == mod.generate(6, seed=9, level=level)
        assert a != mod.generate(6, seed=10, level=level)
        assert mod.generate_example(9, level, 4) == a[4]
        with pytest.raises(ValueError, match="level"):
            mod.generate_example(0, 99, 0)
        with pytest.raises(ValueError, match="seed and index"):
            mod.generate_example(-1, level, 0)


def test_templates_styles():
    ex = arithmetic.generate_example(0, 1, 0, template="answer")
    assert ex["prompt"] == f"Compute {ex['expression']}. Give the final answer in <answer></answer>."
    ex = render(dict(ex), "think")
    assert "<think></think>" in ex["prompt"] and ex["template"] == "think" and ex["response_prefix"] == ""
    ex = render(dict(ex), "compact")
    assert ex["prompt"] == ex["expression"] + "="
    cd = countdown.generate_example(0, 2, 0, template="compact")
    assert cd["prompt"] == f"Using {' '.join(map(str, cd['numbers']))} make {cd['target']}:"
    assert len(cd["prompt"]) < 40
    with pytest.raises(ValueError, match="no 'compact' style"):
        render({"task": "knights_knaves", "quiz": "q", "names": ["A"]}, "compact")
    with pytest.raises(ValueError, match="unknown style"):
        render(dict(ex), "chat")
    with pytest.raises(ValueError, match="unknown task"):
        render({"task": "chess"}, "answer")
