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


def test_install_ships_tracked_files_and_pins_jax():
    lines = dry("install", "--name", "rlx", "--zone", "z")
    # git archive: tracked files of HEAD only (no .venv, no runs/)
    assert lines[0] == "git -C . archive --format=tar.gz -o /tmp/rlx-src.tar.gz HEAD"
    assert lines[1] == "gcloud compute tpus tpu-vm scp /tmp/rlx-src.tar.gz 'rlx:~/rlx-src.tar.gz' --zone z --worker=all"
    assert lines[2].startswith("gcloud compute tpus tpu-vm ssh rlx --zone z --worker=all '--command=mkdir -p ~/rlx "
                               "&& tar -xzf ~/rlx-src.tar.gz -C ~/rlx && cd ~/rlx")
    assert "rm -rf" not in lines[2]                      # a run directory on the worker survives
    import jax
    assert f"jax[tpu]=={jax.__version__}" in lines[2]    # the version the tests run with


def test_stage_stop_and_logs_from_all_workers():
    assert dry("stage", "--name", "rlx", "--zone", "z", "--src", "gs://b/qwen/", "--dest", "~/m") == [
        "gcloud compute tpus tpu-vm ssh rlx --zone z --worker=all '--command=mkdir -p ~/m && "
        "gcloud storage cp -r gs://b/qwen/* ~/m/'"]
    assert dry("stage", "--name", "rlx", "--zone", "z", "--src", "/data/qwen", "--dest", "~/m")[1] == (
        "gcloud compute tpus tpu-vm scp --recurse /data/qwen/. 'rlx:~/m' --zone z --worker=all")
    assert dry("stop", "--name", "rlx", "--zone", "z") == [
        "gcloud compute tpus tpu-vm ssh rlx --zone z --worker=all "
        "'--command=pkill -f '\"'\"'[p]ython3 -m rlx.train'\"'\"' || true'"]
    (tail,) = dry("logs", "--name", "rlx", "--zone", "z", "--worker", "all")
    assert "--worker=all" in tail and "tail -n 200 ~/rlx_run.log" in tail and "$(hostname)" in tail
    assert dry("fetch-logs", "--name", "rlx", "--zone", "z", "--workers", "2", "--dest", "d") == [
        "mkdir -p d",
        "gcloud compute tpus tpu-vm scp 'rlx:~/rlx_run.log' d/worker-0.log --zone z --worker=0",
        "gcloud compute tpus tpu-vm scp 'rlx:~/rlx_run.log' d/worker-1.log --zone z --worker=1"]


def test_run_logs_delete():
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
