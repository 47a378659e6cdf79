"""Knights & Knaves logic puzzles: statement evaluation, a seeded generator, a JSONL loader.

The task of DUMP ("DUMP: Automated Distribution-Level Curriculum Learning for RL-based
LLM Post-training") and Logic-RL: N inhabitants, each a knight (always tells the truth)
or a knave (always lies), each making one statement about the others; find who is what.
DUMP trains on N = 3..7 (one data source per N) with puzzles that have exactly one
solution.

Statements are operator trees of nested tuples, the representation of the published
data (`statements` field): `('telling-truth', i)` "i is a knight", `('lying', i)` "i is
a knave", `('not', x)`, `('and', x, y, ...)`, `('or', x, y, ...)`, `('->', x, y)`,
`('<=>', x, y)`. Person i's claim is consistent with an assignment s (s_i = True for a
knight) iff value(claim, s) == s_i; a solution is an assignment consistent for all i.

Two evaluators: `evaluate_statement` (recursive, one assignment — the reference) and
`truth_table` (vectorised over all 2^N assignments with numpy — the fast path used by
`solutions`). The generator draws random trees (like the data: an operator over
leaves, or a single leaf) and keeps only puzzles with exactly one solution
(rejection sampling, by brute force over all 2^N assignments).
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Sequence

import numpy as np

from rlx.data.jsonl import records
from rlx.data.templates import render

TASK = "knights_knaves"
LEAF_OPS = ("telling-truth", "lying")
OPS = ("not", "and", "or", "->", "<=>")
LEVELS = tuple(range(2, 9))   # N = number of people
_SALT = 0x4B4B

NAMES = (
    "Alice", "Aria", "Ben", "Caleb", "Chloe", "Daniel", "David", "Ella", "Emily", "Ethan", "Evelyn",
    "Finn", "Grace", "Hannah", "Harper", "Henry", "Isaac", "Isla", "Jack", "James", "Jacob", "Julia",
    "Kai", "Leo", "Liam", "Lily", "Logan", "Lucas", "Luna", "Mason", "Maya", "Mia", "Nina", "Noah",
    "Nora", "Oliver", "Olivia", "Omar", "Owen", "Paul", "Quinn", "Rose", "Ruby", "Ryan", "Sam",
    "Sara", "Sofia", "Theo", "Uma", "Victor", "Violet", "Wade", "Will", "Xena", "Yara", "Zane", "Zoe",
)

# ----------------------------------------------------------------------------- evaluation


def validate_statement(stmt, n: int, where: str = "statement") -> None:
    """Raise ValueError unless `stmt` is a well-formed tree over people 0..n-1."""
    if not isinstance(stmt, tuple) or not stmt:
        raise ValueError(f"{where}: expected a non-empty tuple, got {stmt!r}"[:200])
    op, args = stmt[0], stmt[1:]
    if op in LEAF_OPS:
        ok = len(args) == 1 and isinstance(args[0], int) and not isinstance(args[0], bool)
        if not ok or not 0 <= args[0] < n:
            raise ValueError(f"{where}: {op!r} needs one person index in [0, {n}), got {args!r}")
    elif op == "not":
        if len(args) != 1:
            raise ValueError(f"{where}: 'not' takes one operand, got {len(args)}")
    elif op in ("and", "or"):
        if len(args) < 2:
            raise ValueError(f"{where}: {op!r} takes at least two operands, got {len(args)}")
    elif op in ("->", "<=>"):
        if len(args) != 2:
            raise ValueError(f"{where}: {op!r} takes two operands, got {len(args)}")
    else:
        raise ValueError(f"{where}: unknown operator {op!r}")
    if op not in LEAF_OPS:
        for a in args:
            validate_statement(a, n, where)


def evaluate_statement(stmt, assignment: Sequence[bool]) -> bool:
    """Truth value of `stmt` when person i is a knight iff assignment[i] (reference evaluator)."""
    op = stmt[0]
    if op == "telling-truth":
        return bool(assignment[stmt[1]])
    if op == "lying":
        return not assignment[stmt[1]]
    vals = [evaluate_statement(a, assignment) for a in stmt[1:]]
    if op == "not":
        return not vals[0]
    if op == "and":
        return all(vals)
    if op == "or":
        return any(vals)
    if op == "->":
        return (not vals[0]) or vals[1]
    if op == "<=>":
        return vals[0] == vals[1]
    raise ValueError(f"unknown operator {op!r}")


def assignments(n: int) -> np.ndarray:
    """All 2^n assignments, bool `[2^n, n]`; row k has person i a knight iff bit i of k is 1."""
    k = np.arange(2 ** n)[:, None]
    return ((k >> np.arange(n)[None, :]) & 1).astype(bool)


def truth_table(stmt, table: np.ndarray) -> np.ndarray:
    """Truth value of `stmt` under every row of `table` (`[K, n]` bool) -> `[K]` bool."""
    op = stmt[0]
    if op == "telling-truth":
        return table[:, stmt[1]]
    if op == "lying":
        return ~table[:, stmt[1]]
    vals = [truth_table(a, table) for a in stmt[1:]]
    if op == "not":
        return ~vals[0]
    if op == "and":
        return np.logical_and.reduce(vals)
    if op == "or":
        return np.logical_or.reduce(vals)
    if op == "->":
        return ~vals[0] | vals[1]
    if op == "<=>":
        return vals[0] == vals[1]
    raise ValueError(f"unknown operator {op!r}")


def solutions(statements: Sequence) -> list[tuple[bool, ...]]:
    """Every assignment consistent with all statements (brute force over 2^N, vectorised)."""
    n = len(statements)
    table = assignments(n)
    ok = np.ones(len(table), bool)
    for i, stmt in enumerate(statements):
        ok &= truth_table(stmt, table) == table[:, i]
    return [tuple(bool(x) for x in row) for row in table[ok]]


def parse_statements(text: str, n: int | None = None) -> tuple:
    """The `statements` field (a Python-literal string) as a validated tuple of trees."""
    if not isinstance(text, str) or len(text) > 100_000:
        raise ValueError("statements: expected a Python-literal string (at most 100000 characters)")
    try:
        stmts = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
        raise ValueError(f"statements: not a Python literal ({type(e).__name__})") from None
    if not isinstance(stmts, tuple) or (n is not None and len(stmts) != n):
        raise ValueError(f"statements: expected a tuple of {n if n is not None else 'N'} statements")
    for i, s in enumerate(stmts):
        validate_statement(s, len(stmts), f"statements[{i}]")
    return stmts

# ----------------------------------------------------------------------------- rendering


def _render_stmt(stmt, names: Sequence[str], top: bool = True) -> str:
    op = stmt[0]
    if op in LEAF_OPS:
        return f"{names[stmt[1]]} is a {'knight' if op == 'telling-truth' else 'knave'}"
    if op == "not":
        inner = stmt[1]
        if inner[0] in LEAF_OPS:
            return f"{names[inner[1]]} is not a {'knight' if inner[0] == 'telling-truth' else 'knave'}"
        return f"it is not the case that {_render_stmt(inner, names, False)}"
    parts = [_render_stmt(a, names, False) for a in stmt[1:]]
    if op in ("and", "or"):
        text = f" {op} ".join(parts)
    elif op == "->":
        text = f"if {parts[0]} then {parts[1]}"
    else:
        text = f"{parts[0]} if and only if {parts[1]}"
    return text if top else f"({text})"


def render_statement(stmt, names: Sequence[str]) -> str:
    """English for one claim, e.g. ('->', ('lying', 0), ('telling-truth', 1)) ->
    "If Zoe is a knave then Ben is a knight"."""
    text = _render_stmt(stmt, names)
    return text[0].upper() + text[1:]


def _join(names: Sequence[str]) -> str:
    return " and ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + ", and " + names[-1]


def solution_text_format(names: Sequence[str], solution: Sequence[bool]) -> str:
    """The numbered gold answer, as in the data set: "(1) Zoe is a knight\\n(2) Ben is a knave"."""
    return "\n".join(f"({i + 1}) {nm} is a {'knight' if s else 'knave'}"
                     for i, (nm, s) in enumerate(zip(names, solution)))


def solution_text(names: Sequence[str], solution: Sequence[bool]) -> str:
    return _join([f"{nm} is a {'knight' if s else 'knave'}" for nm, s in zip(names, solution)]) + "."


_VERBS = ("says", "claims", "states", "tells you", "remarks")


def render_quiz(names: Sequence[str], statements: Sequence, verbs: Sequence[str] | None = None) -> str:
    verbs = verbs or ["says"] * len(names)
    lines = [f"A very special island is inhabited only by knights and knaves. Knights always tell the truth, "
             f"and knaves always lie. You meet {len(names)} inhabitants: {_join(names)}."]
    lines += [f'{nm} {v}: "{render_statement(s, names)}."' for nm, v, s in zip(names, verbs, statements)]
    lines.append("So who is a knight and who is a knave?")
    return " ".join(lines)

# ----------------------------------------------------------------------------- generator


def _random_statement(rng: np.random.Generator, n: int, depth: int, leaf_prob: float):
    if depth <= 1 or rng.random() < leaf_prob:
        return (LEAF_OPS[rng.integers(2)], int(rng.integers(n)))
    op = OPS[rng.integers(len(OPS))]
    if op == "not":
        return ("not", _random_statement(rng, n, depth - 1, 1.0))
    left = _random_statement(rng, n, depth - 1, leaf_prob)
    right = _random_statement(rng, n, depth - 1, leaf_prob)
    for _ in range(8):      # "X is a knave and X is a knave" says nothing new: redraw the right side
        if right != left:
            break
        right = _random_statement(rng, n, depth - 1, leaf_prob)
    return (op, left, right)


def make_example(names, statements, solution, *, level: int, template: str = "think", index: int = -1,
                 source: str | None = None, verbs: Sequence[str] | None = None,
                 quiz: str | None = None) -> dict:
    """An rlx example from a puzzle (the quiz is rendered unless given)."""
    quiz = quiz if quiz is not None else render_quiz(names, statements, verbs)
    ex = {
        "task": TASK, "source": source or f"kk_people{level}", "level": int(level), "index": int(index),
        "quiz": quiz, "names": list(names), "solution": [bool(s) for s in solution],
        "statements": repr(tuple(statements)),
        "solution_text": solution_text(names, solution),
        "answer": solution_text_format(names, solution),
    }
    return render(ex, template)


def generate_example(seed: int, level: int, index: int, *, template: str = "think", depth: int = 2,
                     leaf_prob: float = 1 / 6, max_tries: int = 10_000) -> dict:
    """Puzzle `index` of the stream (seed, level): N = level people, exactly one solution.

    Deterministic in (seed, level, index): example i never depends on the others, so
    the stream has random access (TFDS and the iterators use this).
    """
    if level not in LEVELS:
        raise ValueError(f"level: K&K has N = {LEVELS[0]}..{LEVELS[-1]} people, got {level!r}")
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    rng = np.random.default_rng([_SALT, seed, level, index])
    names = [NAMES[i] for i in rng.choice(len(NAMES), size=level, replace=False)]
    for _ in range(max_tries):
        stmts = tuple(_random_statement(rng, level, depth, leaf_prob) for _ in range(level))
        sols = solutions(stmts)
        if len(sols) == 1:
            verbs = [_VERBS[i] for i in rng.integers(len(_VERBS), size=level)]
            return make_example(names, stmts, sols[0], level=level, template=template, index=index,
                                verbs=verbs)
    raise RuntimeError(f"no puzzle with a unique solution after {max_tries} tries (level={level})")


def generate(num: int, *, seed: int, level: int, template: str = "think", start: int = 0) -> list[dict]:
    """Examples start .. start+num-1 of the (seed, level) stream."""
    return [generate_example(seed, level, i, template=template) for i in range(start, start + num)]

# ----------------------------------------------------------------------------- loader

_REQUIRED = {"quiz": str, "names": list, "solution": list, "solution_text_format": str, "statements": str}


def _validate_record(rec, where: str, check_solution: bool) -> tuple:
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    for field, typ in _REQUIRED.items():
        if field not in rec:
            raise ValueError(f"{where}: missing field {field!r}")
        if not isinstance(rec[field], typ):
            raise ValueError(f"{where}: field {field!r} must be {typ.__name__}, "
                             f"got {type(rec[field]).__name__}")
    names, sol = rec["names"], rec["solution"]
    if not names or not all(isinstance(x, str) and x for x in names) or len(set(names)) != len(names):
        raise ValueError(f"{where}: field 'names' must be distinct non-empty strings")
    if len(sol) != len(names) or not all(isinstance(x, bool) for x in sol):
        raise ValueError(f"{where}: field 'solution' must be {len(names)} booleans")
    if rec["solution_text_format"] != solution_text_format(names, sol):
        raise ValueError(f"{where}: field 'solution_text_format' does not match 'names' and 'solution'")
    try:
        stmts = parse_statements(rec["statements"], len(names))
    except ValueError as e:
        raise ValueError(f"{where}: field {e}") from None
    if check_solution:
        found = solutions(stmts)
        if found != [tuple(sol)]:
            raise ValueError(f"{where}: 'statements' have {len(found)} solution(s), "
                             f"expected exactly the recorded 'solution'")
    return stmts


def load_jsonl(path: str, *, template: str = "think", level: int | None = None,
               check_solution: bool = True) -> list[dict]:
    """Read one K&K JSONL file (the DUMP data format) into rlx examples.

    `level` (N) defaults to the people count in the file name (`people{N}_...`), else the
    number of names. Every record is validated; errors name the file and line.
    """
    m = re.search(r"people(\d+)", os.path.basename(path))
    out = []
    for lineno, where, rec in records(path):
        stmts = _validate_record(rec, where, check_solution)
        n = len(rec["names"])
        lvl = level if level is not None else (int(m.group(1)) if m else n)
        if lvl != n:
            raise ValueError(f"{where}: {n} names but the file is for {lvl} people")
        out.append(make_example(rec["names"], stmts, rec["solution"], level=lvl, template=template,
                                index=int(rec.get("index", lineno - 1)), quiz=rec["quiz"]))
    return out


def load_sources(directory: str, *, template: str = "think", check_solution: bool = True,
                 ) -> dict[int, list[dict]]:
    """All `people{N}_*.jsonl` files of a directory: {N: examples}, one data source per N (DUMP)."""
    files = sorted(f for f in os.listdir(directory) if re.match(r"people\d+_.*\.jsonl$", f))
    if not files:
        raise FileNotFoundError(f"no people{{N}}_*.jsonl files in {directory}")
    sources: dict[int, list[dict]] = {}
    for fname in files:
        n = int(re.match(r"people(\d+)", fname).group(1))
        sources.setdefault(n, []).extend(
            load_jsonl(os.path.join(directory, fname), template=template, check_solution=check_solution))
    return dict(sorted(sources.items()))
