"""GiGPO on a tool-use task: Countdown with a calculator, a tiny model, CPU, minutes.

Each task is a Countdown problem of rlx's generator (level 1: two numbers 1-10, e.g.
"Using 4 10 make 40:"); the model may call the calculator (`<calc>10*4</calc>` -> "= 40")
before it answers (`<answer>10*4</answer>`: reward 1 if right, the episode ends), within
4 turns (`rlx.envs.tools.ToolMath`). Tool output is observation: loss mask 0. The warm
start imitates an expert that checks the known solution with the calculator and answers
once it shows the target, with random calls mixed in; GiGPO's anchor states are the
sequences of calls made so far. Greedy success on 64 held-out problems is logged at step
0 and at the end. (The calculator runs in-process: rlx's safe evaluator; the Python tool
of `--config.env.task_kwargs.tool=python` runs each call in `rlx.envs.sandbox`.)

The warm start imitates the trial-and-check expert (task option expert="search": a+b,
a*b, a-b, b-a, a/b, b/a with the calculator, answer when the target shows; 67% success
within the 3-turn budget, which RL could beat by picking the operation from the target).
Measured (2 CPU cores, seed 0): it does NOT learn at this size — the tiny character
model does not learn to copy the numbers into its calls (after 150 steps it writes
"<calc>1+1</calc>" whatever the numbers),
greedy success 0.000 -> 0.000 after 40 steps with 150 or 500 warm-start steps. Use it
with a real policy (`--config.model.source=hf --config.model.hf_path=...`, whose chat
template `rlx.envs.chat` applies).
"""

from configs import gigpo_gridworld


def get_config():
    c = gigpo_gridworld.get_config()
    c.name = "gigpo_tool_countdown"
    c.env.name = "tool_math"
    c.env.task_kwargs = {"problem": "countdown", "level": 1, "tool": "calculator", "template": "compact",
                         "max_steps": 3, "expert": "search"}
    c.env.train_tasks = 5000
    c.env.max_turns = 3
    c.env.max_turn_tokens = 20            # "<calc>" + 5 characters + "</calc>" + EOS
    c.env.max_prompt_tokens = 44          # BOS + "Using 10 10 make 100:\nTool: <calc></calc>"
    c.env.max_total_tokens = 96           # 3 turns x (20 + a short observation)
    c.sft.steps = 150                     # the call syntax is longer to learn than a move word
    return c
