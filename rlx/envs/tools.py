"""Tool use: a math problem the model may solve with a calculator or a Python tool.

Each task is one problem of rlx's generators — Countdown (`problem="countdown"`, the
default) or arithmetic — drawn by (`seed`, `level`, `index`; `index` is the task's
seed key). The first observation is the problem's prompt (template "answer") and one
line on the tool. A model turn is read, in this order:

  <answer>X</answer>      the final answer, scored by the task's checker (rlx.rewards:
                          countdown / arithmetic): reward 1 if right, else 0; the episode
                          ends
  <calc>EXPR</calc>       tool "calculator": EXPR evaluated exactly by rlx's safe evaluator
                          (+ - * / and parentheses over rationals); the observation is
                          "= VALUE", or "error: ..." when it does not evaluate
  <python>CODE</python>   tool "python": CODE run by `rlx.envs.sandbox.run_python` (a
                          limited subprocess; `timeout_s`, default 5 s); the observation is
                          its output (at most 200 characters) or its error
  anything else           an invalid action (`valid_action` False); the observation asks
                          for a tool call or an answer

`max_steps` turns (default 4) end the episode unanswered (reward 0). `state_id`: a
CRC-32 of the tool calls made so far (their text, whitespace-normalized, in order) — the
same calls in the same order are the same state (GiGPO's anchor groups; the official
code groups tool-use states by their observation text, which here is a function of the
calls). A call of a tool the task does not offer is an invalid action.

Task option "template": "answer" (default: the generator's full instructions) or
"compact" (the short prompt, e.g. "Using 4 10 make 40:", and a short tool line — for
character-level CPU models); answers are `<answer>` tags either way.

`expert_action()` (the SFT warm start's demonstrations): once the last tool call shows
the target (Countdown: answer with that expression) or the answer (arithmetic: answer
the value), answer; else, with task option "expert" = "solution" (default), call the
tool on the problem's known solution — or, with "search" (Countdown with two numbers
a, b as listed in the prompt), call it on the next untried candidate of the fixed
order a+b, a*b, a-b, b-a, a/b, b/a: the blind trial-and-check a policy can imitate
without knowing the answer, which a budget of `max_steps` turns cuts short when the
right operation comes late (what RL can improve: picking the operation from the
numbers and the target).
`random_action(rng)` calls it on a random candidate (two of the numbers or operands
with a random operator).
"""

from __future__ import annotations

import re
import zlib

from rlx.envs.base import StepResult

_TAG = {name: re.compile(rf"<{name}>(.*?)</{name}>", re.DOTALL) for name in ("answer", "calc", "python")}
TOOL_LINE = {"calculator": "Tool: write <calc>expression</calc> to get its value.",
             "python": "Tool: write <python>code</python> to run Python and see what it prints."}
TOOL_LINE_COMPACT = {"calculator": "Tool: <calc></calc>", "python": "Tool: <python></python>"}
MAX_OBSERVATION_CHARS = 200


def _problem(task: dict) -> dict:
    kind = task.get("problem", "countdown")
    args = dict(seed=int(task.get("seed", 0)), level=int(task.get("level", 1)), index=int(task["index"]),
                template="answer")
    if kind == "countdown":
        from rlx.data.countdown import generate_example
    elif kind == "arithmetic":
        from rlx.data.arithmetic import generate_example
    else:
        raise ValueError(f"tool task: problem must be 'countdown' or 'arithmetic', got {kind!r}")
    return generate_example(**args)


def calculate(expr: str) -> str:
    """The calculator's answer to `expr`: "= VALUE" (an integer, or p/q) or "error: ..."."""
    from rlx.rewards.safe_eval import SafeEvalError, evaluate
    try:
        v = evaluate(expr.strip()).value
    except SafeEvalError as e:
        return f"error: {e}"[:MAX_OBSERVATION_CHARS]
    return f"= {v.numerator}" if v.denominator == 1 else f"= {v.numerator}/{v.denominator}"


class ToolMath:
    """`reset(task, seed)` with task {"index" (the seed key), "problem", "level", "seed",
    "tool" (calculator | python, default calculator), "max_steps", "timeout_s", "template"}."""
    TASK_KEYS = ("index", "problem", "level", "seed", "tool", "max_steps", "timeout_s", "template", "expert")
    SEED_KEY = "index"

    def reset(self, task: dict, seed: int) -> str:
        task = {"index": seed, **task}
        self.example = _problem(task)
        self.tool = task.get("tool", "calculator")
        if self.tool not in TOOL_LINE:
            raise ValueError(f"tool task: tool must be one of {sorted(TOOL_LINE)}, got {self.tool!r}")
        self.max_steps = int(task.get("max_steps", 4))
        self.timeout_s = float(task.get("timeout_s", 5.0))
        template = task.get("template", "answer")
        if template not in ("answer", "compact"):
            raise ValueError(f"tool task: template must be 'answer' or 'compact', got {template!r}")
        self.expert = task.get("expert", "solution")
        if self.expert not in ("solution", "search"):
            raise ValueError(f"tool task: expert must be 'solution' or 'search', got {self.expert!r}")
        if self.expert == "search" and len(self.example.get("numbers", ())) != 2:
            raise ValueError("tool task: expert='search' needs Countdown problems with two numbers (level 1)")
        self.calls: list[str] = []
        self.last_value = None
        self.steps = 0
        self.done = False
        if template == "compact":
            from rlx.data.templates import render
            return f"{render(dict(self.example), 'compact')['prompt']}\n{TOOL_LINE_COMPACT[self.tool]}"
        return f"{self.example['prompt']}\n{TOOL_LINE[self.tool]}"

    @property
    def initial_state_id(self) -> int:
        return self.state_id()

    def state_id(self) -> int:
        return zlib.crc32("\x00".join(self.calls).encode())

    def _score(self, text: str) -> float:
        from rlx.rewards import get_task
        spec = get_task(self.example["task"])
        comps = spec.checker(text, self.example)
        return float(comps[spec.component_names.index(spec.success_component)] >= spec.success_value)

    def step(self, action: str) -> StepResult:
        if self.done:
            raise RuntimeError("tool task: step() after the episode ended; reset() first")
        self.steps += 1
        reward, valid = 0.0, True
        answer = _TAG["answer"].search(action)
        call = None if answer else next(((name, m.group(1)) for name in ("calc", "python")
                                         if (m := _TAG[name].search(action))), None)
        if answer:
            reward, self.done = self._score(answer.group(0)), True
            obs = "correct" if reward else "wrong"
        elif call and (call[0] == "calc") == (self.tool == "calculator"):
            self.calls.append(" ".join(call[1].split()))
            obs = calculate(call[1]) if call[0] == "calc" else self._python(call[1])
            self.last_value = obs
        else:
            valid = False
            tag = "<calc>" if self.tool == "calculator" else "<python>"
            obs = f"Call the tool ({tag}) or answer with <answer></answer>."
        if self.steps >= self.max_steps:
            self.done = True
        return StepResult(obs, reward, self.done, {"state_id": self.state_id(), "valid_action": valid})

    def _goal(self) -> str:
        """What a right tool call shows: "= target" (Countdown) or "= answer" (arithmetic)."""
        ex = self.example
        return f"= {ex['target']}" if ex["task"] == "countdown" else f"= {ex['answer']}"

    def _call(self, expr: str) -> str:
        return f"<calc>{expr}</calc>" if self.tool == "calculator" else f"<python>print({expr})</python>"

    def expert_action(self) -> str:
        goal = self._goal() if self.tool == "calculator" else self._goal()[2:]
        if self.calls and self.last_value == goal:
            if self.example["task"] != "countdown":           # arithmetic: the value is the answer
                return f"<answer>{self.example['answer']}</answer>"
            expr = self.calls[-1] if self.tool == "calculator" else self.calls[-1][len("print("):-1]
            return f"<answer>{expr}</answer>"
        if self.expert == "search":
            a, b = self.example["numbers"]
            tried = set(self.calls)
            for expr in (f"{a}+{b}", f"{a}*{b}", f"{a}-{b}", f"{b}-{a}", f"{a}/{b}", f"{b}/{a}"):
                if (expr if self.tool == "calculator" else f"print({expr})") not in tried:
                    return self._call(expr)
        sol = self.example["answer"] if self.example["task"] == "countdown" else self.example["expression"]
        return self._call(sol)

    def random_action(self, rng) -> str:
        ex = self.example
        nums = [str(x) for x in (ex["numbers"] if ex["task"] == "countdown" else ex["operands"])]
        i, j = rng.choice(len(nums), size=2, replace=False) if len(nums) > 1 else (0, 0)
        return self._call(f"{nums[i]}{'+-*/'[rng.integers(4)]}{nums[j]}")

    def _python(self, code: str) -> str:
        from rlx.envs.sandbox import run_python
        r = run_python(code, timeout_s=self.timeout_s, memory_mb=256, max_output_bytes=4096)
        text = r.stdout.strip() if r.ok else f"error: {r.error}"
        return (text or "(no output)")[:MAX_OBSERVATION_CHARS]
