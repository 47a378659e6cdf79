"""The default experiment with a LoRA policy: the same SFT warm start of the tiny model,
then GRPO trains rank-8 adapters on every linear layer (q,k,v,o,gate,up,down) of the
frozen base. The reference policy, if any (`rl.kl_coef > 0`), is the base itself.

LoRA needs a larger learning rate than full fine-tuning (TRL's "LoRA without regret":
about 10x the full-FT rate): 2e-3 here against quickstart's 2e-4.
"""

from configs import quickstart


def get_config():
    c = quickstart.get_config()
    c.name = "quickstart_lora"
    c.model.lora.rank = 8
    c.model.lora.alpha = 16.0
    c.model.lora.targets = "q,k,v,o,gate,up,down"
    c.optimizer.lr = 2e-3
    return c
