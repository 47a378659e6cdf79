"""`data.chat_template=True`: single-turn prompts rendered by the tokenizer's chat template."""

import jax
import pytest
from helpers.engine_configs import one_step_config

from rlx.models.tokenizer import build_tokenizer
from rlx.train.engine import Engine
from rlx.train.kinds.base import StepInputs
from rlx.train.rollout import to_host

# ChatML-like, with rlx's <bos> / <eos> as the turn markers.
CHATML = ("{% for m in messages %}<bos>{{ m['role'] }}\n{{ m['content'] }}<eos>\n{% endfor %}"
          "{% if add_generation_prompt %}<bos>assistant\n{% endif %}")


@pytest.fixture
def chat_tokenizer_dir(tmp_path):
    tok = build_tokenizer()
    tok.chat_template = CHATML
    tok.save_pretrained(str(tmp_path / "tok"))
    return str(tmp_path / "tok")


def test_prompts_follow_the_chat_template(tmp_path, chat_tokenizer_dir):
    c = one_step_config("quickstart", tmp_path / "run", f"model.tokenizer_path={chat_tokenizer_dir}",
                        "data.chat_template=True", "data.system=Be brief.", "sampler.max_prompt_len=64",
                        "rl.prompts_per_step=2", "rl.group_size=2", "rl.minibatches=1")
    e = Engine(c)
    try:
        # The template rendered by hand for [system, user] + the generation prompt.
        ids = e.ctx.encode_prompt("2+3=")
        assert e.tokenizer.decode(ids) == "<bos>system\nBe brief.<eos>\n<bos>user\n2+3=<eos>\n<bos>assistant\n"
        with e.sharding():
            r = e.kind.collect(StepInputs(params=e.state.params, reference=None, critic=None,
                                          key=jax.random.key(0), step=0, curriculum=None))
        toks, mask = to_host(r.batch.prompt_tokens), to_host(r.batch.prompt_mask)
        text = e.tokenizer.decode(toks[0][mask[0]].tolist())
        assert text.startswith("<bos>system\nBe brief.<eos>\n<bos>user\n") and text.endswith("<eos>\n<bos>assistant\n")
        assert r.metrics["prompts/truncated"] == 0
    finally:
        e.close()


def test_a_tokenizer_without_a_template_is_refused(tmp_path):
    with pytest.raises(ValueError, match="config.data.chat_template: the tokenizer has no chat template"):
        Engine(one_step_config("quickstart", tmp_path / "run", "data.chat_template=True"))
