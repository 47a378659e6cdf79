"""Chat-template token encoders for multi-turn episodes, with a prefix check.

    encode_prompt, encode_observation = chat_encoders(tokenizer, system="You play a grid game.")
    run_episodes(..., encode_prompt=encode_prompt, encode_observation=encode_observation, ...)

The first prompt is the tokenizer's chat template (`apply_chat_template`) over
[system?, user: observation] with the generation prompt. A later observation becomes the
tokens the template puts between the end of an assistant turn (its stop token: the
tokenizer's EOS, or `stop_id`) and the next generation prompt — read off the template
by rendering a probe conversation with and without the new user turn. That is only
token-in / token-out if the template renders a conversation's earlier turns the same
whatever follows them; templates that do not (Qwen3's, which strips the <think> part
of earlier assistant turns, or any that rewrites history) are refused with a ValueError
when the encoders are built: re-rendering them each turn would train on a sequence the
model never saw (verl's "PPO not even converged" failure).
"""

from __future__ import annotations

PROBE_USER = "probe observation"
# The probe reply holds a reasoning block, so that templates that strip reasoning from
# earlier assistant turns (Qwen3's) are caught.
PROBE_REPLY = "<think>probe reasoning</think>probe reply"


def _ids(out) -> list[int]:
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return [int(t) for t in out]


def chat_encoders(tokenizer, *, system: str | None = None, stop_id: int | None = None):
    """(encode_prompt(text) -> ids, encode_observation(text) -> ids) from the tokenizer's
    chat template; a ValueError if it has none, if the assistant turn does not end with
    the stop token, or if the template does not preserve prefixes."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat_encoders: the tokenizer has no chat template (tokenizer.chat_template)")
    stop = tokenizer.eos_token_id if stop_id is None else int(stop_id)
    if stop is None:
        raise ValueError("chat_encoders: no stop token (the tokenizer has no EOS; pass stop_id)")
    head = [{"role": "system", "content": system}] if system else []

    def render(msgs, gen):
        return _ids(tokenizer.apply_chat_template(msgs, add_generation_prompt=gen, tokenize=True))

    def user(text):
        return {"role": "user", "content": text}

    prompt = render(head + [user(PROBE_USER)], True)
    done = render(head + [user(PROBE_USER), {"role": "assistant", "content": PROBE_REPLY}], False)
    if done[:len(prompt)] != prompt:
        raise ValueError("chat_encoders: the chat template does not preserve prefixes: the generation prompt of "
                         "a conversation is not a prefix of the conversation with the assistant's reply")
    reply = done[len(prompt):]
    if stop not in reply:
        raise ValueError(f"chat_encoders: the template's assistant turn does not contain the stop token {stop} "
                         f"(the turn the model must end); pass the template's end-of-turn id as stop_id")
    base = done[:len(prompt) + reply.index(stop) + 1]       # up to the model's stop token

    def encode_prompt(text: str) -> list[int]:
        return render(head + [user(text)], True)

    def encode_observation(text: str) -> list[int]:
        nxt = render(head + [user(PROBE_USER), {"role": "assistant", "content": PROBE_REPLY}, user(text)], True)
        if nxt[:len(base)] != base:
            raise ValueError("chat_encoders: the chat template does not preserve prefixes: it renders an earlier "
                             "assistant turn differently once a user turn follows (e.g. it strips reasoning); "
                             "multi-turn episodes need a template whose history is append-only")
        return nxt[len(base):]

    encode_observation("check")                  # refuse a bad template now, not mid-rollout
    return encode_prompt, encode_observation
