"""rlx.plan_hbm: HBM traffic of compiled TPU programs, against byte counts derived by hand.

The compiled tests use libtpu's compiler on this CPU host for one abstract v5e chip (as
rlx.plan does); the expected numbers are derived from the HLO each program compiles to.
"""

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import SingleDeviceSharding

from rlx.plan import get_topology
from rlx.plan_hbm import hbm_traffic, shape_bytes


@pytest.fixture(scope="module")
def compile_tpu():
    # get_topology sets TPU_ACCELERATOR_TYPE and ALLOW_MULTIPLE_LIBTPU_LOAD (if unset) and loads libtpu
    sh = SingleDeviceSharding(get_topology("v5e-8").devices[0])

    def compile_(f, *shapes, donate=()):
        args = [jax.ShapeDtypeStruct(s, dt, sharding=sh) for s, dt in shapes]
        compiled = jax.jit(f, donate_argnums=donate).lower(*args).compile()
        return compiled.as_text(), compiled.cost_analysis()["bytes accessed"]

    # a TPU executable compiled here cannot be loaded back: keep it out of the suite's
    # persistent compilation cache (as rlx.plan does)
    cache_was = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        yield compile_
    finally:
        jax.config.update("jax_enable_compilation_cache", cache_was)


def test_matmul_weights_prefetched_into_vmem_count_once(compile_tpu):
    # h @ w, w bf16[896,4864]: XLA cross-program-prefetches w into VMEM (copy-start from
    # HBM to a layout in S(1)); the matmul fusion then reads h from HBM and the VMEM copy of
    # w, and writes its output to HBM. HBM traffic: w once (copy-start) + h + out
    #   = 896*4864*2 + 32*896*2 + 32*4864*2 = 8,716,288 + 57,344 + 311,296 = 9,084,928.
    # (XLA's "bytes accessed" on libtpu of Dec 2025: 43,954,688, the VMEM reads included.)
    text, _ = compile_tpu(lambda w, h: h @ w, ((896, 4864), jnp.bfloat16), ((32, 896), jnp.bfloat16))
    t = hbm_traffic(text)
    assert t.total == pytest.approx(8_716_288 + 57_344 + 311_296, rel=0.03)
    assert t.custom_call == 0 and t.loops == 0


def _scatter_rows(pool, idx, upd):
    return pool.at[:, idx].set(upd)


POOL = ((2, 35344, 128), jnp.bfloat16)               # 18,096,128 bytes
IDX, UPD = ((32,), jnp.int32), ((2, 32, 128), jnp.bfloat16)   # 128 and 16,384 bytes


def test_donated_scatter_counts_the_updated_rows_not_the_pool(compile_tpu):
    # In place: a small fusion reads the indices (128 bytes, to VMEM), the scatter fusion
    # (aliasing its pool operand with its output) reads the updates from HBM and writes the
    # 32 rows: 2 * 16,384 + 128 = 32,896. The pool (18 MB) is neither read nor written whole.
    # (XLA: 280,064.)
    text, _ = compile_tpu(_scatter_rows, POOL, IDX, UPD, donate=(0,))
    t = hbm_traffic(text)
    pool, upd, idx = 2 * 35344 * 128 * 2, 2 * 32 * 128 * 2, 32 * 4
    assert 2 * upd <= t.total <= 2 * upd + idx + 4096
    assert t.total < pool / 100


def test_undonated_scatter_counts_the_copy_of_the_pool(compile_tpu):
    # Without donation XLA first copies the pool (read + write 18 MB: 36,192,256), then
    # scatters into the copy in place (the updates and indices prefetched to VMEM: 16,384 +
    # 128, the rows written: 16,384): 36,225,152. (XLA: 36,549,120.)
    text, _ = compile_tpu(_scatter_rows, POOL, IDX, UPD)
    t = hbm_traffic(text)
    pool = 2 * 35344 * 128 * 2
    assert 2 * pool <= t.total <= 2 * pool + 65536


def test_donated_elementwise_reads_and_writes_everything(compile_tpu):
    # x * 2 into x's buffer (the fusion's aliasing_operands lists it): still 4 MiB read +
    # 4 MiB written = 8,388,608. (XLA: 8,388,608.)
    text, _ = compile_tpu(lambda x: x * 2, ((1024, 1024), jnp.float32), donate=(0,))
    assert hbm_traffic(text).total == pytest.approx(8_388_608, rel=0.01)


HLO = """\
HloModule tiny, is_scheduled=true, entry_computation_layout={(f32[256,256]{1,0:T(8,128)})->f32[256,256]{1,0}}

FileNames
1 "x.py"

%fused_add (p0: f32[256,256], p1: f32[256,256]) -> f32[256,256] {
  %p0 = f32[256,256]{1,0:T(8,128)} parameter(0)
  %p1 = f32[256,256]{1,0:T(8,128)S(1)} parameter(1)
  ROOT %add.0 = f32[256,256]{1,0:T(8,128)} add(%p0, %p1), metadata={op_name="jit(f)/add"}
}

%fused_dus (q0: bf16[1024,128], q1: bf16[8,128], q2: s32[]) -> bf16[1024,128] {
  %q0 = bf16[1024,128]{1,0:T(8,128)(2,1)} parameter(0)
  %q1 = bf16[8,128]{1,0:T(8,128)(2,1)} parameter(1)
  %q2 = s32[]{:T(128)} parameter(2)
  %c0 = s32[]{:T(128)} constant(0)
  %bc = bf16[8,128]{1,0:T(8,128)(2,1)} bitcast(%q1)
  ROOT %dus = bf16[1024,128]{1,0:T(8,128)(2,1)} dynamic-update-slice(%q0, %bc, %q2, %c0)
}

%fused_pair (r0: f32[256,256]) -> (f32[256,256], f32[256,256]) {
  %r0 = f32[256,256]{1,0:T(8,128)} parameter(0)
  %n = f32[256,256]{1,0:T(8,128)} negate(%r0)
  %e = f32[256,256]{1,0:T(8,128)S(1)} exponential(%r0)
  ROOT %tp = (f32[256,256]{1,0:T(8,128)}, f32[256,256]{1,0:T(8,128)S(1)}) tuple(%n, %e)
}

%fused_row (s0: f32[64,128], s1: s32[]) -> f32[1,128] {
  %s0 = f32[64,128]{1,0:T(8,128)} parameter(0)
  %s1 = s32[]{:T(128)S(6)} parameter(1)
  %c1 = s32[]{:T(128)} constant(0)
  ROOT %ds = f32[1,128]{1,0:T(8,128)S(1)} dynamic-slice(%s0, %s1, %c1), dynamic_slice_sizes={1,128}
}

%body (bp: (s32[], f32[64,128])) -> (s32[], f32[64,128]) {
  %bp = (s32[]{:T(128)S(2)}, f32[64,128]{1,0:T(8,128)}) parameter(0)
  %i = s32[]{:T(128)S(2)} get-tuple-element(%bp), index=0
  %x = f32[64,128]{1,0:T(8,128)} get-tuple-element(%bp), index=1
  %neg = f32[64,128]{1,0:T(8,128)} negate(%x)
  ROOT %t = (s32[]{:T(128)S(2)}, f32[64,128]{1,0:T(8,128)}) tuple(%i, %neg)
}

%cond (cp: (s32[], f32[64,128])) -> pred[] {
  %cp = (s32[]{:T(128)S(2)}, f32[64,128]{1,0:T(8,128)}) parameter(0)
  %ci = s32[]{:T(128)S(2)} get-tuple-element(%cp), index=0
  %lim = s32[]{:T(128)S(2)} constant(10)
  ROOT %lt = pred[]{:T(128)S(2)} compare(%ci, %lim), direction=LT
}

ENTRY %main (a: f32[256,256], v: f32[256,256], pool: bf16[1024,128], upd: bf16[8,128], pos: s32[], /*index=5*/w: f32[64,128]) -> (f32[256,256], bf16[1024,128]) {
  %a = f32[256,256]{1,0:T(8,128)} parameter(0)
  %v = f32[256,256]{1,0:T(8,128)} parameter(1)
  %pid = u32[]{:T(128)S(6)} partition-id()
  %cs = (f32[256,256]{1,0:T(8,128)S(1)}, f32[256,256]{1,0:T(8,128)}, u32[]{:S(2)}) copy-start(%v), cross_program_prefetch_index=0
  %cd = f32[256,256]{1,0:T(8,128)S(1)} copy-done(%cs)
  %sum = f32[256,256]{1,0:T(8,128)} fusion(%a, %cd), kind=kLoop, calls=%fused_add, metadata={op_name="jit(f)/add"}
  %pool = bf16[1024,128]{1,0:T(8,128)(2,1)} parameter(2)
  %upd = bf16[8,128]{1,0:T(8,128)(2,1)} parameter(3)
  %pos = s32[]{:T(128)} parameter(4)
  %upd_fusion = bf16[1024,128]{1,0:T(8,128)(2,1)} fusion(%pool, %upd, %pos), kind=kLoop, calls=%fused_dus, backend_config={"aliasing_operands":{"lists":[{"indices":["0","3"]}]}}
  %w = f32[64,128]{1,0:T(8,128)} parameter(5)
  %zero = s32[]{:T(128)S(2)} constant(0)
  %init = (s32[]{:T(128)S(2)}, /*index=1*/f32[64,128]{1,0:T(8,128)}) tuple(%zero, %w)
  %loop = (s32[]{:T(128)S(2)}, f32[64,128]{1,0:T(8,128)}) while(%init), condition=%cond, body=%body
  %pair = (f32[256,256]{1,0:T(8,128)}, f32[256,256]{1,0:T(8,128)S(1)}) fusion(%sum), kind=kLoop, calls=%fused_pair
  %first = f32[256,256]{1,0:T(8,128)} get-tuple-element(%pair), index=0
  %kernel = f32[64,128]{1,0:T(8,128)} custom-call(%w, %w), custom_call_target="my_kernel", backend_config={"custom_call_config":{"body":"AAAA"}}
  %sl = f32[16,128]{1,0:T(8,128)} slice(%w), slice={[0:16], [0:128]}
  %row = f32[1,128]{1,0:T(8,128)S(1)} fusion(%w, %pid), kind=kLoop, calls=%fused_row
  %bc = f32[256,256]{1,0:T(8,128)} bitcast(%first)
  ROOT %out = (f32[256,256]{1,0:T(8,128)}, bf16[1024,128]{1,0:T(8,128)(2,1)}) tuple(%bc, %upd_fusion)
}
"""


def test_parser_on_hand_written_hlo():
    assert shape_bytes("(f32[256,256]{1,0:T(8,128)}, f32[2]{0:S(1)}, u32[]{:S(2)}, bf16[3,4])") == 256 * 256 * 4 + 24
    assert shape_bytes("f32[2]{0:S(1)}", hbm_only=False) == 8
    t = hbm_traffic(HLO)
    big, small = 256 * 256 * 4, 64 * 128 * 4
    expect = {
        "cs": big,                     # copy-start: v from HBM; its S(1) destination is on chip; copy-done 0
        "sum": 2 * big,                # reads a (HBM) and the VMEM copy of v (0), writes HBM
        "upd_fusion": 2048 + 4 + 2048,   # in place: reads upd and pos, writes 8 rows of the pool; pool 0
        "neg": 2 * small,              # the while body, counted once; the condition's SMEM scalars 0
        "pair": 2 * big,               # reads sum; of its tuple output only the HBM element counts
        "kernel": 2 * small,           # custom-call: w (once, though passed twice) + its output
        "sl": 2 * 16 * 128 * 4,        # a slice reads what it returns
        "row": 128 * 4,                # dynamic-slice of w inside a fusion: one row read, output in VMEM
    }
    got = {d.split(" =")[0]: b for b, d in t.top}
    assert got == expect
    assert t.total == sum(expect.values())
    assert t.loops == 1
    assert t.custom_call == 2 * small and t.custom_call_by_target == {"my_kernel": 2 * small}
    assert t.custom_calls == [(2 * small, "my_kernel", "kernel")]
    assert t.by_opcode["fusion"] == 2 * big + 4100 + 2 * big + 512 and t.by_opcode["negate"] == 2 * small
    assert [b for b, _ in t.top] == sorted((b for b, _ in t.top), reverse=True)
    assert "in-place dynamic-update-slice" in dict((d.split(" =")[0], d) for _, d in t.top)["upd_fusion"]


def test_conditional_counts_its_largest_branch():
    hlo = """\
%small (x: f32[8]) -> f32[8] {
  %x = f32[8]{0} parameter(0)
  ROOT %n = f32[8]{0} negate(%x)
}

%large (y: f32[8]) -> f32[8] {
  %y = f32[8]{0} parameter(0)
  %e = f32[8]{0} exponential(%y)
  ROOT %m = f32[8]{0} multiply(%e, %y)
}

ENTRY %main (p: pred[], a: f32[8]) -> f32[8] {
  %p = pred[]{:S(6)} parameter(0)
  %a = f32[8]{0} parameter(1)
  ROOT %c = f32[8]{0} conditional(%p, %a, %a), branch_computations={%small, %large}
}
"""
    t = hbm_traffic(hlo)
    assert t.total == (32 + 32) + (32 + 32 + 32)   # large: exp reads y, writes e; multiply reads e, y, writes
    assert t.loops == 0


def test_async_slice_printed_as_its_own_opcode():
    # `compiled.as_text()` prints an async weight slice as `slice-start` with a
    # ((source), destination, flag) tuple: it reads the slice (224 x 1152 bf16 =
    # 516,096 bytes) from HBM into VMEM, not the whole 896 x 1152 source (2,064,384).
    hlo = """HloModule m

ENTRY %main (p: bf16[896,1152]) -> bf16[224,1152] {
  %p = bf16[896,1152]{1,0:T(8,128)(2,1)} parameter(0)
  %s = ((bf16[896,1152]{1,0:T(8,128)(2,1)}), bf16[224,1152]{1,0:T(8,128)(2,1)S(1)}, s32[]{:S(2)}) slice-start(%p), slice={[0:224], [0:1152]}
  ROOT %d = bf16[224,1152]{1,0:T(8,128)(2,1)S(1)} slice-done(%s)
}
"""
    assert hbm_traffic(hlo).total == 516_096
