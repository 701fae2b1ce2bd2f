"""Where and how a benchmark row was measured: the textrec version, the git commit, the machine as detected (CPU
model, CPU count, GPU), the thread count, the date, and the command line."""

from __future__ import annotations

import platform
import subprocess
import time
from pathlib import Path


def environment() -> dict:
    """The provenance every row records: textrec version, git commit, the machine as detected, threads, date."""
    import torch

    import textrec

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
        )  # fmt: skip
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return {
        "textrec_version": textrec.__version__,
        "git_commit": git_commit(),
        "machine": f"{platform.machine()} {cpu}, {_cpus()} CPUs{gpu}",
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
    }


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def git_commit() -> str:
    """The checkout's commit (with `+dirty` when files differ), or "" outside a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=root, capture_output=True, text=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else ""


def this_command() -> str:
    """This process's command line as a reader would type it from the checkout's root (`python scripts/x.py ...`),
    with `OMP_NUM_THREADS=n` in front when it was set."""
    import os
    import shlex
    import sys

    script = Path(sys.argv[0]).resolve()
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if script.is_relative_to(root):
            script = script.relative_to(root)
            break
    threads = os.environ.get("OMP_NUM_THREADS")
    return (f"OMP_NUM_THREADS={threads} " if threads else "") + shlex.join(["python", str(script), *sys.argv[1:]])
