"""Full-ranking metrics (Recall/NDCG/MRR@K) with pessimistic tie-breaking.

The rank of the target is the number of *other* unmasked items whose score is greater than **or equal to** the
target's score, so a tie never favours the model (an all-equal scorer ranks the target last). A NaN target score
ranks last, and a NaN score on any other item counts as ahead of the target. The target itself is never masked,
even when it occurs in the history.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

METRIC_NAMES = ("recall", "ndcg", "mrr")


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor | None = None) -> torch.Tensor:
    """0-based pessimistic ranks of `targets` [B] in `scores` [B, N]; `masked` [B, N] bool excludes items."""
    scores = scores.float()
    rows = torch.arange(scores.shape[0], device=scores.device)
    target_scores = scores[rows, targets]
    ahead = (scores >= target_scores[:, None]) | torch.isnan(scores)  # a NaN elsewhere never helps the target
    ahead[rows, targets] = False
    if masked is not None:
        ahead &= ~masked
    ranks = ahead.sum(dim=1)
    worst = scores.shape[1] - 1
    return torch.where(torch.isnan(target_scores), torch.full_like(ranks, worst), ranks)


def metrics_from_ranks(ranks: Sequence[int] | torch.Tensor, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
    """Mean Recall@K, NDCG@K and MRR@K over events (one target per event), plus `n_events`."""
    ranks = torch.as_tensor(ranks, dtype=torch.float64)
    out: dict[str, float] = {}
    n = ranks.numel()
    for k in ks:
        hit = ranks < k
        out[f"recall@{k}"] = hit.double().mean().item() if n else math.nan
        out[f"ndcg@{k}"] = (hit / torch.log2(ranks + 2)).mean().item() if n else math.nan
        out[f"mrr@{k}"] = (hit / (ranks + 1)).mean().item() if n else math.nan
    out["n_events"] = n
    return out


def ndcg_per_event(ranks: Sequence[int] | torch.Tensor, k: int = 10) -> torch.Tensor:
    """NDCG@k of each event (one target): 1 / log2(rank + 2) when rank < k, else 0."""
    ranks = torch.as_tensor(ranks, dtype=torch.float64)
    return (ranks < k) / torch.log2(ranks + 2)


def paired_bootstrap(a, b, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Paired bootstrap of per-event scores `a` and `b` on the same events (1,000 resamples of events): the mean
    difference a - b and the ratio mean(a) / mean(b), each with its `level` percentile interval. An interval that
    contains 0 (difference) or 1 (ratio) means "no difference"."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError(f"paired_bootstrap: needs two equal, non-empty per-event arrays, got {a.shape} and {b.shape}")
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, a.numel(), (resamples, a.numel()), generator=gen)
    mean_a, mean_b = a[rows].mean(1), b[rows].mean(1)
    tail = (1 - level) / 2
    diff, ratio = mean_a - mean_b, mean_a / mean_b.clamp_min(1e-12)
    return {
        "mean_difference": float(a.mean() - b.mean()),
        "difference_low": float(diff.quantile(tail)),
        "difference_high": float(diff.quantile(1 - tail)),
        "ratio": float(a.mean() / b.mean().clamp_min(1e-12)),
        "ratio_low": float(ratio.quantile(tail)),
        "ratio_high": float(ratio.quantile(1 - tail)),
        "events": a.numel(),
        "resamples": resamples,
    }


def rating_errors(predicted: Sequence[float], observed: Sequence[float]) -> dict[str, float]:
    p = torch.as_tensor(predicted, dtype=torch.float64)
    o = torch.as_tensor(observed, dtype=torch.float64)
    return {"rmse": (p - o).pow(2).mean().sqrt().item(), "mae": (p - o).abs().mean().item()}
