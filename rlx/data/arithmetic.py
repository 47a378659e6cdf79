"""Multi-digit integer arithmetic: "347+58-12*3=" -> "333".

Expressions are `ops + 1` operands of up to `digits` digits joined by operators drawn
from the level's set, written without parentheses and evaluated with the usual
precedence (× before + −) — the canonical answer is the exact integer result, computed
by rlx's safe evaluator. Division, where a level allows it, is only emitted when exact
(the divisor is redrawn as a divisor of the left operand), so every answer is an integer.

Difficulty levels: digits per operand and number of operations (`LEVELS`); the compact
template ("12+7=") is short enough for a tiny model.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rlx.data.templates import render
from rlx.rewards.safe_eval import evaluate

TASK = "arithmetic"
_SALT = 0xA217


@dataclasses.dataclass(frozen=True)
class ArithmeticLevel:
    digits: int            # operands have 1..digits digits (uniform over 0 .. 10^digits - 1)
    ops: int               # number of operations (operands = ops + 1)
    operators: str         # allowed operators, a subset of "+-*/"


LEVELS = {
    1: ArithmeticLevel(1, 1, "+"),
    2: ArithmeticLevel(2, 1, "+-"),
    3: ArithmeticLevel(2, 2, "+-"),
    4: ArithmeticLevel(2, 2, "+-*"),
    5: ArithmeticLevel(3, 2, "+-*"),
    6: ArithmeticLevel(3, 3, "+-*/"),
    7: ArithmeticLevel(4, 3, "+-*/"),
}


def _divisors(n: int) -> list[int]:
    """Positive divisors of n > 0, ascending ([] for 0)."""
    small = [d for d in range(1, int(n ** 0.5) + 1) if n % d == 0] if n > 0 else []
    return sorted(set(small) | {n // d for d in small})


def generate_example(seed: int, level: int, index: int, *, template: str = "compact") -> dict:
    """Example `index` of the (seed, level) stream; deterministic, random access."""
    if level not in LEVELS:
        raise ValueError(f"level: arithmetic levels are {sorted(LEVELS)}, got {level!r}")
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    cfg = LEVELS[level]
    rng = np.random.default_rng([_SALT, seed, level, index])
    hi = 10 ** cfg.digits
    operands = [int(rng.integers(0, hi))]
    operators = []
    for _ in range(cfg.ops):
        op = cfg.operators[rng.integers(len(cfg.operators))]
        if op == "/":
            divs = _divisors(operands[-1])
            if not divs or (operators and operators[-1] == "/"):
                op = "+"          # a/b/c need not be exact; a*b/c = a*(b/c) is
            else:
                operands.append(divs[rng.integers(len(divs))])
                operators.append(op)
                continue
        operands.append(int(rng.integers(0, hi)))
        operators.append(op)
    expr = str(operands[0]) + "".join(f"{o}{x}" for o, x in zip(operators, operands[1:]))
    value = evaluate(expr).value
    if value.denominator != 1:
        raise RuntimeError(f"internal: non-integer arithmetic answer for {expr}")
    ex = {"task": TASK, "source": f"arithmetic_l{level}", "level": level, "index": index,
          "expression": expr, "operands": operands, "operators": "".join(operators),
          "answer": str(value.numerator)}
    return render(ex, template)


def generate(num: int, *, seed: int, level: int, template: str = "compact", start: int = 0) -> list[dict]:
    """Examples start .. start+num-1 of the (seed, level) stream."""
    return [generate_example(seed, level, i, template=template) for i in range(start, start + num)]
