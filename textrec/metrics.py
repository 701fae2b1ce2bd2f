"""Full-ranking metrics (Recall/NDCG/MRR@K) with pessimistic tie-breaking.

The rank of the target is the number of *other* unmasked items whose score is greater than **or equal to** the
target's score, so a tie never favours the model (an all-equal scorer ranks the target last). A NaN target score
ranks last. The target itself is never masked, even when it occurs in the history.
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
    ahead = scores >= target_scores[:, None]
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


def rating_errors(predicted: Sequence[float], observed: Sequence[float]) -> dict[str, float]:
    p = torch.as_tensor(predicted, dtype=torch.float64)
    o = torch.as_tensor(observed, dtype=torch.float64)
    return {"rmse": (p - o).pow(2).mean().sqrt().item(), "mae": (p - o).abs().mean().item()}
