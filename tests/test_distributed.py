"""One process and two processes (gloo on CPU) give exactly the same evaluation."""

import json
import os
import sys
from pathlib import Path

from helpers import LAUNCH_TWO_PROCESSES, run_command

SCRIPT = Path(__file__).resolve().parent / "scripts" / "dist_eval.py"
LAUNCH = LAUNCH_TWO_PROCESSES


def _run(cmd, **env):
    proc = run_command(cmd, timeout=600, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_two_process_evaluation_equals_one_process(tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    # accelerate launch runs each process with one thread; BLAS rounding depends on the thread count, so the
    # single-process reference uses one thread too. Then every number is bit-identical.
    _run([sys.executable, str(SCRIPT), str(one)], OMP_NUM_THREADS="1")
    _run(LAUNCH + [str(SCRIPT), str(two)])
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert a["num_processes"] == 1 and b["num_processes"] == 2
    assert b["event_order"] == list(range(203))  # no event dropped or counted twice
    assert b["gloo_threads_after_end"] == []  # the gloo group is freed at end_training, before interpreter exit
    for key in a:
        if key not in ("num_processes", "gloo_threads_after_end"):
            assert a[key] == b[key], key  # exactly equal, not approximately
    assert a["sequence_mask=True"]["n_events"] == 203
