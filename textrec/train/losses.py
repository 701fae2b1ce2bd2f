"""Training losses. Each takes logits already divided by the temperature (`TwoTowerModel.score`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class InBatchSoftmaxLoss(nn.Module):
    """Sampled softmax over a shared candidate set with logQ correction and accidental-hit masking.

    Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations", RecSys 2019:
    candidates drawn in proportion to popularity are over-represented as negatives, so each logit is corrected by
    the log of its sampling probability, s_ij - log q_j. Columns that hold the row's own positive item (other than
    the labelled column) are masked, so a popular item is never pushed down for its own user.

    Inputs: logits [P, C]; target_columns [P] (column of each row's positive); candidate_ids [C] and
    target_ids [P] (item indices, to find accidental hits); log_q [C] or None (no correction).
    """

    def forward(self, logits, target_columns, candidate_ids, target_ids, log_q=None):
        if log_q is not None:
            logits = logits - log_q.to(logits.dtype)
        if torch.unique(candidate_ids).numel() == candidate_ids.numel():
            # distinct candidates: a row's item sits only in its labelled column, so there is no accidental hit
            return F.cross_entropy(logits.float(), target_columns)
        hits = candidate_ids[None, :] == target_ids[:, None]
        hits[torch.arange(len(target_columns), device=logits.device), target_columns] = False
        logits = logits.masked_fill(hits, torch.finfo(logits.dtype).min)
        return F.cross_entropy(logits.float(), target_columns)


class SampledBCELoss(nn.Module):
    """Pointwise binary cross-entropy: each positive against K sampled negatives.

    Inputs: positive_logits [P]; negative_logits [P, K]; negative_mask [P, K] (False where a sampled negative is
    the row's own positive, which is then ignored).
    """

    def forward(self, positive_logits, negative_logits, negative_mask):
        pos = F.binary_cross_entropy_with_logits(positive_logits.float(), torch.ones_like(positive_logits.float()))
        neg = F.binary_cross_entropy_with_logits(
            negative_logits.float(), torch.zeros_like(negative_logits.float()), reduction="none"
        )
        neg = (neg * negative_mask).sum() / negative_mask.sum().clamp_min(1)
        return pos + neg


class RatingMSELoss(nn.Module):
    """Mean squared error between predicted ratings [P] and observed ratings [P] (explicit feedback)."""

    def forward(self, predicted, ratings):
        return F.mse_loss(predicted.float(), ratings.float())


LOSSES = ("softmax", "bce", "mse")
LOGQ_KINDS = ("inclusion", "expected_count", "none")


def check_loss(loss: str, num_negatives: int, where: str = "") -> None:
    """The one check of a loss choice (`training.loss` and `TrainingObjective` both call it)."""
    if loss not in LOSSES:
        raise ValueError(f"{where}loss: expected one of {LOSSES}, got {loss!r}")
    if num_negatives < 0 or (loss == "bce" and num_negatives < 1):
        raise ValueError(f"{where}num_negatives: must be >= 0, and >= 1 for the bce loss, got {num_negatives}")


def check_logq(kind: str, where: str = "") -> None:
    """The one check of a logQ choice (`training.logq` and `TrainingObjective.configure` both call it)."""
    if kind not in LOGQ_KINDS:
        raise ValueError(f"{where}logq: expected one of {LOGQ_KINDS}, got {kind!r}")


def log_sampling_probability(
    candidate_ids: torch.Tensor, item_freq: torch.Tensor, positions: int, uniform: int, kind: str = "inclusion"
):
    """log q_j: the log probability that item j is among the candidates of a batch whose candidates are the
    de-duplicated union of `positions` targets drawn by popularity (`item_freq`, summing to 1) and `uniform` items
    drawn uniformly from the catalogue: q_j = 1 - (1 - p_j)^positions * (1 - 1/N)^uniform.

    This is the inclusion probability of a de-duplicated candidate set. The expected count positions * p_j (Yi et al.
    2019, whose candidates are not de-duplicated) exceeds 1 for popular items and over-corrects them by up to
    log(positions * p_j) nats. `kind="expected_count"` gives that count, log(positions * p_j + uniform / N), on
    purpose: the over-correction pushes popular items up at inference, which ml-100k validation rewards for ID-only
    and text + id models (see docs/benchmarks.md).
    """
    if kind not in LOGQ_KINDS or kind == "none":
        raise ValueError(f"logq: expected one of {LOGQ_KINDS}, got {kind!r}")
    n = item_freq.numel()
    if kind == "expected_count":
        return torch.log((positions * item_freq[candidate_ids] + uniform / n).clamp_min(1e-12))
    p = item_freq[candidate_ids].double().clamp(0.0, 1.0)
    log_miss = positions * torch.log1p(-p.clamp_max(1 - 1e-12))  # log P(j is not among the popularity draws)
    if uniform and n > 1:
        log_miss = log_miss + uniform * math.log1p(-1.0 / n)
    q = -torch.expm1(log_miss)
    return torch.log(q.clamp_min(1e-12)).float()
