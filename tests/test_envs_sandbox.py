"""rlx.envs.sandbox.run_python: model-written code runs in a limited subprocess; each wall
of the sandbox is tried by code that tries to get through it."""

import os

import pytest

from rlx.envs.sandbox import run_python


def test_code_runs_and_gets_its_output():
    r = run_python("import math, json\nprint(json.dumps([math.factorial(5), sum(range(10))]))", timeout_s=5)
    assert r.ok and r.stdout == "[120, 45]\n" and r.error == ""
    r = run_python("raise ValueError('boom')", timeout_s=5)
    assert not r.ok and r.returncode == 1 and r.error == "ValueError: boom"


def test_files_stay_in_a_fresh_working_directory():
    r = run_python("open('a.txt', 'w').write('hi')\nprint(open('a.txt').read())\nimport os\nprint(os.getcwd())",
                   timeout_s=5)
    assert r.ok and r.stdout.startswith("hi\n")
    work = r.stdout.split("\n")[1]
    assert not os.path.exists(work)                   # removed after the call
    assert "FileNotFoundError" in run_python("open('a.txt').read()", timeout_s=5).error   # not shared


@pytest.mark.parametrize("code", [
    "open('/etc/hostname').read()",                   # reading outside
    "open('/tmp/rlx_sandbox_escape', 'w')",           # writing outside
    "open('../escape.txt', 'w')",                     # relative, outside
    "import os; os.listdir('/')",
    "import os; os.remove('/tmp/anything')",
    "import os; os.chdir('/')",
])
def test_files_outside_are_refused(code):
    r = run_python(code, timeout_s=5)
    assert not r.ok and r.error.startswith("PermissionError: sandbox:"), r.error
    assert not os.path.exists("/tmp/rlx_sandbox_escape")


@pytest.mark.parametrize("code", [
    "import socket; socket.socket()",
    "import socket; socket.create_connection(('127.0.0.1', 80), timeout=1)",
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9/')",
])
def test_the_network_is_refused(code):
    r = run_python(code, timeout_s=5)
    assert not r.ok and "sandbox: socket." in r.error, r.error


@pytest.mark.parametrize("code", [
    "import os\nwhile True:\n    os.fork()",             # a fork bomb
    "import subprocess; subprocess.run(['true'])",
    "import os; os.system('true')",
    "import os; os.execv('/bin/true', ['true'])",
    "import ctypes",                                    # native code
    "import resource; resource.setrlimit(resource.RLIMIT_AS, (-1, -1))",   # lifting its own limits
])
def test_new_processes_and_native_code_are_refused(code):
    r = run_python(code, timeout_s=5)
    assert not r.ok and "PermissionError: sandbox:" in r.error, r.error


def test_memory_bombs_hit_the_memory_limit():
    for code in ("x = 'a' * (2 ** 31)", "xs = []\nwhile True:\n    xs.append(bytearray(10 ** 7))"):
        r = run_python(code, timeout_s=10, memory_mb=256)
        assert not r.ok and r.error == "MemoryError", r.error


def test_endless_code_is_killed_and_output_is_capped():
    r = run_python("while True:\n    pass", timeout_s=1)
    assert r.timed_out and r.returncode is None and r.error == "timeout"
    r = run_python("print('start')\nwhile True:\n    print('x' * 1000)", timeout_s=5, max_output_bytes=4096)
    assert r.truncated and len(r.stdout) == 4096 and r.stdout.startswith("start\n")
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        run_python("pass", timeout_s=0)
