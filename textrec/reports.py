"""Report tables and plots of the E2 (incremental) and E3 (transfer) recipes: markdown and PNG from their JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from textrec.metrics import paired_bootstrap
from textrec.stream import continual_metrics


def strategy_summary(matrix, costs, trainable_params: int, valid_prequential) -> dict:
    """One strategy's E2 figures: the matrix R[t][j] with its continual metrics, costs, and the prequential
    scores on validation events (what budgets are tuned on, never the test rows)."""
    return {
        "matrix": matrix,
        **continual_metrics(matrix),
        "costs": costs,
        "cumulative_seconds": float(sum(c["seconds"] for c in costs)),
        "optimizer_steps": int(sum(c["steps"] for c in costs)),
        "examples_seen": int(sum(c["examples"] for c in costs)),
        "trainable_params": trainable_params,
        "valid_prequential": valid_prequential,
        "mean_valid_prequential": float(np.mean(valid_prequential)),
    }


def add_paired_intervals(report: dict, per_event: dict, reference: str, seed: int) -> None:
    """Each strategy's paired bootstrap interval against `reference` over the same prequential test events."""
    if reference not in per_event:
        return
    for strategy, values in per_event.items():
        if strategy != reference:
            interval = paired_bootstrap(values, per_event[reference], seed=seed)
            report["strategies"][strategy][f"prequential_vs_{reference}"] = interval


def incremental_rows(report: dict) -> list[dict]:
    """One row per strategy with the headline numbers (what docs/benchmarks/incremental_ml100k.json holds)."""
    return [
        {
            "strategy": name,
            "mean_prequential_ndcg@10": s["mean_prequential"],
            "mean_current_ndcg@10": float(np.mean(s["current"][1:])),
            "cumulative_seconds": s["cumulative_seconds"],
            "mean_forgetting": s["mean_forgetting"],
            "mean_relative_forgetting": s["mean_relative_forgetting"],
            "bwt": s["bwt"],
            "optimizer_steps": s["optimizer_steps"],
            "examples_seen": s["examples_seen"],
            "trainable_params": s["trainable_params"],
            "adapter_bytes": [c.get("adapter_bytes") for c in s["costs"]],
            "prequential_vs_full_retrain": s.get("prequential_vs_full_retrain"),
        }
        for name, s in report["strategies"].items()
    ]


def incremental_markdown(report: dict) -> str:
    strategies = report["strategies"]
    full = strategies.get("full_retrain")
    lines = [
        "| strategy | mean prequential NDCG@10 | mean current NDCG@10 | mean forgetting | relative forgetting | BWT "
        "| cumulative s | steps | examples | x full_retrain prequential [95% CI] | x full_retrain time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in strategies.items():
        rel_q = s["mean_prequential"] / full["mean_prequential"] if full else float("nan")
        rel_t = s["cumulative_seconds"] / full["cumulative_seconds"] if full and full["cumulative_seconds"] else 0
        ci = s.get("prequential_vs_full_retrain")
        interval = f" [{ci['ratio_low']:.3f}, {ci['ratio_high']:.3f}]" if ci else ""
        lines.append(
            f"| {name} | {s['mean_prequential']:.4f} | {np.mean(s['current'][1:]):.4f} | "
            f"{s['mean_forgetting']:.4f} | {s['mean_relative_forgetting']:.1%} | {s['bwt']:+.4f} | "
            f"{s['cumulative_seconds']:.0f} | {s['optimizer_steps']} | {s['examples_seen']} | {rel_q:.3f}{interval} | "
            f"{rel_t:.3f} |"
        )
    return "\n".join(lines) + "\n"


def incremental_plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, s in report["strategies"].items():
        slices = range(1, len(s["matrix"]))
        ax1.plot(list(slices), s["prequential"], marker="o", label=name)
        ax2.plot(list(slices), np.cumsum([c["seconds"] for c in s["costs"]]), marker="o", label=name)
    ax1.set(xlabel="slice t", ylabel="NDCG@10 on slice t before training on it", title="prequential NDCG@10")
    ax2.set(xlabel="slice t", ylabel="seconds", title="cumulative training time")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def transfer_markdown(results: dict) -> str:
    lines = [
        "| method | target users | NDCG@10 | Recall@10 | cold-item NDCG@10 | trainable params |",
        "|---|---|---|---|---|---|",
    ]
    for method, by_fraction in results.items():
        for fraction, m in by_fraction.items():
            cold = f"{m['cold_ndcg@10']:.4f}" if m["cold_ndcg@10"] is not None else "-"
            lines.append(
                f"| {method} | {float(fraction):.0%} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {cold} | "
                f"{m['trainable_params']:,} |"
            )
    return "\n".join(lines) + "\n"


def transfer_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, by_fraction in results.items():
        xs = [float(f) for f in by_fraction]
        ax.plot(xs, [m["ndcg@10"] for m in by_fraction.values()], marker="o", label=method)
    ax.set(xlabel="share of target training users", ylabel="target test NDCG@10", xscale="symlog")
    ax.set_xscale("symlog", linthresh=0.05)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
