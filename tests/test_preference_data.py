"""Tests for rlx/data/preference.py: PreferenceBatch / RankingBatch validation and layout,
tokenization of pairs and rankings with a tokenizer built locally (WordLevel model wrapped
in `PreTrainedTokenizerFast`, nothing downloaded), and `sequence_logps`.

Expected token arrays are written out by hand from the tiny vocabulary below.
"""

import jax
import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from rlx.data import preference as dp

VOCAB = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2, "a": 3, "b": 4, "c": 5, "d": 6, "e": 7, "good": 8, "bad": 9}


@pytest.fixture(scope="module")
def tok():
    t = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=t, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")


def test_tokenize_pairs_padding_and_truncation(tok):
    batch = dp.tokenize_pairs(tok, ["a b", "a b c d e"], ["good", "good good good good"], ["bad zzz", "bad"],
                              max_prompt_len=3, max_response_len=3, pad_id=0, eos_id=2)
    # prompts left-padded; the long prompt keeps its LAST 3 tokens (c d e)
    np.testing.assert_array_equal(batch.prompt_tokens, [[0, 3, 4], [5, 6, 7]])
    np.testing.assert_array_equal(batch.prompt_mask, [[0, 1, 1], [1, 1, 1]])
    # responses right-padded with EOS appended; the long one keeps its FIRST 3 tokens (no EOS left)
    np.testing.assert_array_equal(batch.chosen_tokens, [[8, 2, 0], [8, 8, 8]])
    np.testing.assert_array_equal(batch.chosen_mask, [[1, 1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(batch.rejected_tokens, [[9, 1, 2], [9, 2, 0]])  # unknown word -> [UNK]
    np.testing.assert_array_equal(batch.valid, [True, True])
    assert batch.chosen_tokens.dtype == np.int32 and batch.chosen_mask.dtype == bool


def test_tokenize_pairs_with_a_callable_only_tokenizer(tok):
    class CallOnly:  # HF-style __call__ returning input_ids, without encode
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": tok.encode(text, add_special_tokens=False)}

    a = dp.tokenize_pairs(CallOnly(), ["a"], ["good"], ["bad"], max_prompt_len=2, max_response_len=2, pad_id=0)
    b = dp.tokenize_pairs(tok, ["a"], ["good"], ["bad"], max_prompt_len=2, max_response_len=2, pad_id=0)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def test_tokenize_pairs_errors(tok):
    with pytest.raises(ValueError, match="one length"):
        dp.tokenize_pairs(tok, ["a"], ["good", "good"], ["bad"], max_prompt_len=2, max_response_len=2, pad_id=0)
    with pytest.raises(ValueError, match=r"chosen\[0\] tokenizes to no tokens"):
        dp.tokenize_pairs(tok, ["a"], [""], ["bad"], max_prompt_len=2, max_response_len=2, pad_id=0)
    with pytest.raises(ValueError, match="max_response_len"):
        dp.tokenize_pairs(tok, ["a"], ["good"], ["bad"], max_prompt_len=2, max_response_len=0, pad_id=0)
    with pytest.raises(TypeError, match=r"rejected\[0\]"):
        dp.tokenize_pairs(tok, ["a"], ["good"], [None], max_prompt_len=2, max_response_len=2, pad_id=0)


def test_preference_batch_validation_names_the_field():
    ok = dict(prompt_tokens=np.zeros((2, 3), np.int32), prompt_mask=np.ones((2, 3), bool),
              chosen_tokens=np.zeros((2, 4), np.int32), chosen_mask=np.ones((2, 4), bool),
              rejected_tokens=np.zeros((2, 4), np.int32), rejected_mask=np.ones((2, 4), bool))
    b = dp.PreferenceBatch.create(**ok)
    assert b.num_pairs == 2 and b.valid.shape == (2,)
    with pytest.raises(ValueError, match="PreferenceBatch.rejected_mask"):
        dp.PreferenceBatch.create(**{**ok, "rejected_mask": np.ones((2, 5), bool)})
    with pytest.raises(TypeError, match="PreferenceBatch.chosen_tokens"):
        dp.PreferenceBatch.create(**{**ok, "chosen_tokens": np.zeros((2, 4), np.float32)})
    with pytest.raises(ValueError, match="PreferenceBatch.valid"):
        dp.PreferenceBatch.create(**ok, valid=np.ones(3, bool))
    with pytest.raises(ValueError, match="PreferenceBatch.prompt_mask is required"):
        dp.PreferenceBatch.create(**{**ok, "prompt_mask": None})


def test_stacked_and_split(tok):
    batch = dp.tokenize_pairs(tok, ["a", "b"], ["good", "c"], ["bad", "d"], max_prompt_len=2, max_response_len=2,
                              pad_id=0)
    pt, pm, ct, cm = batch.stacked()
    assert pt.shape == (4, 2) and ct.shape == (4, 2)
    np.testing.assert_array_equal(ct[:, 0], [8, 5, 9, 6])  # chosen rows first, then rejected
    np.testing.assert_array_equal(pt[2], pt[0])
    c, r = dp.PreferenceBatch.split(ct)
    np.testing.assert_array_equal(c, batch.chosen_tokens)
    np.testing.assert_array_equal(r, batch.rejected_tokens)
    with pytest.raises(ValueError, match="even"):
        dp.PreferenceBatch.split(ct[:3])


def test_ranking_batch_ranks_scores_and_flat(tok):
    rb = dp.tokenize_rankings(tok, ["a", "b c"], [["good", "bad", "c"], ["d", "e"]], [[0.5, -1.0, 2.0], [1.0, 3.0]],
                              max_prompt_len=2, max_response_len=2, pad_id=0)
    assert rb.num_responses == 3
    np.testing.assert_array_equal(rb.valid, [[1, 1, 1], [1, 1, 0]])
    np.testing.assert_array_equal(rb.ranks, [[1, 2, 0], [1, 0, 2]])  # 0 = highest score; padding last
    np.testing.assert_array_equal(rb.response_tokens[1, 2], [0, 0])
    np.testing.assert_array_equal(rb.response_mask[1, 2], [0, 0])
    pt, pm, ct, cm = rb.flat()
    assert ct.shape == (6, 2)
    np.testing.assert_array_equal(ct[:, 0], [8, 9, 5, 6, 7, 0])  # row n*K + k
    np.testing.assert_array_equal(pt[3], [4, 5])  # prompt of list 1
    # ranks given -> scores = -ranks; ranks must be a permutation of 0..n-1 over the valid responses
    kw = dict(prompt_tokens=rb.prompt_tokens, prompt_mask=rb.prompt_mask, response_tokens=rb.response_tokens,
              response_mask=rb.response_mask)
    rb2 = dp.RankingBatch.create(**kw, ranks=np.array([[0, 1, 2], [1, 0, 0]]), valid=rb.valid)
    np.testing.assert_array_equal(rb2.scores, [[0, -1, -2], [-1, 0, 0]])
    with pytest.raises(ValueError, match="RankingBatch.ranks: row 0"):
        dp.RankingBatch.create(**kw, ranks=np.array([[0, 0, 2], [1, 0, 0]]), valid=rb.valid)
    with pytest.raises(ValueError, match="give scores or ranks"):
        dp.RankingBatch.create(**kw)
    with pytest.raises(ValueError, match="RankingBatch.scores"):
        dp.RankingBatch.create(**kw, scores=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="more than num_responses"):
        dp.tokenize_rankings(tok, ["a"], [["good", "bad"]], [[1.0, 0.0]], max_prompt_len=2, max_response_len=2,
                             pad_id=0, num_responses=1)


def test_sequence_logps():
    lp = np.array([[-1.0, -2.0, np.nan], [-0.5, -0.5, -0.5], [np.nan, np.nan, np.nan]], np.float32)
    mask = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 0]], bool)
    np.testing.assert_allclose(dp.sequence_logps(lp, mask), [-3.0, -1.5, 0.0])
    np.testing.assert_allclose(dp.sequence_logps(lp, mask, average=True), [-1.5, -0.5, 0.0])
    nk = dp.sequence_logps(lp.reshape(1, 3, 3), mask.reshape(1, 3, 3))  # any leading shape
    np.testing.assert_allclose(nk, [[-3.0, -1.5, 0.0]])
    with pytest.raises(ValueError, match="mask_BT"):
        dp.sequence_logps(lp, mask[:, :2])
