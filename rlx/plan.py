"""Plan before renting: compile every program of a run for a TPU topology, without a TPU.

    python -m rlx.plan --config=configs/scale/qwen05b_v5e8.py [--topology=v5e-8] [--config.key=value ...]

Builds the run's programs (`rlx.train.programs.Programs`, the objects the engine runs)
from the config alone — abstract params (`jax.eval_shape`) of the architecture the
config describes (or of `model.hf_path`'s config.json), no weights, no data — and
compiles each with the TPU compiler of `libtpu` for the named topology
(`jax.experimental.topologies`; `pip install -e .[plan]`), on abstract inputs of the
largest shapes the run can produce (full prompt and completion widths). Per program it
prints the per-chip argument / output / temporary bytes (`memory_analysis`), the peak
(arguments + outputs - donated aliases + temporaries) against the chip's HBM, FLOPs
and bytes accessed (`cost_analysis`, per chip), and ends with one line:

    plan: fits (peak X GiB of Y GiB per chip)
    plan: does not fit: <program> needs X GiB of Y GiB per chip[; <program> ...]

(exit status 0 / 1). `--only=update,ref_logprobs` compiles only the named programs;
`--hbm-gib=X` compares with X GiB per chip instead of the topology's. FLOPs and bytes
are the compiler's per-chip counts, in which a loop body (the decode loop, the
micro-batch and layer scans) counts once. A program the compiler refuses (`CompileTimeHbmOom`) does not fit
with the size the compiler reports. `--topology=local` plans for this machine's own
devices (CPU: the RAM shared by its devices; GPU: each device's memory limit).

Programs: sampler (one `sampler.rows_per_call` chunk of the training groups), sampler_eval
(greedy held-out evaluation), old_logprobs (`rl.recompute_old_logprobs`), ref_logprobs
(KL / preference), update, critic_values + critic_update (gae / egae), sft_step
(`sft.steps > 0`), spo_continue + logprobs_T (spo_chain), tree_sampler + logprobs_T
(spo_tree), pref_ref + pref_update (preference losses), decode_step (`sampler.kv_cache=paged`:
one step of the paged decode loop, every slot at half its columns, with bytes accessed per
generated token against the floor: weights once + the slots' live keys and values).

Attention kernels resolve for the target ("auto": splash attention and the Pallas
paged-attention kernel on a TPU topology).

Topologies: v5e-N / v5litepod-N and v6e-N (N chips), v4-N and v5p-N (N TensorCores = N/2
chips, as Google names them), or a libtpu topology name such as `v5e:2x4`. Usable HBM per
chip is the TPU compiler's own limit (read from its CompileTimeHbmOom messages on this
libtpu): v5e 15.75 GiB, v4 30.75 GiB, v6e 31.24 GiB, v5p 95.73 GiB.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time

GiB = float(1 << 30)
# generation -> (libtpu platform name, chips per "N" of the accelerator type, HBM GiB the
# compiler allows per chip, TPU_ACCELERATOR_TYPE prefix, libtpu chip config)
GENERATIONS = {
    "v5e": ("v5e", 1, 15.75, "v5litepod-", None),
    "v5litepod": ("v5e", 1, 15.75, "v5litepod-", None),
    "v6e": ("v6e", 1, 31.24, "v6e-", None),
    "v4": ("v4", 2, 30.75, "v4-", "megacore"),
    "v5p": ("v5p", 2, 95.73, "v5p-", None),
}
_2D = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}
_3D = {1: "1x1x1", 2: "1x1x2", 4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8",
       256: "4x8x8", 512: "8x8x8"}


@dataclasses.dataclass
class Topology:
    name: str              # as given
    devices: list
    platform: str          # tpu | cpu | gpu
    hbm_bytes: float       # usable memory per device


def parse_topology(name: str) -> tuple[str, str, float, str, str | None]:
    """(libtpu topology name, accelerator type, usable HBM GiB, generation, chip config)."""
    m = re.fullmatch(r"(v5e|v5litepod|v6e|v4|v5p)-(\d+)", name)
    if m:
        gen, n = m.group(1), int(m.group(2))
        plat, per, hbm, prefix, chip_cfg = GENERATIONS[gen]
        chips = n // per
        table = _3D if plat in ("v4", "v5p") else _2D
        if n % per or chips not in table:
            raise ValueError(f"--topology={name}: unsupported size (known: "
                             + ", ".join(f"{gen}-{k * per}" for k in table) + ")")
        return f"{plat}:{table[chips]}", f"{prefix}{n}", hbm, plat, chip_cfg
    m = re.fullmatch(r"(v5e|v6e|v4|v5p):(\d+(?:x\d+)+)", name)
    if m:
        plat = m.group(1)
        _, per, hbm, prefix, chip_cfg = GENERATIONS[plat]
        chips = 1
        for d in m.group(2).split("x"):
            chips *= int(d)
        return name, f"{prefix}{chips * per}", hbm, plat, chip_cfg
    raise ValueError(f"--topology={name}: expected local, v5e-N, v6e-N, v4-N, v5p-N or a libtpu name like "
                     "v5e:2x4")


def get_topology(name: str) -> Topology:
    import jax
    if name == "local":
        devs = jax.devices()
        plat = devs[0].platform
        if plat == "cpu":
            ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            cap = ram / len(devs)
        else:
            stats = devs[0].memory_stats() or {}
            cap = float(stats.get("bytes_limit", 0)) or float("inf")
        return Topology(name, devs, plat, cap)
    topo_name, accel, hbm, _, chip_cfg = parse_topology(name)
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", accel)
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")     # several planners (or pytest workers)
    try:
        import libtpu  # noqa: F401
    except ImportError:
        raise SystemExit("rlx.plan: TPU topologies need libtpu (pip install -e '.[plan]'); "
                         "--topology=local needs nothing") from None
    from jax.experimental import topologies
    kw = {"chip_config_name": chip_cfg} if chip_cfg else {}
    topo = topologies.get_topology_desc(platform="tpu", topology_name=topo_name, **kw)
    return Topology(name, list(topo.devices), "tpu", hbm * GiB)


@dataclasses.dataclass
class ProgramPlan:
    name: str
    args: float = 0.0
    out: float = 0.0
    alias: float = 0.0
    temp: float = 0.0
    flops: float = 0.0
    bytes_accessed: float = 0.0
    hbm_bytes: float = 0.0     # `rlx.plan_hbm` estimate of HBM traffic (TPU programs; 0 elsewhere)
    compile_s: float = 0.0
    error: str = ""            # compile failure (OOM: the compiler's message)
    oom_bytes: float = 0.0     # what the compiler said it needed, on CompileTimeHbmOom

    @property
    def peak(self) -> float:
        if self.oom_bytes:
            return self.oom_bytes
        return self.args + self.out - self.alias + self.temp


def _sds(shape, dtype, sharding):
    import jax
    return jax.ShapeDtypeStruct(tuple(shape), dtype, sharding=sharding)


def _with(tree_abs, shardings):
    import jax
    return jax.tree.map(lambda x, s: _sds(x.shape, x.dtype, s), tree_abs, shardings)


def program_inputs(c, progs, sampler_cfg, eval_cfg):
    """[(name, callable that lowers the program)] for every program the run executes."""
    import jax
    import jax.numpy as jnp

    from rlx import parallel, sampling
    from rlx.data.preference import PreferenceBatch
    from rlx.models import lora
    from rlx.sampling import sampler as smp
    from rlx.sampling import tree as stree
    from rlx.train import critic as tcritic
    from rlx.train import preference as tpref
    from rlx.train.kinds.spo_chain import num_cut_slots
    from rlx.train.programs import abstract_params, critic_trunk, reference_params, shardings_like_params
    from rlx.types import Batch

    mesh, cfg = progs.mesh, progs.model_cfg
    rep = parallel.replicated(mesh)
    params_abs = abstract_params(cfg)
    params = _with(params_abs, progs.param_sh)
    ref_abs = jax.eval_shape(lambda p: reference_params(p, cfg), params_abs)     # LoRA: the base, no copy
    ref = _with(ref_abs, lora.base_of(progs.param_sh) if lora.enabled(cfg) else progs.param_sh)
    base_abs = abstract_params(progs.base_cfg)
    key = _sds((), jax.eval_shape(lambda: jax.random.key(0)).dtype, rep)
    Lp, T, G, P = c.sampler.max_prompt_len, c.sampler.max_new_tokens, c.rl.group_size, c.rl.prompts_per_step

    def rows(B, *cols, dtype=jnp.int32):
        return _sds((B,) + tuple(cols), dtype, parallel.batch_sharding(mesh, 1 + len(cols), B))

    def seqs(B, lp=Lp, t=T):
        return rows(B, lp), rows(B, lp, dtype=bool), rows(B, t), rows(B, t, dtype=bool)

    def sampler_call(scfg, group, prompts, width):
        R = sampler_cfg.rows_per_call
        pc = prompts if not R or prompts * group <= R else max(1, R // group)
        base = scfg.replace(rows_per_call=0)
        return lambda: smp._generate.lower(params, cfg, base, group, key, rows(pc, width),
                                           rows(pc, width, dtype=bool), rows(pc * group), jnp.int32(0))

    out = []
    if sampler_cfg.kv_cache == "paged":
        out.append(("decode_step", decode_step_lowering(progs, sampler_cfg, G, P)))
    pref = tpref.is_preference(c.rl.loss)
    if c.rl.estimator == "spo_tree":
        out.append(("tree_sampler", lambda: stree._sample_tree.lower(
            params, cfg, sampler_cfg.replace(rows_per_call=0), tuple(int(b) for b in c.spo.branching),
            int(c.spo.segment_len), key, rows(P, Lp), rows(P, Lp, dtype=bool))))
    elif not (pref and c.pref.source == "offline"):
        out.append(("sampler", sampler_call(sampler_cfg, G, P, Lp)))
    if c.data.eval_prompts:
        out.append(("sampler_eval", sampler_call(eval_cfg, 1, c.data.eval_prompts, Lp)))
    if c.sft.steps:
        bs = c.sft.batch_size
        opt_abs = jax.eval_shape(progs.sft_optimizer.init, base_abs)
        opt = _with(opt_abs, shardings_like_params(opt_abs, base_abs, progs.base_param_sh, mesh))
        out.append(("sft_step", lambda: progs.sft_step.lower(_with(base_abs, progs.base_param_sh), opt, *seqs(bs))))
    if pref:
        pb = PreferenceBatch(*seqs(P)[:2], rows(P, T), rows(P, T, dtype=bool), rows(P, T), rows(P, T, dtype=bool),
                             rows(P, dtype=bool))
        out.append(("pref_ref", lambda: progs.pref_ref.lower(ref, pb)))
        state = _state(progs, params_abs)
        f32 = rows(P, dtype=jnp.float32)
        out.append(("pref_update", lambda: progs.pref_update.lower(state, pb, f32, f32)))
        return out
    if c.rl.estimator == "spo_chain":
        K = int(c.spo.mc_samples)
        n_states = sampler_cfg.rows_per_call // K if sampler_cfg.rows_per_call else P * G * num_cut_slots(c.spo, T)
        out.append(("spo_continue", sampler_call(sampler_cfg, K, max(1, n_states), Lp + T)))
    B = P * G
    lp, t = Lp, T
    if c.rl.estimator == "spo_tree":
        lens = sampling.segment_lengths(T, len(c.spo.branching), c.spo.segment_len)
        n_edges = P * (stree.tree_structure(tuple(int(b) for b in c.spo.branching))[0].size - 1)
        out.append(("logprobs_T", lambda: progs.logprobs_T.lower(params, *seqs(n_edges, Lp + sum(lens[:-1]),
                                                                               max(lens)))))
        B, lp, t = int(c.spo.train_edges), Lp + sum(lens[:-1]), max(lens)
    elif c.rl.estimator == "spo_chain":
        out.append(("logprobs_T", lambda: progs.logprobs_T.lower(params, *seqs(B))))
    if c.rl.recompute_old_logprobs:
        out.append(("old_logprobs", lambda: progs.logprobs.lower(params, *seqs(B, lp, t))))
    if c.rl.kl_coef > 0:
        out.append(("ref_logprobs", lambda: progs.logprobs.lower(ref, *seqs(B, lp, t))))
    pt, pm, ct, cm = seqs(B, lp, t)
    f = rows(B, t, dtype=jnp.float32)
    batch = Batch(prompt_tokens=pt, prompt_mask=pm, completion_tokens=ct, completion_mask=cm, advantages=f,
                  old_logprobs=f, ref_logprobs=f if c.rl.kl_coef > 0 else None,
                  rewards=rows(B, dtype=jnp.float32), valid=rows(B, dtype=bool),
                  loss_mask=rows(B, t, dtype=bool) if c.rl.estimator in ("spo_chain", "spo_tree") else None)
    if progs.values is not None:
        cabs = jax.eval_shape(lambda p: tcritic.init_critic(critic_trunk(p, cfg), progs.base_cfg,
                                                            progs.critic_optimizer), params_abs)
        cstate = _with(cabs, progs.critic_sh)
        out.append(("critic_values", lambda: progs.values.lower(cstate.params, pt, pm, ct, cm)))
    state = _state(progs, params_abs)
    out.append(("update", lambda: progs.update.lower(state, batch)))
    if progs.values is not None:
        out.append(("critic_update", lambda: progs.critic_update.lower(cstate, key, batch, f, f)))
    return out


def decode_step_lowering(progs, scfg, G: int, P: int, live_frac: float = 0.5):
    """One paged decode step of the sampler's slots (the body of its decode loop), on a
    pool of the run's size; every slot live at `live_frac` of its prompt + budget columns
    (`decode_step_minimum` is the matching floor)."""
    import jax
    import jax.numpy as jnp

    from rlx import parallel
    from rlx.models import paged
    from rlx.sampling.continuous import batch_shards, layout
    from rlx.sampling.decode_sharding import decode_scope, decode_weights, rows_sharded
    from rlx.train.programs import abstract_params

    mesh, cfg = progs.mesh, progs.model_cfg
    Lp = scfg.max_prompt_len
    R = scfg.rows_per_call or P * G
    Pc = R // G
    with progs.sharding():
        D = batch_shards(Pc)
    lay = layout(scfg, Pc, G, Lp, D)
    S = lay.slots * D
    params = _with(abstract_params(cfg), progs.param_sh)
    pool_abs = jax.eval_shape(lambda: paged.init_pool(cfg, lay.num_pages, lay.page_size, shards=D))
    pool_sh = parallel.tree_shardings(pool_abs, {n: [paged.SHARDED_POOL_AXES] * cfg.num_layers for n in ("k", "v")},
                                      mesh, progs.rules)
    pool = _with(pool_abs, pool_sh)
    length = int(live_frac * (Lp + scfg.max_new_tokens))

    def rows(*shape, dtype=jnp.int32):
        return _sds(shape, dtype, parallel.batch_sharding(mesh, len(shape), shape[0]))

    def step(dp, pool, tok, table):
        with decode_scope(scfg):
            logits, pool = paged.paged_decode_step(dp, cfg, tok, table, jnp.full(tok.shape, length, jnp.int32),
                                                   pool)
        return rows_sharded(scfg, logits), pool

    def lower():
        # The loop's params are prepared once per call (`decode_weights`: `decode_params`
        # placed as `sampler.decode_sharding` says), outside the step: the step takes them
        # with the shardings that preparation produces.
        with progs.sharding():
            prep = jax.jit(lambda p: decode_weights(p, cfg, scfg)).lower(params).compile()
            dp = _with(jax.eval_shape(lambda p: decode_weights(p, cfg, scfg), params), prep.output_shardings)
            return jax.jit(step, donate_argnums=(1,)).lower(dp, pool, rows(S), rows(S, lay.table_width))

    return lower


def decode_step_minimum(cfg, scfg, G: int, P: int, chips: int, live_frac: float = 0.5) -> tuple[float, int]:
    """(bytes a decode step must read per chip, tokens it generates): the weights once
    (in the compute dtype, over `chips`) plus every slot's live keys and values."""
    import jax.numpy as jnp

    from rlx.sampling.continuous import layout
    R = scfg.rows_per_call or P * G
    lay = layout(scfg, R // G, G, scfg.max_prompt_len, 1)
    S = lay.slots
    length = int(live_frac * (scfg.max_prompt_len + scfg.max_new_tokens))
    item = jnp.dtype(cfg.dtype).itemsize
    kv = S * length * cfg.num_layers * 2 * cfg.num_kv_heads * cfg.head_dim * item
    return (cfg.num_params * item + kv) / chips, S


def _state(progs, params_abs):
    import jax

    from rlx.train.state import TrainState
    st = jax.eval_shape(lambda p: TrainState.create(p, progs.optimizer, jax.random.key(0)), params_abs)
    return _with(st, progs.state_sh)


def _cost(compiled) -> tuple[float, float]:
    try:
        ca = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends have none
        return 0.0, 0.0
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else {}
    ca = ca or {}
    return float(ca.get("flops", 0.0)), float(ca.get("bytes accessed", 0.0))


_OOM = re.compile(r"CompileTimeHbmOom.*?\(([\d.]+)([KMGT]?)\)\s*exceeds available HBM", re.S)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def compile_one(name: str, lower, dump_hlo: str = "", hbm: bool = False) -> ProgramPlan:
    """Compiles one program and reads its memory and cost; `dump_hlo` = a directory to
    write the optimized HLO to (`<name>.hlo.txt`); `hbm`: also estimate its HBM traffic
    from the TPU compiler's HLO (`rlx.plan_hbm`: XLA's "bytes accessed" on TPU counts
    on-chip VMEM traffic too and Pallas kernels as ~0)."""
    pp = ProgramPlan(name)
    t0 = time.perf_counter()
    try:
        compiled = lower().compile()
    except Exception as e:  # noqa: BLE001 - reported per program
        msg = str(e)
        m = _OOM.search(msg)
        pp.error = msg.splitlines()[0][:300] if msg else type(e).__name__
        if m:
            pp.oom_bytes = float(m.group(1)) * _UNITS[m.group(2)]
        pp.compile_s = time.perf_counter() - t0
        return pp
    pp.compile_s = time.perf_counter() - t0
    if dump_hlo:
        os.makedirs(dump_hlo, exist_ok=True)
        with open(os.path.join(dump_hlo, f"{name}.hlo.txt"), "w") as f:
            f.write(compiled.as_text())
    mem = compiled.memory_analysis()
    if mem is not None:
        pp.args, pp.out = float(mem.argument_size_in_bytes), float(mem.output_size_in_bytes)
        pp.alias, pp.temp = float(mem.alias_size_in_bytes), float(mem.temp_size_in_bytes)
    pp.flops, pp.bytes_accessed = _cost(compiled)
    if hbm:
        from rlx.plan_hbm import hbm_traffic
        pp.hbm_bytes = hbm_traffic(compiled.as_text()).total
    return pp


def plan(config, topology: str = "", *, only: tuple[str, ...] = (), hbm_gib: float = 0.0,
         dump_hlo: str = "", log=print) -> tuple[bool, list[ProgramPlan], Topology]:
    """Compiles the config's programs for `topology`; returns (fits, per-program plans,
    topology). `hbm_gib` > 0 replaces the per-chip memory the verdict compares with (a
    what-if: e.g. a 24 GiB GPU planned on this machine's devices); `dump_hlo` = a
    directory for each program's optimized HLO text."""
    import jax
    import jax.numpy as jnp

    from rlx import parallel
    from rlx.models import build_tokenizer
    from rlx.train.build import model_config, sampler_config
    from rlx.train.programs import Programs

    topo = get_topology(topology or "local")
    if hbm_gib > 0:
        topo.hbm_bytes = hbm_gib * GiB
    c = config
    vocab = None
    if not c.model.vocab_size and c.model.source == "tiny":
        import tempfile
        with tempfile.TemporaryDirectory() as d:       # rlx's built-in tokenizer: its size only
            vocab = len(build_tokenizer(d))
    model_cfg = model_config(c, vocab_size=vocab, platform=topo.platform)
    mesh = parallel.make_mesh(c.mesh.shape, topo.devices)
    progs = Programs.build(c, model_cfg, mesh, parallel.get_rules(c.mesh.rules))
    scfg = sampler_config(c, stop_ids=(0,), pad_id=0)
    ecfg = sampler_config(c, stop_ids=(0,), pad_id=0, greedy=True)
    log(f"rlx.plan: {c.name} on {topology or 'local'} ({len(topo.devices)} x {topo.devices[0].device_kind}, "
        f"{topo.hbm_bytes / GiB:.2f} GiB per chip), mesh {dict(mesh.shape)}, {_count(model_cfg.num_params)} "
        f"params, compute {jnp.dtype(model_cfg.dtype).name}")
    log(f"{'program':<15}{'args':>9}{'out':>9}{'temp':>9}{'peak GiB':>10}{'TFLOP':>9}{'GB acc.':>9}{'compile s':>11}")
    # A TPU executable compiled here cannot be loaded back on this host: keep it out of
    # the persistent compilation cache.
    cache_was = jax.config.jax_enable_compilation_cache
    if topo.platform == "tpu":
        jax.config.update("jax_enable_compilation_cache", False)
    try:
        plans = _compile_all(c, progs, scfg, ecfg, topo, only, log, dump_hlo)
    finally:
        jax.config.update("jax_enable_compilation_cache", cache_was)
    over = [p for p in plans if p.error or p.peak > topo.hbm_bytes]
    cap = topo.hbm_bytes / GiB
    if not over:
        peak = max((p.peak for p in plans), default=0.0)
        log(f"plan: fits (peak {peak / GiB:.2f} GiB of {cap:.2f} GiB per chip)")
        return True, plans, topo
    parts = [f"{p.name} needs {p.peak / GiB:.2f} GiB of {cap:.2f} GiB per chip" if (p.oom_bytes or not p.error)
             else f"{p.name} failed to compile ({p.error})" for p in over]
    log("plan: does not fit: " + "; ".join(parts))
    return False, plans, topo


def _compile_all(c, progs, scfg, ecfg, topo, only, log, dump_hlo="") -> list[ProgramPlan]:
    from rlx.models import attention

    plans = []
    with progs.sharding(), attention.target_platform(topo.platform):
        for name, lower in program_inputs(c, progs, scfg, ecfg):
            if only and name not in only:
                continue
            pp = compile_one(name, lower, dump_hlo, hbm=name == "decode_step" and topo.platform == "tpu")
            plans.append(pp)
            if pp.error and not pp.oom_bytes:
                log(f"{name:<15} compile error: {pp.error}")
                continue
            flag = "" if pp.peak <= topo.hbm_bytes else "  > HBM"
            if name == "decode_step" and pp.bytes_accessed:
                need, toks = decode_step_minimum(progs.model_cfg, scfg, c.rl.group_size, c.rl.prompts_per_step,
                                                 len(topo.devices))
                flag += (f"  bytes/token {pp.bytes_accessed * len(topo.devices) / toks / 1e6:.2f} MB vs minimum "
                         f"{need * len(topo.devices) / toks / 1e6:.2f} MB: {pp.bytes_accessed / need:.2f}x")
                if pp.hbm_bytes:
                    flag += (f"; HBM estimate {pp.hbm_bytes * len(topo.devices) / toks / 1e6:.2f} MB: "
                             f"{pp.hbm_bytes / need:.2f}x")
            log(f"{name:<15}{pp.args / GiB:>9.2f}{pp.out / GiB:>9.2f}{pp.temp / GiB:>9.2f}{pp.peak / GiB:>10.2f}"
                f"{pp.flops / 1e12:>9.2f}{pp.bytes_accessed / 1e9:>9.1f}{pp.compile_s:>11.1f}{flag}"
                + (" (compiler: CompileTimeHbmOom)" if pp.oom_bytes else ""))
    return plans


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    topology, only, hbm, dump, rest = "", (), 0.0, "", []
    for a in argv:
        if a.startswith("--topology="):
            topology = a.split("=", 1)[1]
        elif a.startswith("--hbm-gib="):
            hbm = float(a.split("=", 1)[1])
        elif a.startswith("--dump-hlo="):
            dump = a.split("=", 1)[1]
        elif a.startswith("--only="):
            only = tuple(x for x in a.split("=", 1)[1].split(",") if x)
        else:
            rest.append(a)
    from rlx.train.config import ConfigError, apply_overrides, load_config, validate
    path = next((a.split("=", 1)[1] for a in rest if a.startswith("--config=")), None)
    bad = [a for a in rest if not (a.startswith("--config=") or a.startswith("--config."))]
    if path is None or bad:
        print("usage: python -m rlx.plan --config=PATH [--topology=local|v5e-8|v4-8|v5p-16|...] "
              "[--only=update,...] [--hbm-gib=X] [--dump-hlo=DIR] [--config.<key>=<value> ...]", file=sys.stderr)
        return 2
    try:
        config = load_config(path)
        apply_overrides(config, [a for a in rest if a.startswith("--config.")])
        validate(config, for_plan=True)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    topology = topology or config.plan_topology or "local"
    if topology != "local":
        import jax
        jax.config.update("jax_platforms", "cpu")    # compile-only: the host's own TPU (if any) is not used
    ok, _, _ = plan(config, topology, only=only, hbm_gib=hbm, dump_hlo=dump)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
