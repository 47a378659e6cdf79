"""An estimate of the bytes a compiled TPU program moves between HBM and the chip.

    from rlx.plan_hbm import hbm_traffic
    t = hbm_traffic(compiled.as_text())      # the optimized, scheduled HLO of the TPU compiler
    t.total, t.custom_call, t.by_opcode, t.loops, t.top

Why: `compiled.cost_analysis()["bytes accessed"]` of the TPU compiler is not HBM traffic. It
counts the traffic of on-chip memories too: a matmul whose weights the compiler prefetches
into VMEM (`copy-start` / `copy-done` to a layout in memory space `S(1)`) is counted once for
the prefetch and again for every read of the VMEM copy (`h @ w` with w bf16[896,4864] of
8.7 MB: 43.9 MB "accessed"). And a Pallas kernel (`custom-call`, e.g. JAX's TPU
`paged_attention`) counts as ~0 bytes, since XLA cannot see inside it. For a memory-bound
program (a decode step) the number that bounds its time is the HBM traffic; this module
reads it off the HLO text, from the layouts the compiler assigned.

It is an estimate, by these rules:

* Walk: the ENTRY computation's instructions in order; `while` bodies (and conditions),
  `call`ed computations and `async-start` wrapped computations are walked where they occur.
  A while body counts ONCE (trip counts are not in the HLO; `loops` says how many loops were
  found, so a caller can scale what it knows). Of a `conditional` only the branch that
  moves the most bytes counts (one branch runs).
* Instructions that move no data count 0: parameter, constant, get-tuple-element, tuple,
  bitcast, after-all, add-dependency, opt-barrier, partition-id, replica-id, and the
  `*-done` (and `async-update`) of every asynchronous pair. The `*-start` carries the
  bytes: a `copy-start` its operand and its destination, element 0 of its tuple; a
  `collective-permute-start` / `all-gather-start` its operand and its destination, element
  1 (the other elements of those tuples are the aliased source and on-chip sync flags, not
  data); an `async-start` counts as the instructions of the computation it wraps (a
  `slice-start` as its slice), and so does a `slice-start` printed as its own opcode (the
  form of `compiled.as_text()`: `((source), destination, flag)`, the slice's size read).
* Every other instruction: the bytes of its distinct operands plus the bytes of its output
  (a tuple output: its array elements), counting only arrays whose layout is in HBM. A
  layout with a memory space `S(n)`, n != 0 (`S(1)` VMEM, `S(2)` / `S(6)` SMEM and sync
  flags, ...), is on chip and counts 0. Operands are printed as `%name`, so their shapes
  come from a name -> shape table of the instructions (parameters included) of each
  computation.
* Sizes: elements x dtype bytes (pred / s8 / u8 / fp8 1, bf16 / f16 / s16 2, f32 / s32 /
  u32 4, f64 / s64 / u64 / c64 8, c128 16, s4 / u4 / fp4 1/2). The padding of the layout's
  tiling (`T(8,128)`: a bf16[32,16,1] occupies 128 lanes per row) is ignored, so small or
  oddly shaped arrays are under-counted.
* Partial reads: a `slice`, `dynamic-slice` or `gather` reads only what it returns: its
  (first) operand counts as the size of its output. Inside a fusion likewise: a fusion
  operand whose every use in the fused computation (through bitcasts) is such a slicing op
  counts as the sum of their outputs (at most its own size): a scan's step reading one
  layer of stacked weights reads one layer.
* In-place updates: a `dynamic-update-slice` or `scatter` -- plain, or the ROOT of a fusion
  (or an element of a fusion's ROOT tuple, through bitcasts), looked up by `calls=` -- writes
  into its first operand's buffer (the compiler aliases them: `aliasing_operands` in the
  backend_config; it copies the buffer first where it may not alias, and that copy is
  counted). Counted: the other operands (the update, the indices) as read, and the touched
  region, the size of the update, as written -- so an update that comes from HBM counts
  2 x its size, one from VMEM once -- plus once more as read where a scatter combines with the
  old values (its `to_apply` is not a plain overwrite). The big aliased operand and the
  output count 0. `aliasing_operands` alone does not make an update partial: an
  elementwise `x * 2` into a donated buffer still reads and writes all of it.
* custom-call: its HBM operands and outputs count in full, as for any instruction, and are
  also reported apart (`custom_call`, `custom_calls`, `custom_call_by_target`): a Pallas
  kernel that reads only part of an operand (paged attention reads the live pages of a KV
  pool, not the pool) is over-counted here, and a caller can subtract its figure and add
  an analytic one.
* Not modelled: traffic the compiler does not show as an instruction (spills inside a
  kernel, the instruction fetch), re-reads of an operand a kernel streams more than once
  (a matmul reading its HBM operand once per output tile), caches, and padding (above).
"""

from __future__ import annotations

import dataclasses
import re

_DTYPE_BYTES = {
    "pred": 1.0, "s4": 0.5, "u4": 0.5, "s8": 1.0, "u8": 1.0, "s16": 2.0, "u16": 2.0, "f16": 2.0, "bf16": 2.0,
    "s32": 4.0, "u32": 4.0, "f32": 4.0, "s64": 8.0, "u64": 8.0, "f64": 8.0, "c64": 8.0, "c128": 16.0,
    "token": 0.0,
}
# instructions that move no data (what they pass on is counted where it is produced / used)
_FREE = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "after-all", "add-dependency",
         "opt-barrier", "partition-id", "replica-id", "domain", "async-update"}
_SLICING = {"slice", "dynamic-slice", "gather"}
_IN_PLACE = {"dynamic-update-slice", "scatter"}
TOP = 20

_ARRAY = re.compile(r"([a-z][a-z0-9]*)\[([^\]]*)\](\{[^}]*\})?")
_SPACE = re.compile(r"S\((\d+)\)")
_HEADER = re.compile(r"(ENTRY\s+)?%([\w.\-]+)\s*\(")
_INSTR = re.compile(r"\s*(ROOT\s+)?%([\w.\-]+)\s*=\s*")
_OPCODE = re.compile(r"\s*([a-z][\w\-]*)\(")
_NAME = re.compile(r"%([\w.\-]+)")


@dataclasses.dataclass
class HbmTraffic:
    total: float                      # estimated bytes between HBM and the chip, custom calls included
    custom_call: float                # of which custom-call instructions (operands and outputs in full)
    by_opcode: dict[str, float]       # opcode -> bytes
    loops: int                        # while loops found (each body counted once)
    top: list[tuple[float, str]]      # the TOP largest instructions: (bytes, description), largest first
    custom_calls: list[tuple[float, str, str]] = dataclasses.field(default_factory=list)  # (bytes, target, name)
    custom_call_by_target: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Instr:
    name: str
    shape: str                        # as printed, layouts included
    opcode: str
    operands: list[str]               # operand names, in order
    args: str                         # the text between the opcode's parentheses
    attrs: str                        # everything after them
    root: bool


def _balanced(s: str, i: int) -> int:
    """Index just past the parenthesis group that opens at s[i]."""
    depth = 0
    for j in range(i, len(s)):
        if s[j] == "(":
            depth += 1
        elif s[j] == ")":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(s)


def _split_tuple(shape: str) -> list[str]:
    """The top-level elements of a tuple shape "(a, (b, c), d)"; [shape] for an array."""
    shape = shape.strip()
    if not shape.startswith("("):
        return [shape]
    out, depth, start = [], 0, 1
    for j, c in enumerate(shape):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 1:
            out.append(shape[start:j].strip())
            start = j + 1
    last = shape[start:-1].strip()
    return out + [last] if last else out


def _array_bytes(dtype: str, dims: str) -> float:
    n = 1
    for d in dims.replace("<=", "").split(","):
        if d.strip():
            n *= int(d)
    if dtype not in _DTYPE_BYTES:                  # the fp8 / fp4 family: f8e4m3fn, f4e2m1fn, ...
        return n * (1.0 if dtype.startswith("f8") else 0.5 if dtype.startswith("f4") else 4.0)
    return n * _DTYPE_BYTES[dtype]


def shape_bytes(shape: str, hbm_only: bool = True) -> float:
    """Bytes of the arrays of a printed shape (every element of a tuple). With `hbm_only`, only
    the arrays whose layout names no memory space other than S(0)."""
    total = 0.0
    for m in _ARRAY.finditer(shape):
        space = _SPACE.search(m.group(3) or "")
        if hbm_only and space and space.group(1) != "0":
            continue
        total += _array_bytes(m.group(1), m.group(2))
    return total


def _parse_instr(line: str) -> _Instr | None:
    m = _INSTR.match(line)
    if not m:
        return None
    rest = line[m.end():]
    if rest.startswith("("):
        end = _balanced(rest, 0)
    else:
        end = rest.find(" ")
        end = len(rest) if end < 0 else end
    shape, rest = rest[:end], rest[end:]
    mo = _OPCODE.match(rest)
    if not mo:
        return None
    close = _balanced(rest, mo.end() - 1)
    args = rest[mo.end():close - 1]
    opcode = mo.group(1)
    operands = [] if opcode == "constant" else _NAME.findall(args)
    return _Instr(m.group(2), shape, opcode, operands, args, rest[close:], bool(m.group(1)))


def _attr(attrs: str, key: str) -> str:
    """The computation named by `key=%name` in an instruction's attributes ("" if none)."""
    m = re.search(rf"\b{key}=%([\w.\-]+)", attrs)
    return m.group(1) if m else ""


def _quoted(attrs: str, key: str) -> str:
    m = re.search(rf'\b{key}="([^"]*)"', attrs)
    return m.group(1) if m else ""


class _Module:
    """The computations of an HLO module's text, and per computation a name -> instruction table
    (operands name instructions of their own computation)."""

    def __init__(self, text: str):
        text = re.sub(r"/\*.*?\*/", "", text)           # the /*index=5*/ comments in long lists
        self.comps: dict[str, list[_Instr]] = {}
        self.entry = ""
        cur: list[_Instr] | None = None
        for line in text.splitlines():
            if cur is None:
                h = _HEADER.match(line)
                if h and line.rstrip().endswith("{"):
                    cur = self.comps.setdefault(h.group(2), [])
                    if h.group(1):
                        self.entry = h.group(2)
            elif line.startswith("}"):
                cur = None
            else:
                ins = _parse_instr(line)
                if ins is not None:
                    cur.append(ins)
        if not self.entry:
            raise ValueError("hbm_traffic: no ENTRY computation in the HLO text")
        self.instr = {c: {i.name: i for i in body} for c, body in self.comps.items()}
        self._users: dict[str, dict[str, list[_Instr]]] = {}

    def root(self, comp: str) -> _Instr | None:
        body = self.comps.get(comp, [])
        return next((i for i in body if i.root), body[-1] if body else None)

    def users(self, comp: str) -> dict[str, list[_Instr]]:
        if comp not in self._users:
            out: dict[str, list[_Instr]] = {}
            for i in self.comps.get(comp, []):
                for o in dict.fromkeys(i.operands):
                    out.setdefault(o, []).append(i)
            self._users[comp] = out
        return self._users[comp]

    def shape(self, comp: str, name: str) -> str:
        i = self.instr.get(comp, {}).get(name)
        return i.shape if i else ""

    def through_bitcasts(self, comp: str, ins: _Instr) -> _Instr:
        table = self.instr.get(comp, {})
        while ins.opcode == "bitcast" and ins.operands and ins.operands[0] in table:
            ins = table[ins.operands[0]]
        return ins

    def overwrites(self, scatter: _Instr) -> bool:
        """Whether a scatter's combiner returns the update (its parameter 1) unchanged."""
        comp = _attr(scatter.attrs, "to_apply")
        root = self.root(comp)
        if root is None:
            return False
        root = self.through_bitcasts(comp, root)
        return root.opcode == "parameter" and root.args.strip() == "1"


def _update_region(mod: _Module, comp: str, ins: _Instr) -> tuple[list[str], list[str], float]:
    """An in-place op's (aliased base operands, update operands, bytes its region moves in HBM:
    written, and read too where a scatter combines with the old values)."""
    ops = ins.operands
    if ins.opcode == "dynamic-update-slice":
        base, upd = ops[:1], ops[1:2]
        factor = 1.0
    else:                                         # scatter(operands..., indices, updates...)
        n = max(1, (len(ops) - 1) // 2)
        base, upd = ops[:n], ops[n + 1:]
        factor = 1.0 if mod.overwrites(ins) else 2.0
    return base, upd, factor * sum(shape_bytes(mod.shape(comp, u), hbm_only=False) for u in upd)


class _Walker:
    def __init__(self, mod: _Module):
        self.mod = mod
        self.loops = 0

    # -- per instruction ------------------------------------------------------------------
    def _sliced_read(self, comp: str, name: str) -> float | None:
        """Bytes a fused computation reads of its value `name` when every use (through
        bitcasts) is the sliced operand of a slicing op; None when some use reads it all."""
        uses = self.mod.users(comp).get(name, [])
        if not uses:
            return None
        total = 0.0
        for u in uses:
            if u.opcode == "bitcast":
                part = self._sliced_read(comp, u.name)
                if part is None:
                    return None
                total += part
            elif u.opcode in _SLICING and u.operands[0] == name and name not in u.operands[1:]:
                total += shape_bytes(u.shape, hbm_only=False)
            else:
                return None
        return total

    def _read(self, comp: str, names: list[str], skip: set[str] = frozenset()) -> float:
        return sum(shape_bytes(self.mod.shape(comp, n)) for n in dict.fromkeys(names) if n not in skip)

    def _fusion(self, caller: str, ins: _Instr) -> tuple[float, str]:
        mod, comp = self.mod, _attr(ins.attrs, "calls")
        body = mod.comps.get(comp)
        if body is None:
            return self._read(caller, ins.operands) + shape_bytes(ins.shape), ""
        params = {int(i.args): i for i in body if i.opcode == "parameter" and i.args.strip().isdigit()}
        root = mod.root(comp)
        outs = _split_tuple(ins.shape)
        table = mod.instr[comp]
        elems = [table.get(o) for o in root.operands] if root is not None and root.opcode == "tuple" else [root]
        if len(elems) != len(outs):
            elems = [None] * len(outs)
        aliased: set[int] = set()
        write, note = 0.0, ""
        for shape, r in zip(outs, elems):
            r = mod.through_bitcasts(comp, r) if r is not None else None
            if r is not None and r.opcode in _IN_PLACE:
                base, _, region = _update_region(mod, comp, r)
                roots = [mod.through_bitcasts(comp, table[b]) for b in base if b in table]
                if roots and all(b.opcode == "parameter" and b.args.strip().isdigit() for b in roots):
                    aliased.update(int(b.args) for b in roots)
                    write += region if shape_bytes(shape) else 0.0
                    note = f" in-place {r.opcode}"
                    continue
            write += shape_bytes(shape)
        read, seen = 0.0, set()
        for k, name in enumerate(ins.operands):
            if k in aliased or name in seen:
                continue
            seen.add(name)
            full = shape_bytes(mod.shape(caller, name))
            if full and k in params:
                part = self._sliced_read(comp, params[k].name)
                full = min(full, part) if part is not None else full
            read += full
        return read + write, note

    def _bytes(self, comp: str, ins: _Instr) -> tuple[float, str]:
        """(bytes, note) of one data-moving instruction of computation `comp`."""
        op, mod, read = ins.opcode, self.mod, lambda names, skip=frozenset(): self._read(comp, names, skip)
        if op == "fusion":
            return self._fusion(comp, ins)
        if op in _SLICING and ins.operands:
            first = shape_bytes(ins.shape, hbm_only=False) if shape_bytes(mod.shape(comp, ins.operands[0])) else 0.0
            return first + read(ins.operands[1:], {ins.operands[0]}) + shape_bytes(ins.shape), ""
        if op in _IN_PLACE and ins.operands:
            base, _, region = _update_region(mod, comp, ins)
            return read(ins.operands, set(base)) + (region if shape_bytes(ins.shape) else 0.0), " in-place"
        if op == "copy-start":
            return read(ins.operands) + shape_bytes(_split_tuple(ins.shape)[0]), ""
        if op in ("slice-start", "dynamic-slice-start") and ins.operands and ins.shape.startswith("("):
            # The printed form of an async slice (`compiled.as_text()`): ((source), dest, flag).
            elems = _split_tuple(ins.shape)
            out = elems[1] if len(elems) > 1 else elems[0]
            first = shape_bytes(out, hbm_only=False) if shape_bytes(mod.shape(comp, ins.operands[0])) else 0.0
            return first + read(ins.operands[1:], {ins.operands[0]}) + shape_bytes(out), ""
        if op in ("collective-permute-start", "all-gather-start") and ins.shape.startswith("("):
            elems = _split_tuple(ins.shape)
            return read(ins.operands) + shape_bytes(elems[1] if len(elems) > 1 else elems[0]), ""
        if op == "send":
            return read(ins.operands[:1]), ""
        if op == "recv":
            return shape_bytes(_split_tuple(ins.shape)[0]), ""
        return read(ins.operands) + shape_bytes(ins.shape), ""

    # -- per computation ------------------------------------------------------------------
    def walk(self, comp: str, records: list[tuple[float, str, _Instr]], depth: int = 0, via: str = "") -> None:
        for ins in self.mod.comps.get(comp, []):
            op = ins.opcode
            if op in _FREE or op.endswith("-done"):
                continue
            if op == "while":
                self.loops += 1
                for key in ("condition", "body"):
                    self.walk(_attr(ins.attrs, key), records, depth + 1, via)
                continue
            if op == "call":
                self.walk(_attr(ins.attrs, "to_apply"), records, depth, via)
                continue
            if op == "conditional":
                m = re.search(r"branch_computations=\{([^}]*)\}", ins.attrs)
                names = _NAME.findall(m.group(1)) if m else [
                    n for n in (_attr(ins.attrs, "true_computation"), _attr(ins.attrs, "false_computation")) if n]
                branches = []
                for b in names:
                    rec: list[tuple[float, str, _Instr]] = []
                    self.walk(b, rec, depth, via)
                    branches.append(rec)
                records.extend(max(branches, key=lambda r: sum(x[0] for x in r), default=[]))
                continue
            if op == "async-start":
                self.walk(_attr(ins.attrs, "calls"), records, depth, ins.name)
                continue
            b, note = self._bytes(comp, ins)
            target = _quoted(ins.attrs, "custom_call_target")
            desc = f"{ins.name} = {op}" + (f"[{target}]" if target else "") + note
            if via:
                desc += f" (in {via})"
            if depth:
                desc += " (loop body)"
            op_name = _quoted(ins.attrs, "op_name")
            if op_name:
                desc += f" {op_name[-60:]}"
            records.append((b, desc, ins))


def hbm_traffic(hlo_text: str) -> HbmTraffic:
    """Estimated bytes between HBM and the chip of one run of a compiled TPU program, from its
    optimized HLO text (`compiled.as_text()`); the rules are in the module docstring."""
    mod = _Module(hlo_text)
    w = _Walker(mod)
    records: list[tuple[float, str, _Instr]] = []
    w.walk(mod.entry, records)
    by_opcode: dict[str, float] = {}
    custom_calls: list[tuple[float, str, str]] = []
    by_target: dict[str, float] = {}
    for b, _, ins in records:
        by_opcode[ins.opcode] = by_opcode.get(ins.opcode, 0.0) + b
        if ins.opcode == "custom-call":
            target = _quoted(ins.attrs, "custom_call_target")
            custom_calls.append((b, target, ins.name))
            by_target[target] = by_target.get(target, 0.0) + b
    top = sorted(((b, d) for b, d, _ in records if b > 0), key=lambda x: -x[0])[:TOP]
    return HbmTraffic(total=sum(r[0] for r in records), custom_call=sum(c[0] for c in custom_calls),
                      by_opcode=by_opcode, loops=w.loops, top=top, custom_calls=custom_calls,
                      custom_call_by_target=by_target)
