"""A finished training run, summarised: the metrics table a recipe prints, the validation curve as a PNG, and
the run facts it records (peak memory, the global batch, a flat config for trackers)."""

from __future__ import annotations

from pathlib import Path

import torch

from textrec.train.config import LoopConfig
from textrec.train.loop import per_process_batch


def examples_per_step(cfg: LoopConfig, processes: int) -> int:
    return per_process_batch(cfg, processes) * processes * cfg.gradient_accumulation_steps


def peak_memory_mb() -> float:
    """Peak resident memory of this process (and peak CUDA memory when on a GPU), in MiB."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        peak = max(peak, torch.cuda.max_memory_allocated() / 2**20)
    return round(peak, 1)


def flat_config(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_config(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float, str, bool)):
            out[f"{prefix}{k}"] = v
    return out


def summary_table(summary: dict, name: str = "textrec") -> str:
    """The metrics table a recipe prints: the same columns as the README's results table (test NDCG@10 with the
    history masked and unmasked, validation NDCG@10, epochs, training seconds), then Recall / MRR / NDCG@20 and the
    run's cost. `name` labels the run's row (e.g. the config file and seed)."""
    results = summary["results"]
    lines = [
        "",
        "| model | NDCG@10 masked | NDCG@10 unmasked | valid NDCG@10 | epochs | train s |",
        "|---|---|---|---|---|---|",
        f"| {name} | {results['test_mask=True']['ndcg@10']:.4f} | {results['test_mask=False']['ndcg@10']:.4f} | "
        f"{summary['best_valid_ndcg@10']:.4f} | {summary['epochs']:g} ({summary['stopped']}) | "
        f"{summary['train_seconds']:.0f} |",
        f"| popularity | {results['popularity_mask=True']['ndcg@10']:.4f} | "
        f"{results['popularity_mask=False']['ndcg@10']:.4f} | - | 0 | 0 |",
        "",
        "| test, history masked | Recall@10 | MRR@10 | NDCG@20 | Recall@20 | events |",
        "|---|---|---|---|---|---|",
    ]
    for label, key in ((name, "test_mask=True"), ("popularity", "popularity_mask=True")):
        m = results[key]
        lines.append(
            f"| {label} | {m['recall@10']:.4f} | {m['mrr@10']:.4f} | {m['ndcg@20']:.4f} | {m['recall@20']:.4f} | "
            f"{m['n_events']} |"
        )
    lines.append(
        f"\n{summary['optimizer_steps']} steps, {summary['epoch_seconds']:.1f}s/epoch, "
        f"{summary['examples_per_second']:.0f} examples/s, {summary['trainable_params']:,} trainable parameters"
    )
    if "rmse" in results["test_mask=True"]:
        m = results["test_mask=True"]
        lines.append(f"ratings: RMSE {m['rmse']:.4f}, MAE {m['mae']:.4f}")
    return "\n".join(lines)


def plot_curve(curve: list[dict], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curve:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    points = [c for c in curve if "valid_ndcg@10" in c]
    ax.plot([c["step"] for c in points], [c["valid_ndcg@10"] for c in points], marker="o")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation NDCG@10")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
