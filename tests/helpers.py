"""Small helpers shared by tests (importable because pytest puts tests/ on sys.path)."""

import subprocess
import sys

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


def run_command(cmd, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd, capture_output=True, text=True, **kwargs)`."""
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def kill_at_epoch(monkeypatch, epoch: int) -> None:
    """Within `monkeypatch`, the training loop is killed (KeyboardInterrupt) when it starts epoch `epoch`."""
    import textrec.train.loop as engine

    real = engine.epoch_batches

    def dying(n, batch_size, seed, at, *args, **kwargs):
        if at == epoch:
            raise KeyboardInterrupt("killed")
        return real(n, batch_size, seed, at, *args, **kwargs)

    monkeypatch.setattr(engine, "epoch_batches", dying)
