"""Tests for rlx.data.knights_knaves: evaluation, unique-solution generation, the JSONL loader.

The brute-force checks use `_solve`, a pure-Python evaluator written here from the
puzzle's definition (person i's claim must be true iff i is a knight), independent of
the module's vectorised numpy fast path.
"""

import ast
import itertools
import json
import os

import pytest

from rlx.data import knights_knaves as kk

DATA_DIR = "/work/shared/data/knights_knaves"


def _value(stmt, a):
    op = stmt[0]
    if op == "telling-truth":
        return a[stmt[1]]
    if op == "lying":
        return not a[stmt[1]]
    v = [_value(x, a) for x in stmt[1:]]
    if op == "not":
        return not v[0]
    if op == "and":
        return all(v)
    if op == "or":
        return any(v)
    if op == "->":
        return (not v[0]) or v[1]
    assert op == "<=>"
    return v[0] == v[1]


def _solve(statements):
    n = len(statements)
    return [a for a in itertools.product([False, True], repeat=n)
            if all(_value(s, a) == a[i] for i, s in enumerate(statements))]


# ----------------------------------------------------------------------------- evaluation

def test_evaluate_statement_truth_tables():
    # Hand truth tables over 2 people, assignment (p0, p1).
    a = (True, False)
    assert kk.evaluate_statement(("telling-truth", 0), a) is True
    assert kk.evaluate_statement(("lying", 0), a) is False
    assert kk.evaluate_statement(("not", ("lying", 1)), a) is False          # p1 is a knave: not(True)
    assert kk.evaluate_statement(("and", ("telling-truth", 0), ("lying", 1)), a) is True
    assert kk.evaluate_statement(("or", ("lying", 0), ("telling-truth", 1)), a) is False
    assert kk.evaluate_statement(("->", ("telling-truth", 1), ("lying", 0)), a) is True   # false premise
    assert kk.evaluate_statement(("->", ("telling-truth", 0), ("telling-truth", 1)), a) is False
    assert kk.evaluate_statement(("<=>", ("telling-truth", 0), ("lying", 1)), a) is True
    assert kk.evaluate_statement(("<=>", ("telling-truth", 0), ("telling-truth", 1)), a) is False


def test_classic_puzzle_solution():
    # A: "B is a knave"; B: "A and B are both knights". B's claim is
    # false (if B were a knight, A would be a knight saying B is a knave: contradiction),
    # so B is a knave and A, telling the truth, is a knight.
    stmts = (("lying", 1), ("and", ("telling-truth", 0), ("telling-truth", 1)))
    assert kk.solutions(stmts) == [(True, False)]
    assert _solve(stmts) == [(True, False)]


def test_validate_statement_rejects_malformed():
    with pytest.raises(ValueError, match="person index"):
        kk.validate_statement(("telling-truth", 3), 3)
    with pytest.raises(ValueError, match="unknown operator"):
        kk.validate_statement(("xor", ("lying", 0), ("lying", 1)), 2)
    with pytest.raises(ValueError, match="two operands"):
        kk.validate_statement(("->", ("lying", 0)), 2)
    with pytest.raises(ValueError, match="Python literal"):
        kk.parse_statements("(('lying', 0),", 1)
    with pytest.raises(ValueError, match="tuple of 2"):
        kk.parse_statements("(('lying', 0),)", 2)


# ----------------------------------------------------------------------------- generator

@pytest.mark.parametrize("n", kk.LEVELS)
def test_generated_puzzles_have_exactly_one_solution(n):
    for ex in kk.generate(12, seed=3, level=n):
        stmts = ast.literal_eval(ex["statements"])
        assert len(stmts) == n and len(ex["names"]) == n == len(set(ex["names"]))
        sols = _solve(stmts)
        assert sols == [tuple(ex["solution"])], ex["quiz"]
        # Gold answer: the data set's numbered format.
        lines = ex["answer"].split("\n")
        assert lines == [f"({i + 1}) {nm} is a {'knight' if s else 'knave'}"
                         for i, (nm, s) in enumerate(zip(ex["names"], ex["solution"]))]
        for s in stmts:   # every claim is rendered into the quiz
            assert kk.render_statement(s, ex["names"]) in ex["quiz"]
        assert ex["level"] == n and ex["source"] == f"kk_people{n}" and ex["task"] == "knights_knaves"
        assert ex["prompt"].startswith(ex["quiz"]) and "<answer>" in ex["prompt"]


def test_generator_is_deterministic_per_seed():
    a = kk.generate(5, seed=11, level=4)
    b = kk.generate(5, seed=11, level=4)
    c = kk.generate(5, seed=12, level=4)
    assert a == b
    assert [x["quiz"] for x in a] != [x["quiz"] for x in c]
    # Random access: example 3 alone equals the 4th of the stream.
    assert kk.generate_example(11, 4, 3) == a[3]
    assert kk.generate(2, seed=11, level=4, start=3) == a[3:5]


def test_generator_rejects_bad_level():
    with pytest.raises(ValueError, match="level"):
        kk.generate_example(0, 9, 0)
    with pytest.raises(ValueError, match="level"):
        kk.generate_example(0, 1, 0)


# ----------------------------------------------------------------------------- shared data

def test_shared_data_brute_force_finds_exactly_the_solution():
    """All 5000 published puzzles: the independent solver finds exactly the recorded solution,
    the module's fast path agrees, and rlx's renderer writes every claim as the quiz does."""
    count = 0
    for n in range(3, 8):
        with open(os.path.join(DATA_DIR, f"people{n}_num1000.jsonl")) as f:
            for line in f:
                rec = json.loads(line)
                stmts = ast.literal_eval(rec["statements"])
                assert _solve(stmts) == [tuple(rec["solution"])]
                assert kk.solutions(stmts) == [tuple(rec["solution"])]
                quiz = rec["quiz"].lower()
                for s in stmts:
                    assert kk.render_statement(s, rec["names"]).lower() in quiz
                count += 1
    assert count == 5000


def test_load_sources_one_source_per_n():
    sources = kk.load_sources(DATA_DIR)
    assert list(sources) == [3, 4, 5, 6, 7]
    for n, exs in sources.items():
        assert len(exs) == 1000
        ex = exs[0]
        assert ex["level"] == n and ex["source"] == f"kk_people{n}" and len(ex["names"]) == n
        assert ex["answer"] == kk.solution_text_format(ex["names"], ex["solution"])
    with open(os.path.join(DATA_DIR, "people3_num1000.jsonl")) as f:
        first = json.loads(f.readline())
    ex = sources[3][0]
    assert ex["answer"] == first["solution_text_format"] and ex["quiz"] == first["quiz"]
    assert ex["template"] == "think" and ex["prompt"].startswith(first["quiz"])


def _write(tmp_path, name, records):
    p = tmp_path / name
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return str(p)


def _good_record():
    return {"quiz": "q", "names": ["Ann", "Bob"], "solution": [True, False],
            "solution_text_format": "(1) Ann is a knight\n(2) Bob is a knave",
            "statements": "(('lying', 1), ('and', ('telling-truth', 0), ('telling-truth', 1)))"}


def test_loader_errors_name_file_and_line(tmp_path):
    good = _good_record()
    assert len(kk.load_jsonl(_write(tmp_path, "people2_a.jsonl", [good]))) == 1
    cases = [
        ("{not json", r"people2_b\.jsonl:2: invalid JSON"),
        ({k: v for k, v in good.items() if k != "quiz"}, r"people2_b\.jsonl:2: missing field 'quiz'"),
        ({**good, "solution": [True]}, r":2: field 'solution' must be 2 booleans"),
        ({**good, "statements": "(('lying', 5), ('lying', 0))"}, r":2: field statements\[0\]"),
        ({**good, "solution": [False, True], "solution_text_format": "(1) Ann is a knave\n(2) Bob is a knight"},
         r":2: 'statements' have 1 solution\(s\), expected exactly"),
        ({**good, "solution_text_format": "(1) Ann is a knave\n(2) Bob is a knave"},
         r":2: field 'solution_text_format' does not match"),
    ]
    for bad, pattern in cases:
        path = _write(tmp_path, "people2_b.jsonl", [good, bad])
        with pytest.raises(ValueError, match=pattern):
            kk.load_jsonl(path)
    with pytest.raises(ValueError, match="2 names but the file is for 3 people"):
        kk.load_jsonl(_write(tmp_path, "people3_c.jsonl", [good]))
