"""Small helpers shared by tests (importable because pytest puts tests/ on sys.path)."""

import subprocess
import sys
import warnings

# `accelerate launch --multi_gpu --num_processes 2` on a CPU machine: two gloo processes (MULTI_CPU).
LAUNCH_TWO_PROCESSES = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]

# A gloo worker sometimes aborts with this C++ message (about 1 run in 40 of the two-process evaluation test on this
# 2-core machine, after the scripts destroy their process group); the run is repeated once when it is seen, and
# any other failure is reported as it is.
GLOO_ABORT = "terminate called without an active exception"


def run_command(cmd, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd, capture_output=True, text=True, **kwargs)`, retried once after a gloo abort."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0 and GLOO_ABORT in proc.stderr:
        warnings.warn(f"retrying after a gloo abort: {' '.join(map(str, cmd[:6]))} ...", stacklevel=2)
        proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    return proc
