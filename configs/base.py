"""Base config: every field of an rlx experiment, with its meaning.

Fork it: a config file defines `get_config()` that starts from `base.get_config()` and
changes what differs (see configs/grpo.py). Override from the command line:

    python -m rlx.train --config=configs/grpo.py --config.rl.group_size=8

An unknown key or an invalid value fails at start-up with a message naming it
(`rlx.train.config.validate`). Free-form keyword dicts (`*_kwargs`) are checked
against the signature of the function they are passed to.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "base"                      # run name (used in logs and the default run_dir)
    c.run_dir = ""                       # output dir; "" = runs/<name>
    c.seed = 0                           # master seed: params init, sampling, data order
    c.init_seed = -1                     # seed of the starting policy alone (params init, generated
    #                                      training problems, SFT demonstrations); -1 = `seed`. Fix it
    #                                      and vary `seed` to vary only the RL randomness (sampling,
    #                                      data order) from one warm start (experiments/study.py)
    c.plan_topology = ""                 # the hardware this config is sized for, e.g. "v5e-8"
    #                                      (`python -m rlx.plan`'s default --topology; "" = local)

    # ------------------------------------------------------------------ model
    c.model = ml_collections.ConfigDict()
    c.model.source = "tiny"              # "tiny" (built-in random model) or "hf" (local HF dir)
    c.model.hf_path = ""                 # local dir with config.json + *.safetensors (source="hf")
    c.model.tokenizer_path = ""          # local HF tokenizer dir; "" = hf_path, or the built-in one
    c.model.init_from = ""               # warm start: an rlx checkpoint dir or HF dir ("" = none)
    # Architecture (source="tiny": the model built; source="hf": what planning uses when
    # hf_path has no config.json here, and what the HF config.json must agree with).
    c.model.hidden_size = 64             # width D
    c.model.num_layers = 2               # depth
    c.model.num_heads = 4                # query heads H
    c.model.num_kv_heads = 2             # KV heads N (GQA)
    c.model.intermediate_size = 128      # SwiGLU hidden size F
    c.model.vocab_size = 0               # vocabulary V (0 = the tokenizer's size)
    c.model.head_dim = 0                 # Dh (0 = hidden_size / num_heads)
    c.model.family = "qwen2"             # qwen2 (q/k/v biases) | qwen3 (QK-norm) | llama
    c.model.rope_theta = 10000.0         # RoPE base
    c.model.rms_norm_eps = 1e-6
    c.model.tie_embeddings = True        # output projection = embedding^T
    c.model.max_position_embeddings = 0  # 0 = max(512, prompt + completion budget)
    # Numerics and memory.
    c.model.dtype = "auto"               # compute dtype of activations and the KV cache: auto
    #                                      (bfloat16 on TPU/GPU, float32 on CPU) | float32 | bfloat16
    c.model.param_dtype = "float32"      # master weights (optimizer updates) dtype
    c.model.remat = "none"               # backward recompute per layer: none | full | dots_saveable
    c.model.attention = "auto"           # attention kernels: auto (splash on TPU, cudnn on GPU, xla
    #                                      on CPU) | xla | cudnn | splash (rlx.models.attention)
    c.model.unroll_layers = False        # unroll the scan over layers (faster backward on CPU)
    c.model.vocab_chunk = -1             # log-probs over vocabulary chunks of this many columns
    #                                      (never [B,T,V] in f32): -1 = auto (8192 when V >= 32768,
    #                                      else off), 0 = off
    # LoRA / QLoRA (rlx.models.lora): train low-rank adapters on a frozen base; rank 0 = off
    # (full fine-tuning). The reference policy is the base with the adapters off (no copy);
    # checkpoints hold the adapters; the base comes from model.source / init_from / SFT.
    c.model.lora = ml_collections.ConfigDict()
    c.model.lora.rank = 0                # r (TRL's "LoRA without regret": 1..32 on all linear layers)
    c.model.lora.alpha = 32.0            # the delta is scaled by alpha / rank (PEFT's scaling)
    c.model.lora.targets = "q,k,v,o,gate,up,down"   # adapted matrices, comma-separated
    c.model.lora.base_quant = "none"     # frozen base storage: none | int8 | nf4 (QLoRA; qwix)
    c.model.lora.sampler = "adapters"    # decode with the adapters applied per token, as the trainer
    #                                      does (adapters), or folded into the weights once per
    #                                      sampling call (merge; rounds small deltas away in bf16)

    # ---------------------------------------------------------------- sampler
    c.sampler = ml_collections.ConfigDict()
    c.sampler.max_prompt_len = 64        # prompts are left-padded/truncated to this many tokens
    c.sampler.max_new_tokens = 32        # completion budget T (tokens)
    c.sampler.temperature = 1.0          # sampling temperature (0 = greedy)
    c.sampler.top_k = 0                  # 0 = no top-k filtering
    c.sampler.top_p = 1.0                # 1.0 = no nucleus filtering
    c.sampler.rows_per_call = 0          # rows (prompts x G) per compiled sampler call: bounds the
    #                                      KV cache to rows_per_call x (prompt + budget) columns;
    #                                      a multiple of rl.group_size (0 = all rows in one call)
    c.sampler.kv_cache = "dense"         # dense | paged (shared prompt pages; TPU paged-attention
    #                                      kernel) | ragged (a cache row per slot: XLA on CPU/GPU);
    #                                      paged / ragged decode with continuous batching
    c.sampler.slots = 0                  # rows decoding at once (paged / ragged; 0 = all rows)
    c.sampler.page_size = 16             # tokens per KV page (paged)
    c.sampler.decode_sharding = "params"  # where decode keeps the weights on a mesh: params (as
    #                                      trained) | replicated | tensor (MLP + vocabulary over
    #                                      every chip; rlx.sampling.decode_sharding)

    # ----------------------------------------------------------------- RL algorithm
    c.rl = ml_collections.ConfigDict()
    c.rl.algorithm = "grpo"              # label for logs/plots (the pieces below define it)
    c.rl.estimator = "grpo"              # advantage estimator name (rlx.advantages.names())
    c.rl.estimator_kwargs = ml_collections.ConfigDict()  # its keyword args, e.g. {"ddof": 1}
    c.rl.loss = "ppo_clip"               # policy loss name (rlx.losses.names())
    c.rl.loss_kwargs = ml_collections.ConfigDict({"eps_low": 0.2, "eps_high": 0.2})
    c.rl.agg = "token-mean"              # token-mean | seq-mean-token-sum | seq-mean-token-mean
                                         # | seq-mean-token-sum-norm
    c.rl.kl_coef = 0.0                   # KL(pi || pi_ref) coefficient (0 = no reference model)
    c.rl.kl_kind = "k3"                  # k1 | k2 | k3 | abs
    c.rl.kl_placement = "loss"           # "loss" (added to the loss) | "reward" (folded into rewards)
    c.rl.kl_agg = ""                     # the KL term's own aggregation ("" = rl.agg; SPO's trainer:
    #                                      seq-mean-token-sum, `(k3 * mask).sum(1).mean()`)
    c.rl.whiten_scope = "batch"          # SPO advantages whitened over the "batch" (estimator), each
    #                                      "minibatch" or each "micro_batch" (update; SPO official)
    c.rl.entropy_coef = 0.0              # entropy bonus coefficient (loss -= c * H)
    c.rl.advantage_decomposition = False  # bnpo: one advantage per weighted reward component,
    #                                      averaged (BNPO's use_advantage_decomposition)
    c.rl.policy_temperature = 0.0        # the trained policy pi_T = softmax(logits / T): new, old and
    #                                      reference log-probs, ratio, KL, entropy (as verl, TRL and
    #                                      SPO train); 0 = sampler.temperature (1 when greedy);
    #                                      1.0 = the untempered trainer of rlx before 2026-12;
    #                                      preference losses (dpo, ...) always score at 1
    c.rl.group_size = 8                  # G samples per prompt
    c.rl.prompts_per_step = 8            # P prompts per RL step (batch B = P * G)
    c.rl.epochs = 1                      # passes over each batch (PPO epochs)
    c.rl.minibatches = 1                 # optimizer steps per epoch (batch split by whole groups)
    c.rl.micro_batches = 1               # gradient-accumulation chunks per minibatch (exact): any
    #                                      divisor of its rows for token-level losses, whole groups
    #                                      for group losses (DisCO, DRPO, TRPA)
    c.rl.dynamic_sampling = False        # DAPO: drop zero-variance groups, oversample to refill
    c.rl.max_sampling_rounds = 10        # dynamic sampling: generation rounds per step at most (DAPO 10)
    c.rl.gen_batch_multiple = 1          # dynamic sampling: a round samples this x prompts_per_step
    #                                      prompts (DAPO's gen_batch_size: 3 x the train batch)
    c.rl.dynamic_overflow = "discard"    # kept groups beyond the batch: "discard" (DAPO) | "recover"
    #                                      (Confucius3-Math's recent sample recovery: next batch first)
    c.rl.allow_partial_batch = False     # rounds ran out before the batch filled: False = skip the
    #                                      update (warning, metric dynamic/skipped; DAPO stops the
    #                                      run), True = train on the kept groups
    c.rl.overlong_cache = 0              # DAPO overlong shaping window L_cache in tokens (0 = off)
    c.rl.recompute_old_logprobs = False  # recompute log pi_old with the trainer (else sampler's);
    #                                      then sampler-vs-trainer agreement is logged (rollout/*)
    c.rl.rollout_correction = ml_collections.ConfigDict()   # sampler/trainer mismatch (needs the
    #                                      recomputed pi_old; rlx/losses/rollout_correction.py)
    c.rl.rollout_correction.is_level = "none"       # truncated IS: none | token | sequence
    c.rl.rollout_correction.is_threshold = 2.0      # its cap C (verl's rollout_is_threshold)
    c.rl.rollout_correction.rs_level = "none"       # masking: none | token | sequence | geometric
    c.rl.rollout_correction.rs_threshold = 2.0      # keep weights in [lower, this]
    c.rl.rollout_correction.rs_threshold_lower = 0.0   # 0 = 1 / rs_threshold
    c.rl.pad_multiple = 64               # trainer drops all-padding columns; widths rounded up to
    #                                      buckets pad_multiple x 2^k (and the full width): each
    #                                      (prompt, completion) bucket compiles once, e.g. at most
    #                                      4 x 7 update programs for 512 / 4096 (0 = fixed shapes)

    # ------------------------------------------------------------------ critic (PPO)
    # Used when rl.estimator is gae or egae: a value network (the policy's architecture,
    # initialized from it, plus a scalar head) trained on the GAE returns.
    c.critic = ml_collections.ConfigDict()
    c.critic.lr = 5e-5                   # critic Adam learning rate (constant)
    c.critic.value_clip = 0.2            # clipped value loss range eps_v
    c.critic.max_grad_norm = 1.0         # critic gradient clipping (0 = off)

    # ------------------------------------------------------------------ SPO (segment credit assignment)
    # Used when rl.estimator is spo_chain or spo_tree (rlx.train.spo).
    c.spo = ml_collections.ConfigDict()
    c.spo.threshold = 0.9                # low-probability token threshold (cutpoints, probability mask)
    c.spo.cutpoint_interval = 5          # chain: keep every k-th candidate cutpoint
    c.spo.num_cuts = 0                   # chain: at most this many cutpoints per response (static);
    #                                      0 = no cap (official): ceil(max_new_tokens / interval)
    c.spo.truncated_reward = "zero"      # chain: a response cut by the length budget scores "zero"
    #                                      (official unfinished penalty) | "task" (its task reward)
    c.spo.mc_samples = 9                 # chain: K continuations per cutpoint (9 GSM8K, 4 long CoT)
    c.spo.branching = (6, 6, 6)          # tree: children per node at each level
    c.spo.segment_len = 30               # tree: tokens per segment above the last level (30 GSM8K)
    c.spo.tree_mode = "rloo"             # tree: rloo (V(child) - V(parent)) | grpo (/ siblings' std)
    c.spo.train_edges = 64               # tree: edges drawn from the replay buffer per step
    c.spo.replay_capacity = 4096         # tree: edge replay buffer size
    c.spo.replay_max_age = 8             # tree: edges live this many iterations
    c.spo.replay_per_question = 32       # tree: at most this many edges per question per draw

    # ------------------------------------------------------------------ preference losses
    # Used when rl.loss is a preference loss (rlx.losses.preference_names(): dpo, ipo, ...).
    c.pref = ml_collections.ConfigDict()
    c.pref.source = "online"             # online: best vs worst of G policy samples (task reward);
                                         # offline: gold vs corrupted-answer completions (or pref.path)
    c.pref.path = ""                     # offline: local JSONL of {"prompt", "chosen", "rejected"}
    c.pref.average_logps = False         # token-mean instead of summed sequence log-probs

    # ------------------------------------------------------------------ optimizer
    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "adamw"           # adamw | adam | sgd
    c.optimizer.lr = 1e-5                # peak learning rate
    c.optimizer.schedule = "cosine"      # constant | cosine (warmup then cosine decay to end_lr)
    c.optimizer.warmup_steps = 0         # linear warmup optimizer steps
    c.optimizer.end_lr_ratio = 0.1       # cosine: final lr = end_lr_ratio * lr
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-8
    c.optimizer.weight_decay = 0.0
    c.optimizer.max_grad_norm = 1.0      # global-norm gradient clipping (0 = off)

    # ------------------------------------------------------------------ mesh
    c.mesh = ml_collections.ConfigDict()
    c.mesh.shape = (-1, 1, 1)            # (data, fsdp, tensor); one -1 = all remaining devices
    c.mesh.rules = "fsdp"                # logical-axis rules preset: fsdp | fsdp_tp
    c.mesh.auto_distributed = False      # TPU pod / SLURM: let jax.distributed find the cluster
    c.mesh.coordinator = ""              # explicit multi-process: host:port of process 0 ("" = single)
    c.mesh.num_processes = 1
    c.mesh.process_id = 0

    # ------------------------------------------------------------------ data
    c.data = ml_collections.ConfigDict()
    c.data.task = "arithmetic"           # arithmetic | countdown | knights_knaves | kk_files | gsm8k | math |
    #                                      jsonl (your own files, data.checker or reward.fn)
    c.data.levels = (1,)                 # difficulty levels (one data source per level)
    c.data.path = ""                     # local file/dir for file-backed tasks (gsm8k, math, jsonl, kk_files);
    #                                      math / jsonl: several files comma-separated, one source each
    c.data.prompt_field = "problem"      # math / jsonl: the JSONL field of the prompt (e.g. "question")
    c.data.answer_field = "answer"       # math / jsonl: the gold answer (a solution: its last \boxed{})
    c.data.checker = "math"              # jsonl: math (math-verify) | numeric | exact
    c.data.template = "compact"          # prompt template name of the task
    c.data.chat_template = False         # render prompts with the HF tokenizer's chat template
    #                                      ([system, user: prompt] + generation prompt)
    c.data.system = ""                   # its system prompt ("" = none)
    c.data.curriculum = "uniform"        # uniform | dump (UCB over sources)
    c.data.dump_c = 1.0                  # DUMP exploration constant c
    c.data.dump_tau = 0.1                # DUMP softmax temperature
    c.data.dump_window = 300             # DUMP window of recent |A| per source
    c.data.reward_workers = -1           # reward checker processes (hard deadline, parallel):
    #                                      -1 = one per CPU core (at most 4), 0 = in-process
    c.data.reward_time_limit_s = 1.0     # per-completion checker deadline (0 = none)
    c.data.reward_weights = ()           # weights of the task's reward components, e.g. (1.0, 1.0)
    #                                      = format + answer on arithmetic/gsm8k; () = the task's own
    c.data.eval_prompts = 64             # held-out prompts for accuracy before/after/during
    c.data.eval_seed = 12345             # seed of the held-out prompts

    # ------------------------------------------------------------------ the user's own reward
    c.reward = ml_collections.ConfigDict()
    c.reward.fn = ""                     # "pkg.module:fn" or "file.py:fn", fn(completion, example) ->
    #                                      float | tuple; "" = the data task's checker (rlx/rewards/user.py)
    c.reward.component_names = ("answer",)   # names of the values a tuple-returning fn gives
    c.reward.success_value = 1.0         # success: the first component reaches this

    # ------------------------------------------------------------------ environment (multi-turn agents)
    # Used when env.name names an environment (rlx.envs.ENVS): the run trains on multi-turn
    # episodes (rlx.train.kinds.episodes) instead of the data.* prompts: rl.prompts_per_step
    # tasks x rl.group_size episodes per step; rl.estimator = gigpo, reinforce_pp or a group
    # estimator over episode scores (grpo, rloo, ...). The sampler.* lengths do not apply
    # (the budgets below do); temperature / top-k / top-p do.
    c.env = ml_collections.ConfigDict()
    c.env.name = ""                      # "" (single-turn data.* tasks) | gridworld | sokoban
    c.env.task_kwargs = ml_collections.ConfigDict()  # the task dict, e.g. {"size": 4, "hole_prob": 0.2}
    c.env.train_tasks = 1000             # training tasks: the env's seed key 0 .. N-1, drawn uniformly
    c.env.eval_tasks = 64                # held-out tasks (seed key eval_seed + i): greedy success rate
    c.env.eval_seed = 1_000_000          # first held-out seed (>= train_tasks)
    c.env.max_turns = 8                  # model turns per episode at most
    c.env.max_turn_tokens = 8            # new tokens per model turn
    c.env.max_prompt_tokens = 64         # the first prompt (the first observation)
    c.env.max_total_tokens = 256         # everything after the first prompt (turns + observations)
    c.env.invalid_action_penalty = 0.1   # subtracted from a turn's reward when its action does not
    #                                      parse (verl-agent's invalid-action penalty; 0 = off)
    c.env.workers = 4                    # threads stepping the environments
    c.env.step_timeout_s = 30.0          # an env step past this ends its episode (reward 0)
    c.env.system = ""                    # system prompt (tokenizers with a chat template)
    c.env.replay = 0                     # ARPO replay: successes kept per training task (0 = off)
    c.env.kv_carry = True                # carry the KV cache across turns (prefill only the new
    #                                      observation tokens); False: re-prefill every turn
    c.env.prefill_chunk = 32             # kv_carry: observation tokens per forward into the cache
    #                                      (chunked prefill; 0 = one decode step per token)

    # ------------------------------------------------------------------ SFT warm start
    c.sft = ml_collections.ConfigDict()
    c.sft.steps = 0                      # supervised steps on generated demonstrations (0 = none)
    c.sft.batch_size = 32
    c.sft.lr = 1e-3

    # ------------------------------------------------------------------ loop
    c.train = ml_collections.ConfigDict()
    c.train.steps = 100                  # RL steps (sample -> reward -> advantage -> update)
    c.train.eval_every = 0               # evaluate greedy accuracy every N steps (0 = start/end)
    c.train.forward_rows = 64            # rows per chunk of the forwards outside the policy update
    #                                      (old / reference log-probs, critic values) and per SFT
    #                                      micro-batch, run as a loop inside one jit (0 = whole batch)
    c.train.max_nonfinite_steps = 3      # stop after this many steps in a row whose update was
    #                                      skipped for a non-finite loss / gradient (0 = never)
    c.train.compile_cache = "auto"       # persistent XLA compilation cache dir: auto =
    #                                      $RLX_COMPILE_CACHE or ~/.cache/rlx/jax; "" = off (a cache
    #                                      already configured in JAX, e.g. by the tests, wins)

    # ------------------------------------------------------------------ checkpoints
    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.interval = 50           # save every N steps (0 = only at the end)
    c.checkpoint.keep = 3                # keep the last K checkpoints
    c.checkpoint.async_save = True       # Orbax async save (atomic either way)
    c.checkpoint.export_hf = False       # export the final policy: run_dir/hf (merged) | run_dir/peft
    c.checkpoint.export_format = "merged"  # merged (an HF model) | peft (LoRA runs: adapter dir
    #                                        + the base it applies to); any step: python -m rlx.export

    # ------------------------------------------------------------------ logging
    c.log = ml_collections.ConfigDict()
    c.log.every = 1                      # log metrics every N steps
    c.log.jsonl = True                   # run_dir/metrics.jsonl
    c.log.tensorboard = False            # run_dir/tb (tensorboardX event files)
    c.log.wandb = False                  # Weights & Biases (pip install wandb; rlx/train/metrics.py)
    c.log.wandb_project = "rlx"
    c.log.wandb_mode = "offline"         # offline (no network; `wandb sync` later) | online | disabled
    c.log.progress = True                # tqdm progress bar
    c.log.pass_k = (1,)                  # pass@k values to log (k <= group_size)
    return c
