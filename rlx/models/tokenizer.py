"""Tokenizers: HF tokenizers from a local directory, and rlx's built-in character tokenizer.

The built-in tokenizer (for the tiny models of tests and the CPU demo) is character
level over printable ASCII and newline, plus whole-tag tokens for <think>, </think>,
<answer>, </answer> and the specials <pad>=0, <bos>=1, <eos>=2, <unk>=3. It prepends
<bos> to encoded text (not with `add_special_tokens=False`) and decodes by plain
concatenation. It is built deterministically with the `tokenizers` library and saved
in HF format, so `transformers.AutoTokenizer.from_pretrained(path)` loads it too.
"""

from __future__ import annotations

import os
import string

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
TAGS = ("<think>", "</think>", "<answer>", "</answer>")
CHARS = tuple(string.printable[:95]) + ("\n",)   # digits, letters, punctuation, space, newline


def load_tokenizer(path: str):
    """An HF tokenizer from a local directory (never downloads)."""
    from transformers import AutoTokenizer
    if not os.path.isdir(path):
        raise FileNotFoundError(f"tokenizer path {path!r} is not a local directory")
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def build_tokenizer(path: str | None = None):
    """rlx's character tokenizer as a `PreTrainedTokenizerFast`; saved to `path` if given
    (and loaded from there when it already holds one)."""
    if path and os.path.exists(os.path.join(path, "tokenizer.json")):
        return load_tokenizer(path)
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for t in SPECIALS + TAGS + CHARS:
        vocab.setdefault(t, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"</?(?:think|answer)>|.|\n"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    tok.add_special_tokens(list(SPECIALS))
    out = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                  pad_token="<pad>", unk_token="<unk>")
    if path:
        os.makedirs(path, exist_ok=True)
        out.save_pretrained(path)
    return out
