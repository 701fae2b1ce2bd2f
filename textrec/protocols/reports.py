"""Report tables and plots of the E2 (incremental) and E3 (transfer) recipes: markdown and PNG from their JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from textrec.evaluate.metrics import paired_bootstrap
from textrec.protocols.stream import continual_metrics


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


def transfer_markdown(rows: list[dict]) -> str:
    """E3 table from report rows (one seed) or summary rows with `<metric>_sd` (mean +- sd over seeds): per method
    and fraction, NDCG@10 on all / warm / cold target test events, Recall@10, and the fit's cost."""
    table: dict[tuple, dict] = {}
    for r in rows:
        table.setdefault((r.get("dataset", ""), r["method"], float(r["fraction"])), {})[r["slice"]] = r
    lines = [
        "| dataset | method | target users | seeds | NDCG@10 all | warm | cold | Recall@10 all | steps | seconds "
        "| source steps / s | trainable params |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, method, fraction), by_slice in table.items():
        first = by_slice.get("all") or next(iter(by_slice.values()))
        seeds = first.get("seeds", [first.get("seed")])
        source = f"{first['source_steps']:.0f} / {first['source_seconds']:.0f}" if "source_steps" in first else "-"
        cost = [f"{first[k]:.0f}" if first.get(k) is not None else "-" for k in ("steps", "seconds")]
        lines.append(
            f"| {dataset} | {method} | {fraction:.0%} | {len(seeds)} | "
            + " | ".join(_mean_sd(by_slice.get(s), "ndcg@10") for s in ("all", "warm", "cold"))
            + f" | {_mean_sd(first, 'recall@10')} | {cost[0]} | {cost[1]} | {source} | "
            f"{first.get('trainable_params', 0):,} |"
        )
    return "\n".join(lines) + "\n"


def _mean_sd(row: dict | None, name: str) -> str:
    if row is None or row.get(name) is None:
        return "-"
    sd = row.get(f"{name}_sd")
    return f"{row[name]:.4f}" + (f" ± {sd:.4f}" if sd else "")


def transfer_plot(rows: list[dict], path: Path) -> None:
    """Target test NDCG@10 (all events, and the cold slice) against the share of target training users."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, name in zip(axes, ("all", "cold")):
        methods: dict[str, list] = {}
        for r in rows:
            if r["slice"] == name:
                methods.setdefault(r["method"], []).append(
                    (float(r["fraction"]), r["ndcg@10"], r.get("ndcg@10_sd", 0))
                )
        for method, points in methods.items():
            xs, ys, sds = zip(*sorted(points))
            style = "--" if method in ("popularity", "content_similarity", "zero_shot") else "-"
            ax.errorbar(xs, ys, yerr=sds, marker="o", linestyle=style, capsize=3, label=method)
        ax.set_xscale("symlog", linthresh=0.05)
        ax.set(xlabel="share of target training users", ylabel="target test NDCG@10", title=f"{name} test events")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
