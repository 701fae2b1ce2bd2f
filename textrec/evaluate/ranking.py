"""Full-ranking evaluation (protocol E1), exact under any number of processes.

Work is cut into fixed batches by event (or item) index and the batches are dealt round-robin to processes, so
every batch is computed with the same shapes and contents whatever the number of processes; results are gathered
and put back in index order, padding removed. One process and N processes therefore give bit-identical results
(given the same number of BLAS threads per process, which changes float rounding), with no user counted twice
or dropped when the shards are uneven.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from textrec.data.features import HistoryText
from textrec.data.splits import EvalEvent
from textrec.evaluate.metrics import metrics_from_ranks, rating_errors, target_ranks
from textrec.model.encode import (  # noqa: F401 - re-exported: evaluation encodes through the model layer
    cached_text_vectors,
    compute_item_vectors,
    compute_text_vectors,
    encode_histories,
    sharded_map,
    text_vectors_key,
)
from textrec.model.towers import TwoTowerModel

logger = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(
    model: TwoTowerModel,
    events: Sequence[EvalEvent],
    item_vectors: torch.Tensor,
    *,
    mask_history: bool = True,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 256,
    history_text: HistoryText | None = None,
    accelerator=None,
    with_ratings: bool = False,
    desc: str | None = None,
    return_ranks: bool = False,
) -> dict[str, float]:
    """Full-ranking Recall/NDCG/MRR@K of each event's target over the whole catalogue.

    `item_vectors` [N, D] are computed once by the caller. With `mask_history`, items in the event's history are
    excluded from the ranking (never the target itself). With `with_ratings`, RMSE/MAE of predicted ratings too;
    with `return_ranks`, the target's 0-based rank of every event under "ranks".
    """
    was_training = model.training
    model.eval()
    num_items = item_vectors.shape[0]
    rankable = model.rankable_items(num_items)
    unrankable = None if rankable is None else ~rankable.to(item_vectors.device)

    def run(start, end):
        batch = events[start:end]
        if not batch:
            return torch.zeros((0, 2), dtype=torch.float64, device=item_vectors.device)
        users = encode_histories(model, [e.history for e in batch], item_vectors, history_text)
        scores = model.score(users, item_vectors, torch.arange(num_items, device=item_vectors.device))
        targets = torch.as_tensor([e.target for e in batch], device=scores.device)
        masked = None
        if mask_history:
            masked = torch.zeros((len(batch), num_items), dtype=torch.bool, device=scores.device)
            for row, e in enumerate(batch):
                if e.history:
                    masked[row, torch.as_tensor(e.history, device=scores.device)] = True
        if unrankable is not None:  # e.g. items an ID-only model never saw: ranked below everything
            scores = scores.masked_fill(unrankable, float("-inf"))
        ranks = target_ranks(scores, targets, masked).double()
        predicted = model.predict_rating(scores[torch.arange(len(batch)), targets]).double()
        return torch.stack([ranks, predicted], dim=1)

    try:
        out = sharded_map(run, len(events), batch_size, accelerator, desc)
    finally:
        model.train(was_training)
    metrics = metrics_from_ranks(out[:, 0].long().cpu(), ks)
    if return_ranks:  # 0-based rank of each event's target, for paired statistics
        metrics["ranks"] = out[:, 0].long().cpu().tolist()
    if with_ratings and events and events[0].rating is not None:
        metrics.update(rating_errors(out[:, 1].cpu(), [e.rating for e in events]))
    return metrics


def popularity_scores(train_sequences: Sequence, num_items: int) -> torch.Tensor:
    """Training-interaction counts per item: the popularity baseline's score."""
    counts = torch.zeros(num_items, dtype=torch.float64)
    for seq in train_sequences:
        counts += torch.bincount(torch.as_tensor(seq, dtype=torch.long), minlength=num_items).double()
    return counts


def evaluate_scores(
    scores: torch.Tensor, events: Sequence[EvalEvent], *, mask_history: bool = True, ks: Sequence[int] = (10, 20)
) -> dict[str, float]:
    """Metrics of a fixed score vector [N] shared by all users (e.g. popularity), same rules as `evaluate`."""
    return metrics_from_ranks([_rank(scores, e, mask_history) for e in events], ks)


def _rank(scores: torch.Tensor, event: EvalEvent, mask_history: bool) -> int:
    """0-based pessimistic rank of the event's target under `scores` [N], its history masked if asked."""
    masked = torch.zeros(len(scores), dtype=torch.bool)
    if mask_history and event.history:
        masked[torch.as_tensor(event.history)] = True
    return int(target_ranks(scores[None], torch.tensor([event.target]), masked[None])[0])


def evaluate_content_similarity(
    text_vectors: torch.Tensor,
    events: Sequence[EvalEvent],
    *,
    last: int | None = 5,
    mask_history: bool = True,
    ks: Sequence[int] = (10, 20),
) -> dict[str, float]:
    """Metrics of a training-free content baseline: each user scores items by the cosine between their text vectors
    and the mean text vector of the user's `last` history items (None: all of them), e.g. the pretrained encoder's."""
    unit = torch.nn.functional.normalize(text_vectors.float(), dim=-1)
    ranks = []
    for e in events:
        recent = list(e.history) if last is None else list(e.history)[-last:]
        scores = unit @ unit[torch.as_tensor(recent)].mean(0) if recent else torch.zeros(len(unit))
        ranks.append(_rank(scores, e, mask_history))
    return metrics_from_ranks(ranks, ks)
