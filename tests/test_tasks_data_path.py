"""Tests for the GSM8K-format loader and the plain-Python iterator path (sources, state/restore)."""

import json

import numpy as np
import pytest

from rlx.data import gsm8k, iterators
from rlx.data.iterators import EpochIterator, GeneratedSource, ListSource, MixtureIterator, MultiSource

# ----------------------------------------------------------------------------- gsm8k


def _jsonl(tmp_path, lines, name="gsm.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return str(p)


def test_gsm8k_loader_reads_final_answers(tmp_path):
    path = _jsonl(tmp_path, [
        {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3+4=<<3+4=7>>7\n#### 7"},
        "",
        {"question": "Price?", "answer": "It costs 1,200 dollars.\n#### $1,200"},
        {"question": "Change?", "answer": "#### -3.5"},
    ])
    exs = gsm8k.load_jsonl(path)
    assert [e["answer"] for e in exs] == ["7", "1200", "-3.5"]
    assert exs[0]["question"].startswith("Tom") and exs[0]["task"] == "gsm8k" and exs[0]["source"] == "gsm8k"
    assert exs[0]["prompt"] == exs[0]["question"] + "\nGive the final answer in <answer></answer>."
    assert gsm8k.load_jsonl(path, template="compact")[0]["prompt"].startswith("Q: Tom")
    assert len(gsm8k.load_jsonl(path, limit=2)) == 2


def test_gsm8k_loader_errors_name_file_and_line(tmp_path):
    good = {"question": "q", "answer": "#### 1"}
    cases = [
        ("{oops", r"gsm\.jsonl:2: invalid JSON"),
        ({"question": "q"}, r"gsm\.jsonl:2: field 'answer' must be a non-empty string"),
        ({"question": "", "answer": "#### 1"}, r":2: field 'question'"),
        ({"question": "q", "answer": "no marker 5"}, r":2: field 'answer': no '#### <number>'"),
        ({"question": "q", "answer": "#### seven"}, r":2: field 'answer': final answer 'seven' is not a number"),
        ([1, 2], r":2: expected a JSON object"),
    ]
    for bad, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            gsm8k.load_jsonl(_jsonl(tmp_path, [good, bad]))
    with pytest.raises(FileNotFoundError):
        gsm8k.load_jsonl(str(tmp_path / "missing.jsonl"))

# ----------------------------------------------------------------------------- iterators


def test_generated_source_random_access():
    src = GeneratedSource("countdown", 2, seed=4, size=10)
    assert len(src) == 10 and src[3] == src[3]
    from rlx.data import countdown
    assert src[3] == countdown.generate_example(4, 2, 3)
    with pytest.raises(IndexError):
        src[10]
    inf = GeneratedSource("arithmetic", 1, seed=0)
    with pytest.raises(TypeError, match="infinite"):
        len(inf)
    assert inf[10**6]["task"] == "arithmetic"
    with pytest.raises(ValueError, match="unknown generated task"):
        GeneratedSource("chess", 1, seed=0)


def test_epoch_iterator_covers_each_epoch_and_restores_exactly():
    src = ListSource([{"i": i} for i in range(7)])
    it = EpochIterator(src, 3, seed=1)
    batches = [[e["i"] for e in next(it)] for _ in range(7)]          # 21 items = 3 epochs
    flat = sum(batches, [])
    for e in range(3):
        assert sorted(flat[7 * e: 7 * e + 7]) == list(range(7))        # each epoch is a permutation
    assert flat[:7] != flat[7:14] or flat[7:14] != flat[14:]          # reshuffled across epochs
    # Save after 2 batches, keep going, restore into a fresh iterator: identical continuation.
    it2 = EpochIterator(src, 3, seed=1)
    next(it2), next(it2)
    state = it2.state()
    assert state == {"epoch": 0, "position": 6}
    rest = [[e["i"] for e in next(it2)] for _ in range(3)]
    it3 = EpochIterator(src, 3, seed=1)
    it3.restore(state)
    assert [[e["i"] for e in next(it3)] for _ in range(3)] == rest == batches[2:5]
    with pytest.raises(ValueError, match="invalid iterator position"):
        it3.restore({"epoch": 0, "position": 7})


def test_epoch_iterator_finite_epochs():
    src = ListSource([{"i": i} for i in range(5)])
    got = [[e["i"] for e in b] for b in EpochIterator(src, 2, seed=0, shuffle=False, num_epochs=1)]
    assert got == [[0, 1], [2, 3], [4]]
    got = list(EpochIterator(src, 2, seed=0, shuffle=False, num_epochs=1, drop_remainder=True))
    assert len(got) == 2


def test_stream_iterator_state():
    it = iterators.StreamIterator(GeneratedSource("arithmetic", 2, seed=3), 4)
    a = next(it)
    state = it.state()
    b = next(it)
    it.restore(state)
    assert next(it) == b and state == {"index": 4} and a[0]["index"] == 0


def test_multisource_and_mixture_iterator():
    multi = MultiSource([ListSource([{"s": 0, "i": i} for i in range(3)]),
                         ListSource([{"s": 1, "i": i} for i in range(5)])], names=["a", "b"])
    np.testing.assert_array_equal(multi.sizes, [3, 5])
    got = multi.lookup(np.array([1, 0]), np.array([4, 2]))
    assert got == [{"s": 1, "i": 4, "source_id": 1}, {"s": 0, "i": 2, "source_id": 0}]
    with pytest.raises(IndexError, match="out of range"):
        multi.lookup([0], [3])
    it = MixtureIterator(multi, 50, seed=2, weights=[0.0, 1.0])
    assert all(e["s"] == 1 for e in next(it))
    it = MixtureIterator(multi, 8, seed=2)
    next(it)
    state = it.state()
    expected = next(it)
    it2 = MixtureIterator(multi, 8, seed=2)
    it2.restore(state)
    assert next(it2) == expected
    with pytest.raises(ValueError, match="weights"):
        MixtureIterator(multi, 8, seed=2, weights=[1.0])
