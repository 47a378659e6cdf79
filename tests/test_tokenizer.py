"""Tokenizers: rlx's built-in character tokenizer (HF format) and loading HF tokenizers.

Expected ids are derived from the documented vocabulary order: specials <pad>=0,
<bos>=1, <eos>=2, <unk>=3, then the tags <think>=4, </think>=5, <answer>=6,
</answer>=7, then the characters of `string.printable[:95]` (digits first: "0"=8, ...)
and newline.
"""

import json
import os
import string

import pytest

transformers = pytest.importorskip("transformers")

from rlx import models  # noqa: E402

TEXTS = ["<answer>12</answer>", "(1) Alice is a knight", "Using 3, 5, 7: (3+5)*7 = 56\n<think>ok</think>",
         "Zoe says: \"Bob is a knave.\" 1/2-3 % 4 == [x] {y} ~ ^ `z` ; $ # @ !?"]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tok"))
    models.build_tokenizer(path)
    return path


def test_vocabulary_and_special_ids(tok_dir):
    tok = models.load_tokenizer(tok_dir)
    assert len(tok) == 4 + 4 + 95 + 1 == 104
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    # "<answer>12</answer>": <bos>, the tag as one token, "1" = 8 + 1, "2" = 8 + 2, the closing tag.
    assert tok.encode("<answer>12</answer>") == [1, 6, 9, 10, 7]
    assert tok.encode("a", add_special_tokens=False) == [8 + string.printable.index("a")]
    assert tok.encode("\n", add_special_tokens=False) == [103]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tok_dir, text):
    tok = models.load_tokenizer(tok_dir)
    ids = tok.encode(text)
    assert ids[0] == tok.bos_token_id and tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.decode(ids + [tok.eos_token_id, tok.pad_token_id], skip_special_tokens=True) == text


def test_deterministic_and_loadable_by_transformers(tok_dir, tmp_path):
    other = str(tmp_path / "again")
    models.build_tokenizer(other)
    with open(os.path.join(tok_dir, "tokenizer.json")) as f, open(os.path.join(other, "tokenizer.json")) as g:
        assert json.load(f)["model"] == json.load(g)["model"]              # the same vocabulary, byte for byte
    auto = transformers.AutoTokenizer.from_pretrained(tok_dir)
    ours = models.build_tokenizer(tok_dir)                                 # loads the saved one
    for text in TEXTS:
        assert auto.encode(text) == ours.encode(text)
    batch = auto(TEXTS[:2], padding=True)
    assert batch["input_ids"][0][-1] == auto.pad_token_id                  # right-padded with <pad>=0
    assert models.build_tokenizer().encode("hi") == auto.encode("hi")      # in memory, no path


def test_unknown_characters_and_missing_paths(tok_dir, tmp_path):
    tok = models.load_tokenizer(tok_dir)
    assert tok.encode("é", add_special_tokens=False) == [tok.unk_token_id]
    with pytest.raises(FileNotFoundError, match="not a local directory"):
        models.load_tokenizer(str(tmp_path / "missing"))
