"""Dry-run output of tpu_scripts/tpu.py: the exact gcloud commands (from Google's TPU VM
docs: `gcloud compute tpus tpu-vm create|scp|ssh|delete`)."""

import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "tpu_scripts", "tpu.py")


def dry(*args):
    out = subprocess.run([sys.executable, SCRIPT, args[0], "--dry-run", *args[1:]], capture_output=True,
                         text=True, check=True)
    return out.stdout.strip().splitlines()


@pytest.mark.parametrize("accel,version", [("v4-32", "tpu-ubuntu2204-base"),
                                           ("v5litepod-16", "v2-alpha-tpuv5-lite"),
                                           ("v5p-8", "v2-alpha-tpuv5")])
def test_create(accel, version):
    assert dry("create", "--name", "rlx", "--zone", "us-central2-b", "--type", accel) == [
        f"gcloud compute tpus tpu-vm create rlx --zone us-central2-b --accelerator-type {accel} "
        f"--version {version}"]


def test_create_spot_project_and_bad_type():
    assert dry("create", "--name", "a", "--zone", "z", "--project", "p", "--type", "v4-8", "--spot") == [
        "gcloud compute tpus tpu-vm create a --zone z --project p --accelerator-type v4-8 "
        "--version tpu-ubuntu2204-base --spot"]
    bad = subprocess.run([sys.executable, SCRIPT, "create", "--name", "a", "--zone", "z", "--type", "v9-8",
                          "--dry-run"], capture_output=True, text=True)
    assert bad.returncode != 0 and "v4-N" in bad.stderr


def test_install_run_logs_delete():
    lines = dry("install", "--name", "rlx", "--zone", "z")
    assert lines[0] == "gcloud compute tpus tpu-vm scp --recurse . 'rlx:~/rlx' --zone z --worker=all"
    assert lines[1].startswith("gcloud compute tpus tpu-vm ssh rlx --zone z --worker=all '--command=cd ~/rlx")
    assert "'jax[tpu]'" in lines[1] or "jax[tpu]" in lines[1]
    (run,) = dry("run", "--name", "rlx", "--zone", "z", "--config", "configs/grpo.py",
                 "--run-dir", "gs://b/runs/g", "--", "--config.rl.group_size=16")
    assert run.startswith("gcloud compute tpus tpu-vm ssh rlx --zone z --worker=all ")
    for part in ("python3 -m rlx.train --config=configs/grpo.py --config.mesh.auto_distributed=True",
                 "--config.run_dir=gs://b/runs/g", "--config.rl.group_size=16", "> ~/rlx_run.log 2>&1 &"):
        assert part in run
    assert dry("logs", "--name", "rlx", "--zone", "z") == [
        "gcloud compute tpus tpu-vm ssh rlx --zone z --worker=0 '--command=tail -n 200 -f ~/rlx_run.log'"]
    assert dry("delete", "--name", "rlx", "--zone", "z") == [
        "gcloud compute tpus tpu-vm delete rlx --zone z --quiet"]
