"""rlx.envs.episodes: multi-turn episodes built token-in / token-out.

References: the environment's own observations (known here) tokenized by the test's
encoder, the sampler's prompts of each turn (recorded), and the trainer's
`completion_logprobs` over the final token sequence (an independent forward)."""

import jax
import numpy as np
import pytest

from rlx import models, sampling
from rlx.envs import EnvPool, StepResult
from rlx.envs import episodes as E

V = 40
STOP = 5


def encode(text):                       # characters -> ids 6..39 (5 is the stop token, 0 pad)
    return [6 + (ord(ch) % (V - 6)) for ch in text]


def decode(ids):
    return "".join(chr(97 + i % 26) for i in ids)


class Counter:
    """Observation "o<k>" after turn k; done after `turns` turns with reward 1; the state
    id is the turn count; action text "bad..." is invalid; "crash" raises."""
    turns = 3

    def reset(self, task, seed):
        self.k = 0
        self.turns = task.get("turns", 3)
        return f"start{seed}"

    @property
    def initial_state_id(self):
        return 100

    def step(self, action):
        if task_crash[0] and self.k == 1:
            raise RuntimeError("env broke")
        self.k += 1
        done = self.k >= self.turns
        return StepResult(f"o{self.k}", 1.0 if done else 0.0, done,
                          {"state_id": self.k, "valid_action": not action.startswith("b")})


task_crash = [False]


@pytest.fixture(scope="module")
def model():
    cfg = models.tiny(V, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                      family="qwen2")
    return cfg, models.init_params(cfg, jax.random.key(0))


SCFG = sampling.SamplerConfig(max_prompt_len=8, max_new_tokens=4, temperature=1.0, stop_ids=(STOP,), pad_id=0)
BUDGET = E.EpisodeBudget(max_turns=4, max_turn_tokens=4, max_prompt_tokens=8, max_total_tokens=40)


def _run(model, tasks, budget=BUDGET, record=None, kv_carry=True, env=None, scfg=SCFG, chunk=32):
    cfg, params = model
    pool = EnvPool(env or Counter, workers=2, step_timeout_s=30)
    real = sampling.generate

    def spy(params, cfg, scfg, state, toks, mask, G, **kw):
        if record is not None:
            record.append([np.asarray(t)[np.asarray(m)].tolist() for t, m in zip(toks, mask)])
        return real(params, cfg, scfg, state, toks, mask, G, **kw)

    sampling.generate = spy
    try:
        eps, _ = E.run_episodes(params, cfg, scfg, sampling.init_state(jax.random.key(1)), pool, tasks,
                                list(range(len(tasks))), encode_prompt=encode, encode_observation=encode,
                                decode=decode, budget=budget, kv_carry=kv_carry,
                                prefill_chunk=chunk)
    finally:
        sampling.generate = real
        pool.close()
    return eps


def test_turns_are_appended_token_in_token_out(model):
    task_crash[0] = False
    prompts = []       # the re-prefill path calls the sampler with each turn's whole history
    eps = _run(model, [{"turns": 3}, {"turns": 2}], record=prompts, kv_carry=False)
    assert eps.num_turns.tolist() == [3, 2] and eps.end_reason.tolist() == [E.DONE, E.DONE]
    assert eps.returns.tolist() == [1.0, 1.0]
    for i in range(2):
        first = encode(f"start{i}")
        assert eps.prompt_tokens[i][eps.prompt_mask[i]].tolist() == first
        seq = eps.tokens[i][eps.mask[i]].tolist()
        # The sequence: model turn k (loss mask 1) then the observation "o<k+1>" (0), except
        # after the last turn. Model tokens end at the stop token or after 4 tokens.
        pos = 0
        for k in range(eps.num_turns[i]):
            n = int((eps.loss_mask[i] & (eps.turn_of_token[i] == k)).sum())
            turn = seq[pos:pos + n]
            assert eps.loss_mask[i, pos:pos + n].all() and 1 <= n <= 4
            assert (turn[-1] == STOP) or n == 4
            assert eps.texts[i][k] == decode(turn)
            pos += n
            if k < eps.num_turns[i] - 1:
                # A turn cut at 4 tokens is closed with the stop token (context), then "o<k+1>".
                obs = ([] if turn[-1] == STOP else [STOP]) + encode(f"o{k+1}")
                assert seq[pos:pos + len(obs)] == obs and not eps.loss_mask[i, pos:pos + len(obs)].any()
                pos += len(obs)
        assert pos == len(seq)
        # Each turn's prompt is an exact token prefix of the next one and of the final sequence.
        full = first + seq
        hist = [p[i] for p in prompts[:eps.num_turns[i]]]
        assert hist[0] == first
        for a, b in zip(hist, hist[1:] + [full]):
            assert b[:len(a)] == a and len(b) > len(a)
    # State ids: the state each action was taken in (100 = the reset state, then the count).
    assert eps.turn_state_ids[0, :3].tolist() == [100, 1, 2] and eps.turn_state_ids[1, :2].tolist() == [100, 1]
    assert eps.turn_exists.tolist() == [[True, True, True, False], [True, True, False, False]]


def test_sampler_logprobs_equal_the_trainers_over_the_final_sequence(model):
    task_crash[0] = False
    cfg, params = model
    eps = _run(model, [{"turns": 3}, {"turns": 4}, {"turns": 1}])
    got = models.completion_logprobs(params, cfg, eps.prompt_tokens, eps.prompt_mask, eps.tokens, eps.mask)
    got = np.asarray(got)
    np.testing.assert_allclose(got[eps.loss_mask], eps.logprobs[eps.loss_mask], atol=2e-5)
    assert (eps.logprobs[~eps.loss_mask] == 0).all()


class Alternating(Counter):
    """Observations of 15 and 1 characters in turn, out of phase between seeds: the longest
    observation of a turn alternates between episodes, so the carried cache fills with
    masked columns faster than any episode's own tokens grow (its re-prefill fallback)."""

    def reset(self, task, seed):
        self.seed = seed
        return super().reset(task, seed)

    def step(self, action):
        r = super().step(action)
        return StepResult("x" * (15 if (self.k + self.seed) % 2 else 1), r.reward, r.done, r.info)


@pytest.mark.parametrize("temperature,chunk", [(0.0, 4), (1.0, 32), (1.0, 0)])
def test_the_carried_kv_cache_gives_the_episodes_of_re_prefilling(model, temperature, chunk, monkeypatch):
    # Same tokens (same randomness: row keys per turn), log-probs equal to rounding; the
    # carried cache prefills the first prompts once and, with Alternating, falls back to a
    # compact re-prefill when the next turn would not fit. Observations enter the cache
    # in chunks of 4 (Alternating's 16-token observations: 4 forwards, partial chunks for
    # the 2-token ones), in one chunk of 32, or one decode step per token (0).
    task_crash[0] = False
    opened = []
    real = E.multiturn.open_cache

    def spy(*a, **kw):
        opened.append(a[3].shape[1])          # the width prefilled
        return real(*a, **kw)

    monkeypatch.setattr(E.multiturn, "open_cache", spy)
    scfg = SCFG.replace(temperature=temperature)
    for env, tasks in ((Counter, [{"turns": 3}, {"turns": 4}, {"turns": 1}]),
                       (Alternating, [{"turns": 8}, {"turns": 8}])):
        opened.clear()
        budget = E.EpisodeBudget(max_turns=8, max_turn_tokens=4, max_prompt_tokens=8, max_total_tokens=80)
        a = _run(model, tasks, budget=budget, env=env, scfg=scfg, chunk=chunk)
        b = _run(model, tasks, budget=budget, env=env, scfg=scfg, kv_carry=False)
        for k in ("prompt_tokens", "prompt_mask", "tokens", "mask", "loss_mask", "turn_of_token", "end_reason"):
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=2e-5)
        if env is Counter:
            assert opened == [8]                            # the first prompts, once
        else:
            assert opened[0] == 8 and 8 + 80 in opened[1:]  # then a compact re-prefill of the histories
        cfg, params = model
        got = np.asarray(models.completion_logprobs(params, cfg, a.prompt_tokens, a.prompt_mask, a.tokens, a.mask))
        np.testing.assert_allclose(got[a.loss_mask], a.logprobs[a.loss_mask], atol=2e-5)


def test_budgets_and_env_failures_end_episodes(model):
    task_crash[0] = False
    short = E.EpisodeBudget(max_turns=2, max_turn_tokens=4, max_prompt_tokens=8, max_total_tokens=40)
    eps = _run(model, [{"turns": 5}], budget=short)
    assert eps.num_turns.tolist() == [2] and eps.end_reason.tolist() == [E.MAX_TURNS]
    tight = E.EpisodeBudget(max_turns=4, max_turn_tokens=4, max_prompt_tokens=8, max_total_tokens=8)
    eps = _run(model, [{"turns": 5}], budget=tight)
    assert eps.end_reason.tolist() == [E.TRUNCATED] and eps.mask.sum() <= 8
    task_crash[0] = True
    eps = _run(model, [{"turns": 5}])
    assert eps.end_reason.tolist() == [E.ENV_ERROR] and eps.num_turns.tolist() == [2] and eps.returns[0] == 0
    task_crash[0] = False
    with pytest.raises(ValueError, match="max_turn_tokens 9 exceeds max_total_tokens 8"):
        E.EpisodeBudget(max_turn_tokens=9, max_total_tokens=8)


def _chat_tokenizer(template):
    from rlx.models.tokenizer import build_tokenizer
    tok = build_tokenizer()
    tok.chat_template = template
    return tok


# ChatML-like, with rlx's <bos> / <eos> as the turn markers (<eos> ends a turn).
CHATML = ("{% for m in messages %}<bos>{{ m['role'] }}\n{{ m['content'] }}<eos>\n{% endfor %}"
          "{% if add_generation_prompt %}<bos>assistant\n{% endif %}")
# Rewrites history: earlier assistant turns lose their reasoning (as Qwen3's template does).
STRIPPING = ("{% for m in messages %}<bos>{{ m['role'] }}\n"
             "{% if m['role'] == 'assistant' and not loop.last %}{{ m['content'].split('</think>')[-1] }}"
             "{% else %}{{ m['content'] }}{% endif %}<eos>\n{% endfor %}"
             "{% if add_generation_prompt %}<bos>assistant\n{% endif %}")


def test_chat_template_encoders_append_and_refuse_rewriting_templates():
    from rlx.envs.chat import chat_encoders
    tok = _chat_tokenizer(CHATML)
    enc_p, enc_o = chat_encoders(tok, system="be brief")
    ids = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    bos, eos = tok.bos_token_id, tok.eos_token_id
    # By hand from the template: the first prompt, then after the model's "<eos>" the
    # rest of its line, the user turn and the next generation prompt.
    assert enc_p("obs1") == ([bos] + ids("system\nbe brief") + [eos] + ids("\n") + [bos] + ids("user\nobs1")
                             + [eos] + ids("\n") + [bos] + ids("assistant\n"))
    assert enc_o("obs2") == ids("\n") + [bos] + ids("user\nobs2") + [eos] + ids("\n") + [bos] + ids("assistant\n")
    # Appending = re-rendering the whole conversation: prompt + reply + <eos> + observation.
    conv = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "obs1"},
            {"role": "assistant", "content": "go|left"}, {"role": "user", "content": "obs2"}]
    full = list(tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=True)["input_ids"])
    assert enc_p("obs1") + ids("go|left") + [eos] + enc_o("obs2") == full
    with pytest.raises(ValueError, match="does not preserve prefixes"):
        chat_encoders(_chat_tokenizer(STRIPPING))
    with pytest.raises(ValueError, match="no chat template"):
        chat_encoders(_chat_tokenizer(None))
