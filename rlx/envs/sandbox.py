"""A Python tool for model-written code: a subprocess with limits, never the trainer.

    result = run_python("print(sum(range(10)))", timeout_s=5)
    result.stdout == "45\n"; result.ok

Each call runs the code in a fresh `python -I -S` subprocess (isolated: no user site,
no site-packages, no PYTHON* variables; only the standard library), in a new temporary
working directory that is deleted afterwards, in its own session (the whole process
group is killed at the end). The limits are set by the child's own bootstrap before it
reads the code (no `preexec_fn`, which is unsafe in a trainer's threaded process):

  wall time     `timeout_s` (killed after it; `timed_out`)
  CPU time      RLIMIT_CPU = ceil(timeout_s) + 1 s
  memory        RLIMIT_AS = `memory_mb` (a MemoryError inside the code)
  output        stdout and stderr go to files capped by RLIMIT_FSIZE = `max_output_bytes`
                (writing past it fails inside the code; `truncated`); the same cap holds
                for every file the code writes
  processes     RLIMIT_NPROC = 0 more (not enforced for root, hence also the hook below)

and a Python audit hook (`sys.addaudithook`, installed before the code runs and not
removable by it) refuses, with PermissionError:
  - the network: socket creation, connect, bind, getaddrinfo;
  - new processes: fork, exec, spawn, system, subprocess, posix_spawn;
  - native code: ctypes' dlopen / dlsym / raw memory access;
  - raising its own limits (resource.setrlimit / prlimit; root could otherwise);
  - files outside the working directory: opening for writing anywhere else, reading
    anywhere but the working directory and the standard library's own directories,
    listing, creating, removing or renaming paths outside it.
The audit hook works at the level of the Python runtime: it is a second wall behind the
process limits, not a kernel sandbox (a container or seccomp profile is the stronger
wall where a cluster offers one). `ToolResult.error` names what stopped the code.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile

# The child's bootstrap: read the code from stdin, install the hook, run the code.
_BOOTSTRAP = r'''
import os, resource, signal, sys
for _lim, _val in {limits!r}:
    resource.setrlimit(getattr(resource, _lim), (_val, _val))
try:
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
except (ValueError, OSError):
    pass
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # past the cap, writes fail (EFBIG)
_code = sys.stdin.read()
_root = os.path.realpath(os.getcwd())
_read_ok = tuple(os.path.realpath(p) for p in {read_ok!r})
_denied = {denied!r}

def _inside(path, roots):
    try:
        p = os.path.realpath(os.fsdecode(path) if not isinstance(path, int) else "")
    except Exception:
        return False
    return any(p == r or p.startswith(r + os.sep) for r in roots)

def _hook(event, args):
    if event in _denied or event.startswith(("socket.", "ctypes.")):
        raise PermissionError(f"sandbox: {{event}} is not allowed")
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int) or path is None:
            return
        writing = (isinstance(mode, str) and any(m in mode for m in "wax+")) or bool(
            (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC))
        if _inside(path, (_root,)) or (not writing and _inside(path, _read_ok)):
            return
        raise PermissionError(f"sandbox: access to {{os.fsdecode(path)!r}} outside the working directory")
    if event in ("os.listdir", "os.scandir"):
        for a in args:
            if isinstance(a, (str, bytes, os.PathLike)) and not _inside(a, (_root,) + _read_ok):
                raise PermissionError(f"sandbox: {{event}} of {{os.fsdecode(a)!r}} outside the working directory")
    if event in ("os.mkdir", "os.remove", "os.rmdir", "os.rename", "os.chdir",
                 "os.chmod", "os.chown", "os.link", "os.symlink", "os.truncate", "os.utime", "shutil.rmtree"):
        for a in args:
            if isinstance(a, (str, bytes, os.PathLike)) and not _inside(a, (_root,)):
                raise PermissionError(f"sandbox: {{event}} of {{os.fsdecode(a)!r}} outside the working directory")

sys.addaudithook(_hook)
del _hook
exec(compile(_code, "<tool>", "exec"), {{"__name__": "__main__"}})
'''

_DENIED_EVENTS = ("os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.startfile",
                  "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill", "sys.remote_exec",
                  "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto",
                  "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.addressof", "ctypes.string_at",
                  "ctypes.wstring_at", "ctypes.call_function", "mmap.__new__", "resource.setrlimit",
                  "resource.prlimit")


@dataclasses.dataclass(frozen=True)
class ToolResult:
    stdout: str
    stderr: str
    returncode: int | None
    timed_out: bool
    truncated: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def error(self) -> str:
        """Why the code did not finish cleanly ("" if it did): the timeout, a signal, or
        the last line of its traceback."""
        if self.timed_out:
            return "timeout"
        if self.returncode is not None and self.returncode < 0:
            return f"killed by {signal.Signals(-self.returncode).name}"
        if self.returncode:
            lines = [x for x in self.stderr.strip().splitlines() if x.strip()]
            return lines[-1] if lines else f"exit code {self.returncode}"
        return ""


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(sorted({paths[k] for k in ("stdlib", "platstdlib") if k in paths}))


def run_python(code: str, *, timeout_s: float = 10.0, memory_mb: int = 512,
               max_output_bytes: int = 65536) -> ToolResult:
    """Runs `code` in the sandbox described in the module docstring."""
    if not timeout_s > 0:
        raise ValueError(f"run_python: timeout_s must be > 0, got {timeout_s}")
    if memory_mb < 64:
        raise ValueError(f"run_python: memory_mb must be >= 64 (the interpreter itself), got {memory_mb}")
    if max_output_bytes < 1:
        raise ValueError(f"run_python: max_output_bytes must be >= 1, got {max_output_bytes}")
    work = tempfile.mkdtemp(prefix="rlx_tool_")
    io_dir = tempfile.mkdtemp(prefix="rlx_tool_io_")
    cpu = math.ceil(timeout_s) + 1
    limits = (("RLIMIT_CPU", cpu), ("RLIMIT_AS", memory_mb * 1024 * 1024), ("RLIMIT_FSIZE", max_output_bytes),
              ("RLIMIT_CORE", 0))
    boot = _BOOTSTRAP.format(limits=limits, read_ok=_stdlib_dirs(), denied=_DENIED_EVENTS)
    try:
        with open(os.path.join(io_dir, "out"), "wb") as out, open(os.path.join(io_dir, "err"), "wb") as err:
            proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", "-c", boot], cwd=work, stdin=subprocess.PIPE,
                                    stdout=out, stderr=err, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                                    start_new_session=True)
            timed_out = False
            try:
                proc.communicate(code.encode(), timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()

        def read(name):
            with open(os.path.join(io_dir, name), "rb") as f:
                data = f.read(max_output_bytes + 1)
            return data[:max_output_bytes].decode("utf-8", "replace"), len(data) >= max_output_bytes

        stdout, t1 = read("out")
        stderr, t2 = read("err")
        return ToolResult(stdout, stderr, None if timed_out else proc.returncode, timed_out, t1 or t2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(io_dir, ignore_errors=True)
