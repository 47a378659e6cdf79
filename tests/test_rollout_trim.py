"""rlx.train.rollout.trim_padding: hand-built batches (which columns go, rounding, the
no-trim cases) and, in the engine, training on trimmed batches equals training on the
full-width ones."""

import numpy as np

from rlx.train.rollout import trim_padding


def _flat():
    # 3 rows; prompts left-padded in 10 columns (longest prompt: 3 tokens), completions
    # right-padded in 12 columns (longest completion: 5 tokens).
    pm = np.zeros((3, 10), bool)
    pm[0, 7:] = pm[1, 8:] = pm[2, 9:] = True
    cm = np.zeros((3, 12), bool)
    cm[0, :5] = cm[1, :2] = True                  # row 2: an empty completion
    return {"prompt_tokens": np.arange(30).reshape(3, 10), "prompt_mask": pm,
            "completion_tokens": np.arange(36).reshape(3, 12), "completion_mask": cm,
            "logprobs": -np.ones((3, 12)), "sampling_logprobs": -np.ones((3, 12)), "lengths": np.array([5, 2, 0])}


def test_trims_to_the_used_columns_rounded_up():
    f = _flat()
    out = trim_padding(f, 4)
    # prompt: 3 used columns -> 4 kept, the last 4 (7 stays the first real column + 1 pad)
    np.testing.assert_array_equal(out["prompt_tokens"], f["prompt_tokens"][:, 6:])
    np.testing.assert_array_equal(out["prompt_mask"], f["prompt_mask"][:, 6:])
    # completion: 5 used columns -> 8 kept, the first 8
    for k in ("completion_tokens", "completion_mask", "logprobs", "sampling_logprobs"):
        np.testing.assert_array_equal(out[k], f[k][:, :8])
    np.testing.assert_array_equal(out["lengths"], f["lengths"])      # per-row arrays untouched
    assert out["prompt_mask"].sum() == f["prompt_mask"].sum()        # no real token lost
    assert out["completion_mask"].sum() == f["completion_mask"].sum()
    # multiple 1: geometric buckets 1, 2, 4, 8 — 3 prompt columns -> 4, 5 completion columns -> 8
    o1 = trim_padding(f, 1)
    assert o1["prompt_tokens"].shape == (3, 4) and o1["completion_tokens"].shape == (3, 8)
    o3 = trim_padding(f, 3)                    # buckets 3, 6, 12: 3 -> 3, 5 -> 6
    assert o3["prompt_tokens"].shape == (3, 3) and o3["completion_tokens"].shape == (3, 6)


def test_no_trim_cases():
    f = _flat()
    assert trim_padding(f, 0) is f                                    # 0 = fixed shapes
    out = trim_padding(f, 16)                                          # rounding above the width
    assert out["prompt_tokens"].shape == (3, 10) and out["completion_tokens"].shape == (3, 12)
    f["completion_mask"][:] = False                                    # nothing generated at all
    assert trim_padding(f, 4)["completion_tokens"].shape == (3, 4)     # one grid step survives
