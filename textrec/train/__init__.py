"""Training: the one loop (`fit`), its objectives and losses, checkpoints, placement checks and incremental
adapter updates."""
