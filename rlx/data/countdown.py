"""Countdown: reach a target from given numbers with + − × ÷ (the TinyZero / DAPO-era task).

Rule (checked by `rlx.rewards.check_countdown`): write an arithmetic expression that
uses each given number exactly once (`use_all=True`, the default; `use_all=False`
allows a subset, each at most once) with + − × ÷ and parentheses, evaluating exactly
(rational arithmetic) to the target.

Solvable by construction: the generator draws the numbers, then combines them at random
in pairs until one value is left (subtraction only larger − smaller, division only when
exact, so every intermediate value is a positive integer), and that value is the
target (redrawn until it lies in [1, max_target]). The construction's expression is
the example's `answer` (one valid solution; others may exist).

Difficulty levels: how many numbers and how large (`LEVELS`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rlx.data.templates import render

TASK = "countdown"
_SALT = 0xC0DE


@dataclasses.dataclass(frozen=True)
class CountdownLevel:
    count: int          # how many numbers
    max_number: int     # numbers drawn uniformly from 1..max_number
    max_target: int     # target in 1..max_target


LEVELS = {
    1: CountdownLevel(2, 10, 100),
    2: CountdownLevel(3, 10, 100),
    3: CountdownLevel(3, 30, 200),
    4: CountdownLevel(4, 50, 500),
    5: CountdownLevel(4, 99, 1000),
    6: CountdownLevel(5, 99, 1000),
}


def _combine(rng: np.random.Generator, a: tuple[int, str], b: tuple[int, str]) -> tuple[int, str]:
    (va, ea), (vb, eb) = a, b
    if va < vb:
        (va, ea), (vb, eb) = (vb, eb), (va, ea)
    ops = ["+", "*"] + (["-"] if va > vb else []) + (["/"] if va % vb == 0 else [])
    op = ops[rng.integers(len(ops))]
    value = {"+": va + vb, "-": va - vb, "*": va * vb, "/": va // vb if op == "/" else 0}[op]
    return value, f"{ea}{op}{eb}"


def _wrap(item: tuple[int, str]) -> tuple[int, str]:
    v, e = item
    return (v, e) if e.isdigit() else (v, f"({e})")


def generate_example(seed: int, level: int, index: int, *, template: str = "answer",
                     max_tries: int = 10_000) -> dict:
    """Example `index` of the (seed, level) stream; deterministic, random access."""
    if level not in LEVELS:
        raise ValueError(f"level: countdown levels are {sorted(LEVELS)}, got {level!r}")
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    cfg = LEVELS[level]
    rng = np.random.default_rng([_SALT, seed, level, index])
    for _ in range(max_tries):
        numbers = [int(x) for x in rng.integers(1, cfg.max_number + 1, size=cfg.count)]
        pool = [(n, str(n)) for n in numbers]
        while len(pool) > 1:
            i, j = rng.choice(len(pool), size=2, replace=False)
            a, b = pool[i], pool[j]
            pool = [p for k, p in enumerate(pool) if k not in (i, j)]
            pool.append(_combine(rng, _wrap(a), _wrap(b)))
        target, expr = pool[0]
        if 1 <= target <= cfg.max_target:
            ex = {"task": TASK, "source": f"countdown_l{level}", "level": level, "index": index,
                  "numbers": numbers, "target": int(target), "use_all": True, "answer": expr}
            return render(ex, template)
    raise RuntimeError(f"no countdown target in range after {max_tries} tries (level={level})")


def generate(num: int, *, seed: int, level: int, template: str = "answer", start: int = 0) -> list[dict]:
    """Examples start .. start+num-1 of the (seed, level) stream."""
    return [generate_example(seed, level, i, template=template) for i in range(start, start + num)]
