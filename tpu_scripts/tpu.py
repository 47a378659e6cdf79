#!/usr/bin/env python3
"""Thin launcher for TPU VMs and pod slices: the gcloud commands, nothing home-made.

    python tpu_scripts/tpu.py create  --name rlx-v4 --zone us-central2-b --type v4-32
    python tpu_scripts/tpu.py install --name rlx-v4 --zone us-central2-b
    python tpu_scripts/tpu.py stage   --name rlx-v4 --zone us-central2-b \
        --src gs://my-bucket/Qwen2.5-0.5B --dest '~/models/Qwen2.5-0.5B'
    python tpu_scripts/tpu.py run     --name rlx-v4 --zone us-central2-b \
        --config configs/grpo.py --run-dir gs://my-bucket/runs/grpo -- --config.rl.group_size=16
    python tpu_scripts/tpu.py logs    --name rlx-v4 --zone us-central2-b [--worker all]
    python tpu_scripts/tpu.py fetch-logs --name rlx-v4 --zone us-central2-b --workers 4 --dest runs/tpu-logs
    python tpu_scripts/tpu.py stop    --name rlx-v4 --zone us-central2-b
    python tpu_scripts/tpu.py delete  --name rlx-v4 --zone us-central2-b

`install` ships only the checkout's tracked files (`git archive` of HEAD — commit first: no .venv, no
runs/, nothing git ignores) and installs rlx with `jax[tpu]` pinned to `JAX_VERSION`, the
version the test suite ran with (a test keeps the two equal). `stage` puts model
weights on every worker (from gs:// with `gcloud storage cp`, or a local directory with
scp). `logs --worker all` prints every worker's log tail, each line prefixed by its
host; `fetch-logs` copies each worker's log here.

Every subcommand takes `--dry-run`, which prints the commands instead of running them
(one per line, shell-quoted). Multi-host: `run` starts the same command on all
workers (`--worker=all`); each calls `jax.distributed.initialize()`, which discovers
the slice by itself (`--config.mesh.auto_distributed=True`). Checkpoints and TFDS data
can live on gs:// paths (Orbax and TFDS read and write GCS directly).
Only the standard library is used, so this runs on a laptop without rlx installed.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

# Runtime (software) versions per TPU generation, per Google's TPU VM docs.
RUNTIME = {"v4": "tpu-ubuntu2204-base", "v5e": "v2-alpha-tpuv5-lite", "v5p": "v2-alpha-tpuv5",
           "v6e": "v2-alpha-tpuv6e"}
# The accelerator-type prefix gcloud expects for each generation.
TYPE_PREFIX = {"v4": "v4-", "v5e": "v5litepod-", "v5p": "v5p-", "v6e": "v6e-"}
LOG = "~/rlx_run.log"
# jax[tpu] pinned to the version the test suite ran with (tests/test_tpu_scripts.py
# checks it against the installed jax).
JAX_VERSION = "0.10.2"
ARCHIVE = "rlx-src.tar.gz"


def generation(accel_type: str) -> str:
    for gen, prefix in TYPE_PREFIX.items():
        if accel_type.startswith(prefix) and accel_type[len(prefix):].isdigit():
            return gen
    raise SystemExit(f"--type {accel_type!r}: expected one of "
                     + ", ".join(p + "N" for p in TYPE_PREFIX.values()) + " (e.g. v4-8, v5litepod-16, v5p-32)")


def _base(args) -> list[str]:
    out = ["--zone", args.zone]
    if args.project:
        out += ["--project", args.project]
    return out


def _ssh(args, command: str, worker: str = "all") -> list[str]:
    return (["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.name] + _base(args)
            + [f"--worker={worker}", f"--command={command}"])


def cmd_create(args) -> list[list[str]]:
    gen = generation(args.type)
    c = (["gcloud", "compute", "tpus", "tpu-vm", "create", args.name] + _base(args)
         + ["--accelerator-type", args.type, "--version", args.version or RUNTIME[gen]])
    if args.spot:
        c.append("--spot")
    return [c]


def cmd_install(args) -> list[list[str]]:
    # Ship the tracked files of HEAD (what you run is what you tested, without the
    # git-ignored .venv and runs/), then install rlx with the pinned TPU build of jax.
    local = f"/tmp/{ARCHIVE}"
    archive = ["git", "-C", args.src, "archive", "--format=tar.gz", "-o", local, args.ref]
    copy = (["gcloud", "compute", "tpus", "tpu-vm", "scp", local, f"{args.name}:~/{ARCHIVE}"]
            + _base(args) + ["--worker=all"])
    # Extracted over ~/rlx: tracked files are replaced, a run directory there is kept.
    setup = (f"mkdir -p ~/rlx && tar -xzf ~/{ARCHIVE} -C ~/rlx && cd ~/rlx && "
             "python3 -m pip install -q -U pip && "
             f"python3 -m pip install -q -e . 'jax[tpu]=={JAX_VERSION}' "
             "-f https://storage.googleapis.com/jax-releases/libtpu_releases.html")
    return [archive, copy, _ssh(args, setup)]


def cmd_stage(args) -> list[list[str]]:
    # Model weights on every worker: workers read gs:// themselves; a local directory is
    # copied to each.
    dest = args.dest
    if args.src.startswith("gs://"):
        return [_ssh(args, f"mkdir -p {dest} && gcloud storage cp -r {args.src.rstrip('/')}/* {dest}/")]
    return [_ssh(args, f"mkdir -p {dest}"),
            ["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse", args.src.rstrip("/") + "/.",
             f"{args.name}:{dest}"] + _base(args) + ["--worker=all"]]


def cmd_run(args) -> list[list[str]]:
    flags = [f"--config={args.config}", "--config.mesh.auto_distributed=True"]
    if args.run_dir:
        flags.append(f"--config.run_dir={args.run_dir}")
    if args.resume:
        flags.append("--resume")
    flags += args.overrides
    train = "python3 -m rlx.train " + " ".join(shlex.quote(f) for f in flags)
    return [_ssh(args, f"cd ~/rlx && nohup {train} > {LOG} 2>&1 &")]


def cmd_stop(args) -> list[list[str]]:
    # Every worker's training process (a slice runs one per worker; stopping one hangs the others).
    # "[p]ython3": the pattern does not match the remote shell running pkill itself.
    return [_ssh(args, "pkill -f '[p]ython3 -m rlx.train' || true")]


def cmd_logs(args) -> list[list[str]]:
    if args.worker == "all":
        return [_ssh(args, f"tail -n {args.lines} {LOG} | sed \"s/^/[$(hostname)] /\"", worker="all")]
    return [_ssh(args, f"tail -n {args.lines} -f {LOG}", worker=str(args.worker))]


def cmd_fetch_logs(args) -> list[list[str]]:
    out = [["mkdir", "-p", args.dest]]
    for i in range(args.workers):
        out.append(["gcloud", "compute", "tpus", "tpu-vm", "scp", f"{args.name}:{LOG}",
                    f"{args.dest}/worker-{i}.log"] + _base(args) + [f"--worker={i}"])
    return out


def cmd_delete(args) -> list[list[str]]:
    return [["gcloud", "compute", "tpus", "tpu-vm", "delete", args.name] + _base(args) + ["--quiet"]]


COMMANDS = {"create": cmd_create, "install": cmd_install, "stage": cmd_stage, "run": cmd_run,
            "stop": cmd_stop, "logs": cmd_logs, "fetch-logs": cmd_fetch_logs, "delete": cmd_delete}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="TPU VM / pod slice launcher for rlx")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in COMMANDS:
        p = sub.add_parser(name)
        p.add_argument("--name", required=True, help="TPU VM name")
        p.add_argument("--zone", required=True)
        p.add_argument("--project", default="")
        p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
        if name == "create":
            p.add_argument("--type", required=True, help="accelerator type: v4-8, v5litepod-16, v5p-32, ...")
            p.add_argument("--version", default="", help="runtime version (default per generation)")
            p.add_argument("--spot", action="store_true")
        if name == "install":
            p.add_argument("--src", default=".", help="local rlx git checkout to ship")
            p.add_argument("--ref", default="HEAD", help="git revision to ship (tracked files only)")
        if name == "stage":
            p.add_argument("--src", required=True, help="gs://bucket/model or a local HF model directory")
            p.add_argument("--dest", required=True, help="directory on every worker (e.g. ~/models/qwen)")
        if name == "run":
            p.add_argument("--config", required=True)
            p.add_argument("--run-dir", default="", help="e.g. gs://bucket/runs/name")
            p.add_argument("--resume", action="store_true")
            p.add_argument("overrides", nargs="*", help="--config.key=value overrides (after --)")
        if name == "logs":
            p.add_argument("--worker", default="0", help="worker index, or all (tails, host-prefixed)")
            p.add_argument("--lines", type=int, default=200)
        if name == "fetch-logs":
            p.add_argument("--workers", type=int, required=True, help="number of workers of the slice")
            p.add_argument("--dest", default="runs/tpu-logs")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    cmds = COMMANDS[args.cmd](args)
    for c in cmds:
        line = shlex.join(c)
        if args.dry_run:
            print(line)
            continue
        print(f"+ {line}", file=sys.stderr)
        rc = subprocess.call(c)
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
