"""A safe evaluator for arithmetic expressions written by a model.

Never `eval`: model output is untrusted text. This is a small recursive-descent parser
over exactly this grammar (ASCII digits only; `×`, `÷` and `−` are accepted as aliases
of `*`, `/` and `-`):

    expr   := term (('+' | '-') term)*
    term   := unary (('*' | '/') unary)*
    unary  := ('+' | '-') unary | atom
    atom   := NUMBER | '(' expr ')'
    NUMBER := digits ['.' digits] | '.' digits

There is no exponentiation (`**` and `^` are syntax errors), no names, no calls. Values
are exact `fractions.Fraction`s (so `6/4*2 == 3` exactly, as the countdown rule needs).

Every resource is bounded, so a hostile string costs microseconds, never a hang or a
crash: the text length (`max_chars`), the number of tokens (`max_tokens`), the nesting
depth of parentheses and unary signs (`max_depth`, far below Python's recursion limit),
the digits of a literal (`max_digits`) and the size of every intermediate value
(`max_bits` for its numerator and denominator — `9*9*9*...` cannot grow without bound).
Division by zero is an error. Every failure raises `SafeEvalError`; callers turn it
into a wrong answer.
"""

from __future__ import annotations

import dataclasses
import re
from fractions import Fraction

_ALIASES = {"×": "*", "÷": "/", "−": "-"}
_OPS = frozenset("+-*/()")
_SPACE = frozenset(" \t\n\r")
_DIGITS = frozenset("0123456789")


class SafeEvalError(ValueError):
    """The text is not a well-formed, bounded arithmetic expression."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource bounds of one evaluation (defaults suit countdown / arithmetic answers)."""
    max_chars: int = 512      # longest accepted expression text
    max_tokens: int = 256     # numbers + operators + parentheses
    max_depth: int = 32       # nesting of parentheses and unary signs
    max_digits: int = 24      # digits in one literal (integer and fraction part together)
    max_bits: int = 512       # bit length of any numerator / denominator, intermediate or final


@dataclasses.dataclass(frozen=True)
class EvalResult:
    value: Fraction
    literals: tuple[Fraction, ...]   # the numbers written in the expression, in order
    integer_literals: bool           # every literal was written without a decimal point


def tokenize(text: str, limits: Limits = Limits()) -> list[str | Fraction]:
    """Split `text` into numbers (Fraction) and single-character operators."""
    if not isinstance(text, str):
        raise SafeEvalError(f"expression must be a str, got {type(text).__name__}")
    if len(text) > limits.max_chars:
        raise SafeEvalError(f"expression longer than {limits.max_chars} characters")
    tokens: list[str | Fraction] = []
    i, n = 0, len(text)
    while i < n:
        ch = _ALIASES.get(text[i], text[i])
        if ch in _SPACE:
            i += 1
            continue
        if ch in _OPS:
            tokens.append(ch)
            i += 1
        elif ch in _DIGITS or ch == ".":
            j = i
            while j < n and (text[j] in _DIGITS or text[j] == "."):
                j += 1
            lit = text[i:j]
            if lit.count(".") > 1 or lit == "." or lit.endswith("."):
                raise SafeEvalError(f"malformed number {lit[:20]!r}")
            if len(lit) - lit.count(".") > limits.max_digits:
                raise SafeEvalError(f"number with more than {limits.max_digits} digits")
            tokens.append(Fraction(lit))
            i = j
        else:
            raise SafeEvalError(f"unexpected character {text[i]!r} at position {i}")
        if len(tokens) > limits.max_tokens:
            raise SafeEvalError(f"more than {limits.max_tokens} tokens")
    return tokens


class _Parser:
    def __init__(self, tokens: list[str | Fraction], limits: Limits):
        self.toks, self.pos, self.limits = tokens, 0, limits
        self.literals: list[Fraction] = []

    def peek(self):
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self):
        tok = self.peek()
        self.pos += 1
        return tok

    def check(self, v: Fraction) -> Fraction:
        bits = self.limits.max_bits
        if v.numerator.bit_length() > bits or v.denominator.bit_length() > bits:
            raise SafeEvalError(f"intermediate value exceeds {self.limits.max_bits} bits")
        return v

    def expr(self, depth: int) -> Fraction:
        v = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term(depth)
            v = self.check(v + rhs if op == "+" else v - rhs)
        return v

    def term(self, depth: int) -> Fraction:
        v = self.unary(depth)
        while self.peek() in ("*", "/"):
            op = self.take()
            rhs = self.unary(depth)
            if op == "*":
                v = self.check(v * rhs)
            else:
                if rhs == 0:
                    raise SafeEvalError("division by zero")
                v = self.check(v / rhs)
        return v

    def unary(self, depth: int) -> Fraction:
        if depth > self.limits.max_depth:
            raise SafeEvalError(f"nesting deeper than {self.limits.max_depth}")
        tok = self.peek()
        if tok in ("+", "-"):
            self.take()
            v = self.unary(depth + 1)
            return -v if tok == "-" else v
        return self.atom(depth)

    def atom(self, depth: int) -> Fraction:
        tok = self.take()
        if isinstance(tok, Fraction):
            self.literals.append(tok)
            return tok
        if tok == "(":
            v = self.expr(depth + 1)
            if self.take() != ")":
                raise SafeEvalError("unbalanced parentheses")
            return v
        if tok is None:
            raise SafeEvalError("unexpected end of expression")
        raise SafeEvalError(f"unexpected token {tok!r}")


def evaluate(text: str, limits: Limits = Limits()) -> EvalResult:
    """Evaluate `text` exactly; raise `SafeEvalError` on anything but a bounded expression."""
    tokens = tokenize(text, limits)
    if not tokens:
        raise SafeEvalError("empty expression")
    p = _Parser(tokens, limits)
    value = p.expr(0)
    if p.pos != len(tokens):
        raise SafeEvalError(f"unexpected token {tokens[p.pos]!r} after a complete expression")
    integer = all("." not in t for t in _literal_texts(text))
    return EvalResult(value=value, literals=tuple(p.literals), integer_literals=integer)


def _literal_texts(text: str) -> list[str]:
    out, cur = [], []
    for ch in text:
        if ch in _DIGITS or ch == ".":
            cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


_NUMBER_RE = re.compile(
    r"([+-]?)\s*\$?\s*((?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+)\.?", re.ASCII)
_FRACTION_RE = re.compile(r"([+-]?)\s*([0-9]+)\s*/\s*([0-9]+)", re.ASCII)


def parse_number(text: str, *, max_chars: int = 64, max_digits: int = 40) -> Fraction:
    """A plain number as a model writes a final answer: `42`, `-3.5`, `1,234`, `$18.00`, `7.`, `3/4`.

    Thousands separators must be well placed (`1,234,567`); a leading `$` and one trailing
    `.` are allowed. ASCII digits only. Anything else raises `SafeEvalError`.
    """
    if not isinstance(text, str):
        raise SafeEvalError(f"answer must be a str, got {type(text).__name__}")
    s = text.strip().replace("−", "-")
    if len(s) > max_chars:
        raise SafeEvalError(f"answer longer than {max_chars} characters")
    m = _FRACTION_RE.fullmatch(s)
    if m:
        sign, num, den = m.groups()
        if len(num) + len(den) > max_digits:
            raise SafeEvalError(f"number with more than {max_digits} digits")
        if int(den) == 0:
            raise SafeEvalError("division by zero")
        return Fraction(int(sign + num), int(den))
    m = _NUMBER_RE.fullmatch(s)
    if not m:
        raise SafeEvalError(f"not a number: {s[:20]!r}")
    sign, body = m.groups()
    body = body.replace(",", "")
    if len(body) - body.count(".") > max_digits:
        raise SafeEvalError(f"number with more than {max_digits} digits")
    return Fraction(sign + body)
