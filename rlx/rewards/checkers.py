"""Answer checkers per task, and the robust batch scorer `score`.

Checkers read untrusted model text. They never `eval`, they bound every resource (see
rlx/rewards/safe_eval.py) and they are linear in the completion length. On top of that
`score` runs each checker under a time budget: a checker that raises, returns garbage
or runs past `time_limit_s` gives the completion the task's failure components (its
declared minimum: 0 for the binary tasks, format −1 / answer −2 for Knights & Knaves) and
is counted in `RewardStats` (`errors`, `timeouts`, `first_error`, `last_error`) — the run
continues.

The budget is enforced in worker processes that are killed at their deadline
(`workers > 0`, rlx/rewards/pool.py: what the engine uses), or, in the calling process,
preemptively with `SIGALRM` (`setitimer`) when `score` runs in the main thread and no
other interval timer is armed — this interrupts any Python-level loop, though not a
single long C call such as one regex match — and after the fact by measuring the
elapsed time (a checker that overran is scored as failed even if it finished). Off the
main thread `score` uses a worker process even when asked for none.

Extraction depends on the example's `template` field (rlx/data/templates.py):
"compact" completions are the bare answer (the first line; a tagged answer also
counts); "answer" and "think" completions must put the answer in <answer>...</answer>
(the last pair counts). The format component uses the strict rule of
rlx/rewards/format.py, with <think> required for "think" templates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from fractions import Fraction

import numpy as np

from rlx.rewards import format as fmt
from rlx.rewards.components import combine, get_task, register_task
from rlx.rewards.kk import kk_components
from rlx.rewards.safe_eval import SafeEvalError, evaluate, parse_number

# ----------------------------------------------------------------------------- checkers


def check_exact(pred: str | None, gold: str, *, case_sensitive: bool = False) -> bool:
    """Equality after collapsing whitespace (and case, unless `case_sensitive`)."""
    if pred is None:
        return False
    a, b = " ".join(pred.split()), " ".join(str(gold).split())
    return a == b if case_sensitive else a.casefold() == b.casefold()


def check_numeric(pred: str | None, gold: str | float | int, *, rel_tol: float = 0.0,
                  abs_tol: float = 1e-6) -> bool:
    """|pred − gold| <= abs_tol + rel_tol·|gold|, with `pred` parsed by `parse_number`."""
    if pred is None:
        return False
    try:
        p = parse_number(pred)
    except SafeEvalError:
        return False
    g = gold if isinstance(gold, (int, Fraction)) else parse_number(str(gold))
    return abs(p - g) <= Fraction(abs_tol) + Fraction(rel_tol) * abs(Fraction(g))


def check_countdown(expression: str | None, numbers: Sequence[int], target: int, *,
                    use_all: bool = True) -> bool:
    """The expression reaches `target` exactly using the given numbers.

    use_all=True (the countdown rule of TinyZero / rlx's generator): the integer
    literals of the expression are exactly the multiset `numbers`, each used once.
    use_all=False: each number at most once (a sub-multiset). Operators + − × ÷ and
    parentheses; exact rational arithmetic; an optional trailing "= <target>" is allowed.
    """
    if expression is None:
        return False
    expr = expression.strip()
    if "=" in expr:
        lhs, sep, rhs = expr.partition("=")
        if "=" in rhs:
            return False
        try:
            if parse_number(rhs) != target:
                return False
        except SafeEvalError:
            return False
        expr = lhs
    try:
        res = evaluate(expr)
    except SafeEvalError:
        return False
    if not res.integer_literals:
        return False
    used = Counter(int(x) for x in res.literals)
    avail = Counter(int(x) for x in numbers)
    ok = used == avail if use_all else all(used[k] <= avail[k] for k in used)
    return ok and res.value == target


def _answer_and_format(completion: str, example: Mapping) -> tuple[str | None, float]:
    template = example.get("template", "answer")
    text = example.get("response_prefix", "") + completion
    if template == "compact":
        pred = fmt.extract_plain(text)
        return pred, 1.0 if pred else 0.0
    return fmt.extract_tagged(text), fmt.format_reward(text, require_think=template == "think")


def final_answer(task: str, completion: str, example: Mapping) -> str | None:
    """The final answer a completion gives, as its task's checker reads it (None when it
    gives none); majority voting (`rlx.eval`) compares these, whitespace-collapsed."""
    if task == "math":
        from rlx.rewards.math_answers import extract_answer
        return extract_answer(example.get("response_prefix", "") + completion, example.get("template", "answer"))
    if task == "knights_knaves":
        return fmt.extract_tagged(example.get("response_prefix", "") + completion)
    return _answer_and_format(completion, example)[0]


def arithmetic_checker(completion: str, example: Mapping) -> tuple[float, float]:
    pred, f = _answer_and_format(completion, example)
    return f, float(check_numeric(pred, int(example["answer"]), abs_tol=0.0))


def countdown_checker(completion: str, example: Mapping) -> tuple[float, float]:
    pred, f = _answer_and_format(completion, example)
    ok = check_countdown(pred, example["numbers"], int(example["target"]),
                         use_all=bool(example.get("use_all", True)))
    return f, float(ok)


def gsm8k_checker(completion: str, example: Mapping) -> tuple[float, float]:
    pred, f = _answer_and_format(completion, example)
    return f, float(check_numeric(pred, str(example["answer"])))


def knights_knaves_checker(completion: str, example: Mapping) -> tuple[float, float]:
    return kk_components(completion, example["answer"],
                         require_think=example.get("template", "think") == "think",
                         response_prefix=example.get("response_prefix", ""))


def exact_checker(completion: str, example: Mapping) -> tuple[float]:
    pred, _ = _answer_and_format(completion, example)
    return (float(check_exact(pred, example["answer"])),)


register_task("arithmetic", arithmetic_checker)
register_task("countdown", countdown_checker)
register_task("gsm8k", gsm8k_checker)
register_task("numeric", gsm8k_checker)         # data.task=jsonl, data.checker=numeric: the same rule
register_task("knights_knaves", knights_knaves_checker, weights=(1.0, 1.0), success_value=2.0,
              failure=(-1.0, -2.0))         # the worst format and answer scores: total -3
register_task("exact", exact_checker, ("answer",), (1.0,))

# ----------------------------------------------------------------------------- scorer


_F32_MAX = float(np.finfo(np.float32).max)


class CheckerTimeout(BaseException):
    """Raised inside a checker that ran past its time budget. A BaseException, so that a
    checker's own `except Exception` cannot swallow it."""


@dataclasses.dataclass
class RewardStats:
    """Counters of a scoring call; add them up across steps (`a + b`) and log `as_metrics()`."""
    n: int = 0               # completions scored
    errors: int = 0          # checker raised or returned malformed components -> reward 0
    timeouts: int = 0        # checker exceeded the time budget -> reward 0
    format_ok: int = 0       # format component >= 1 (its maximum for the built-in tasks)
    successes: int = 0       # success component reached the task's success value
    reward_sum: float = 0.0
    last_error: str | None = None
    first_error: str | None = None

    def __add__(self, other: RewardStats) -> RewardStats:
        return RewardStats(self.n + other.n, self.errors + other.errors, self.timeouts + other.timeouts,
                           self.format_ok + other.format_ok, self.successes + other.successes,
                           self.reward_sum + other.reward_sum, other.last_error or self.last_error,
                           self.first_error or other.first_error)

    def as_metrics(self, prefix: str = "reward/") -> dict[str, float]:
        d = max(self.n, 1)
        return {f"{prefix}mean": self.reward_sum / d, f"{prefix}success_rate": self.successes / d,
                f"{prefix}format_rate": self.format_ok / d, f"{prefix}errors": float(self.errors),
                f"{prefix}timeouts": float(self.timeouts), f"{prefix}count": float(self.n)}


@contextlib.contextmanager
def _deadline(seconds: float | None):
    """Raise CheckerTimeout in this block after `seconds` (main thread, timer free), else no-op."""
    usable = (seconds is not None and seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread()
              and signal.getitimer(signal.ITIMER_REAL)[0] == 0)
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise CheckerTimeout(f"checker exceeded {seconds:g} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            signal.signal(signal.SIGALRM, old)


def score(task: str, completions: Sequence[str], examples: Sequence[Mapping], *,
          weights: Sequence[float] | None = None, time_limit_s: float | None = 1.0, workers: int = 0,
          ) -> tuple[np.ndarray, np.ndarray | None, RewardStats]:
    """Score N completions of task `task` against their examples.

    Returns (rewards [N] float32, components [C, N] float32 or None when the task has a
    single component, stats). rewards = Σ_c weights_c · components_c (task default
    weights unless given). A completion whose checker fails (raises anything, SystemExit
    included; returns malformed or non-finite components, also after the float32 cast),
    or overruns `time_limit_s`, gets the task's failure components (its declared minimum,
    `TaskSpec.failure`: a failure never scores better than a wrong answer) and is counted
    in `stats` (`first_error` / `last_error` hold messages).

    `workers` > 0 runs the checkers in that many worker processes with a hard deadline
    (rlx.rewards.pool: a hung checker's process is killed); 0 runs them here, under a
    SIGALRM budget and an after-the-fact time check — in the main thread; called from
    another thread with a time limit, `score` uses one worker process instead (SIGALRM
    cannot interrupt another thread), unless the task's checker cannot be pickled.
    """
    spec = get_task(task)
    if len(completions) != len(examples):
        raise ValueError(f"completions ({len(completions)}) and examples ({len(examples)}) differ in length")
    w = spec.weights if weights is None else tuple(float(x) for x in weights)
    if len(w) != spec.num_components:
        raise ValueError(f"weights: task {task!r} has {spec.num_components} components "
                         f"{spec.component_names}, got {len(w)} weights")
    C, N = spec.num_components, len(completions)
    fail = np.asarray(spec.failure, np.float64)
    comp = np.repeat(fail[:, None], N, axis=1)
    stats = RewardStats(n=N)
    fmt_idx = spec.component_names.index("format") if "format" in spec.component_names else None
    succ_idx = spec.component_names.index(spec.success_component)

    def failed(i, kind, msg):
        if kind == "timeout":
            stats.timeouts += 1
        else:
            stats.errors += 1
        stats.last_error = f"completion {i}: {msg}"[:500]
        stats.first_error = stats.first_error or stats.last_error

    def accept(i, out):
        try:
            vals = [float(v) for v in out]
        except (TypeError, ValueError):
            return failed(i, "error", f"checker returned {out!r}, expected {C} numbers")
        if len(vals) != C or not all(math.isfinite(v) and abs(v) <= _F32_MAX for v in vals):
            return failed(i, "error", f"checker returned {out!r}, expected {C} components finite in float32")
        comp[:, i] = vals

    texts_ok = []
    for i, text in enumerate(completions):
        if isinstance(text, str):
            texts_ok.append(i)
        else:
            failed(i, "error", f"TypeError: completion is {type(text).__name__}, not str")
    from rlx.rewards.pool import CheckerPool, shared_pool
    if (not workers and time_limit_s and threading.current_thread() is not threading.main_thread()
            and CheckerPool.can_run(spec)):
        workers = 1            # off the main thread SIGALRM cannot stop a checker: a worker process can
    if workers and texts_ok and CheckerPool.can_run(spec):
        results = shared_pool(int(workers)).run(spec, [completions[i] for i in texts_ok],
                                                [examples[i] for i in texts_ok], time_limit_s)
        for i, (status, value) in zip(texts_ok, results):
            if status == "ok":
                accept(i, value)
            else:
                failed(i, status, value)
    else:
        if spec.warmup is not None and texts_ok:
            try:
                spec.warmup()                       # outside the deadlines (heavy imports)
            except Exception:  # noqa: BLE001, S110 - the checker then fails on its own, counted
                pass
        for i in texts_ok:
            t0 = time.perf_counter()
            try:
                with _deadline(time_limit_s):
                    out = spec.checker(completions[i], examples[i])
            except CheckerTimeout as e:
                failed(i, "timeout", str(e))
                continue
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # noqa: BLE001 — any checker failure (SystemExit too) is counted
                failed(i, "error", f"{type(e).__name__}: {e}")
                continue
            if time_limit_s is not None and time.perf_counter() - t0 > time_limit_s:
                failed(i, "timeout", f"checker exceeded {time_limit_s:g} s")
                continue
            accept(i, out)
    rewards = combine(comp, w)
    if not np.all(np.isfinite(rewards)):              # finite components, weighted sum overflowed float32
        for i in np.flatnonzero(~np.isfinite(rewards)):
            failed(int(i), "error", "reward is not finite in float32")
            comp[:, i] = fail
        rewards = combine(comp, w)
    if fmt_idx is not None:
        stats.format_ok = int(np.sum(comp[fmt_idx] >= 1.0))  # every built-in format score peaks at 1
    stats.successes = int(np.sum(comp[succ_idx] >= spec.success_value - 1e-9))
    stats.reward_sum = float(rewards.sum())
    return rewards, (comp.astype(np.float32) if C > 1 else None), stats
