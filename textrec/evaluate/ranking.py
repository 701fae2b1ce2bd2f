"""Full-ranking evaluation (protocol E1), exact under any number of processes.

`rank_events` is the one ranking kernel: evaluation (`evaluate`, `evaluate_scores`, `evaluate_content_similarity`),
the adversarial attack grid, the transfer protocol's rankers and the benchmark scripts all rank through it, each with
its own score function. Work is cut into fixed batches by event (or item) index and the batches are dealt
round-robin to processes, so every batch is computed with the same shapes and contents whatever the number of
processes; results are gathered and put back in index order, padding removed. One process and N processes therefore
give bit-identical results (given the same number of BLAS threads per process, which changes float rounding), with
no user counted twice or dropped when the shards are uneven.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
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


ScoreFn = Callable[[int, int], torch.Tensor]


@torch.no_grad()
def rank_events(
    score_fn: ScoreFn,
    events: Sequence[EvalEvent],
    num_items: int,
    *,
    mask_history: bool = True,
    unrankable: torch.Tensor | None = None,
    target_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 256,
    accelerator=None,
    device=None,
    desc: str | None = None,
):
    """The one ranking kernel: the 0-based pessimistic rank [E] (int64, on the CPU) of each event's target among
    `num_items` items (`target_ranks`: a tie counts against the target, a NaN elsewhere ranks ahead of it).

    `score_fn(start, end)` gives the [end - start, N] scores of `events[start:end]`; it is called on fixed batches of
    `batch_size` events, sharded over the processes of `accelerator` (`sharded_map`), so the result does not depend
    on the number of processes. With `mask_history`, each event's history items are left out of its ranking (never
    the target itself); `unrankable` [N] bool items score -inf (ranked below everything). With `target_fn`, the
    value it maps the targets' scores [B] to (e.g. a predicted rating) comes back too: `(ranks, values [E] float64)`.
    `device`: where an empty batch is made (the scores' device), for gathering across processes."""

    def run(start, end):
        if end == start:
            return torch.zeros((0, 2), dtype=torch.float64, device=device)
        batch = events[start:end]
        scores = score_fn(start, end)
        if unrankable is not None:
            scores = scores.masked_fill(unrankable.to(scores.device), float("-inf"))
        targets = torch.as_tensor([e.target for e in batch], device=scores.device)
        masked = history_mask(batch, num_items, scores.device) if mask_history else None
        ranks = target_ranks(scores, targets, masked)
        picked = scores[torch.arange(len(batch), device=scores.device), targets]
        values = target_fn(picked) if target_fn is not None else picked
        return torch.stack([ranks.double(), values.double()], dim=1)

    out = sharded_map(run, len(events), batch_size, accelerator, desc).cpu()
    ranks = out[:, 0].long()
    return ranks if target_fn is None else (ranks, out[:, 1])


def history_mask(events: Sequence[EvalEvent], num_items: int, device=None) -> torch.Tensor:
    """[B, N] bool, True at the items of each event's history."""
    masked = torch.zeros((len(events), num_items), dtype=torch.bool, device=device)
    lengths = [len(e.history) for e in events]
    if sum(lengths):
        items = np.concatenate([np.asarray(e.history, dtype=np.int64).reshape(-1) for e in events])
        rows = np.repeat(np.arange(len(events)), lengths)
        masked[torch.from_numpy(rows).to(device), torch.from_numpy(items).to(device)] = True
    return masked


def fixed_scores(scores: torch.Tensor) -> ScoreFn:
    """The `score_fn` of one score vector [N] shared by every event (e.g. popularity)."""
    return lambda start, end: scores.expand(end - start, -1)


def content_scores(text_vectors: torch.Tensor, events: Sequence[EvalEvent], last: int | None = None) -> ScoreFn:
    """The `score_fn` of the training-free content baseline: each event scores the items by the cosine between their
    text vectors [N, H] and the mean unit text vector of its `last` history items (None: all of them); an empty
    history scores every item 0. Each event's row is one product with the catalogue, so its scores do not depend on
    the batch it is in."""
    unit = torch.nn.functional.normalize(text_vectors.float(), dim=-1)

    def row(history) -> torch.Tensor:
        recent = list(history) if last is None else list(history)[-last:]
        return unit @ unit[torch.as_tensor(recent)].mean(0) if recent else torch.zeros(len(unit), device=unit.device)

    return lambda start, end: torch.stack([row(e.history) for e in events[start:end]])


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
    ids = torch.arange(num_items, device=item_vectors.device)

    def scores(start, end):
        users = encode_histories(model, [e.history for e in events[start:end]], item_vectors, history_text)
        return model.score(users, item_vectors, ids)

    try:
        ranks, predicted = rank_events(
            scores,
            events,
            num_items,
            mask_history=mask_history,
            unrankable=None if rankable is None else ~rankable,  # e.g. items an ID-only model never saw
            target_fn=model.predict_rating,
            batch_size=batch_size,
            accelerator=accelerator,
            device=item_vectors.device,
            desc=desc,
        )
    finally:
        model.train(was_training)
    metrics = metrics_from_ranks(ranks, ks)
    if return_ranks:  # 0-based rank of each event's target, for paired statistics
        metrics["ranks"] = ranks.tolist()
    if with_ratings and events and events[0].rating is not None:
        metrics.update(rating_errors(predicted, [e.rating for e in events]))
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
    return metrics_from_ranks(rank_events(fixed_scores(scores), events, len(scores), mask_history=mask_history), ks)


def evaluate_content_similarity(
    text_vectors: torch.Tensor,
    events: Sequence[EvalEvent],
    *,
    last: int | None = 5,
    mask_history: bool = True,
    ks: Sequence[int] = (10, 20),
) -> dict[str, float]:
    """Metrics of a training-free content baseline (`content_scores`: cosine to the mean text vector of the user's
    `last` history items, None: all of them), e.g. under the pretrained encoder's text vectors."""
    scores = content_scores(text_vectors, events, last)
    return metrics_from_ranks(rank_events(scores, events, len(text_vectors), mask_history=mask_history), ks)
