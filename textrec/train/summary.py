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


def summary_table(summary: dict) -> str:
    lines = [
        "",
        "| model | mask_history | NDCG@10 | Recall@10 | MRR@10 | NDCG@20 | Recall@20 | events |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, label in (("test", "textrec"), ("popularity", "popularity")):
        for mask in (True, False):
            m = summary["results"][f"{name}_mask={mask}"]
            lines.append(
                f"| {label} | {mask} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {m['mrr@10']:.4f} | "
                f"{m['ndcg@20']:.4f} | {m['recall@20']:.4f} | {m['n_events']} |"
            )
    lines.append(
        f"\nbest valid NDCG@10 {summary['best_valid_ndcg@10']:.4f}; {summary['epochs']} epochs "
        f"(stopped: {summary['stopped']}), "
        f"{summary['optimizer_steps']} steps, {summary['train_seconds']:.0f}s training, "
        f"{summary['epoch_seconds']:.1f}s/epoch, {summary['examples_per_second']:.0f} examples/s, "
        f"{summary['trainable_params']:,} trainable parameters"
    )
    if "rmse" in summary["results"]["test_mask=True"]:
        lines.append(
            f"ratings: RMSE {summary['results']['test_mask=True']['rmse']:.4f}, "
            f"MAE {summary['results']['test_mask=True']['mae']:.4f}"
        )
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
