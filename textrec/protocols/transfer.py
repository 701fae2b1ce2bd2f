"""Protocol E3 (../shared/PROTOCOL.md): domain transfer, the pieces `recipes/domain_transfer.py` runs.

Two domains with disjoint item sets cut from one catalogue by an item field (MovieLens: genres), each keeping only
its own items' interactions (`split_domains`). A text-only model trained on the source ranks the target catalogue
through its text alone (`retarget`). Every row is ranked once over all target test events (`model_ranks`,
`popularity_ranks`, `content_ranks`: 0-based pessimistic ranks, history masked, by evaluation's `rank_events`) and
reported per slice (all / warm / cold, E1-cold) from those ranks (`slice_rows`), so paired statistics over the same
events come for free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from textrec.data.records import RecData
from textrec.data.splits import EvalEvent
from textrec.evaluate.metrics import metrics_from_ranks
from textrec.evaluate.ranking import (
    compute_item_vectors,
    compute_text_vectors,
    content_scores,
    evaluate,
    fixed_scores,
    rank_events,
)
from textrec.model.build import retarget  # noqa: F401 (re-exported: E3's name for it)
from textrec.protocols.coldstart import slice_of_events

SLICES = ("all", "warm", "cold")


def domain(data: RecData, item_rows: np.ndarray) -> RecData:
    """The sub-dataset of some items: their catalogue rows (in catalogue order) and only their interactions."""
    item_rows = np.sort(np.asarray(item_rows, dtype=np.int64))
    keep = np.zeros(data.num_items, dtype=bool)
    keep[item_rows] = True
    rows = np.flatnonzero(keep[data.arrays.items])
    return RecData(data.select_interactions(rows).interactions, data.items.select(item_rows.tolist()), data.source)


def split_domains(data: RecData, field: str, source_values: Sequence[str]) -> tuple[RecData, RecData]:
    """(source, target): items whose `field` holds any of `source_values` (as whitespace-separated words) are
    source items, all others target items."""
    if field not in data.items.column_names:
        raise ValueError(f"transfer.domain_field: the catalogue has no field {field!r} ({data.items.column_names})")
    wanted = set(source_values)
    is_source = np.array([bool(set(str(v).split()) & wanted) for v in data.items[field]], dtype=bool)
    if is_source.all() or not is_source.any():
        raise ValueError(f"transfer.source_values: {sorted(wanted)} leave one domain empty")
    return domain(data, np.flatnonzero(is_source)), domain(data, np.flatnonzero(~is_source))


def fraction_users(train: Sequence[np.ndarray], fraction: float, seed: int = 0) -> np.ndarray:
    """The first `fraction` (at least one) of a seeded permutation of the users with >= 2 training items; the
    permutation is one for all fractions, so 5% of users is a subset of 20%."""
    users = np.flatnonzero([len(s) >= 2 for s in train])
    order = np.random.default_rng(seed).permutation(users)
    return np.sort(order[: max(1, int(round(len(order) * fraction)))])


def model_ranks(model, tokens, events: Sequence[EvalEvent], num_items: int, accelerator=None) -> list[int]:
    """Ranks of every event's target under a trained model (history masked), over the `num_items` catalogue."""
    text = compute_text_vectors(model, tokens, 256, accelerator, None) if tokens is not None else None
    vectors = compute_item_vectors(model, text, num_items)
    return evaluate(model, events, vectors, accelerator=accelerator, return_ranks=True)["ranks"]


def popularity_ranks(counts: torch.Tensor, events: Sequence[EvalEvent], batch_size: int = 512) -> list[int]:
    """Ranks under one score vector [N] for every user (training counts; items never seen score 0, the lowest)."""
    return rank_events(fixed_scores(counts.double()), events, len(counts), batch_size=batch_size).tolist()


def content_ranks(
    text_vectors: torch.Tensor, events: Sequence[EvalEvent], last: int | None = None, batch_size: int = 512
) -> list[int]:
    """Ranks under untrained content similarity (`content_scores`, as `evaluate_content_similarity`): cosine between
    each item's text vector and the mean unit text vector of the last `last` history items (None: the whole
    history)."""
    scores = content_scores(text_vectors, events, last)
    return rank_events(scores, events, len(text_vectors), batch_size=batch_size).tolist()


def slice_rows(ranks: Sequence[int], events: Sequence[EvalEvent], cold: Sequence[int], **fields) -> list[dict]:
    """One row per slice (all / warm / cold) with the metrics of `ranks` (one per event of `events`) and `fields`."""
    ranks = np.asarray(ranks, dtype=np.int64)
    names = np.asarray(slice_of_events(events, cold))
    rows = []
    for name in SLICES:
        part = ranks if name == "all" else ranks[names == name]
        if len(part):
            rows.append({**fields, "slice": name, **metrics_from_ranks(torch.as_tensor(part))})
    return rows
