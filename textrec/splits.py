"""Evaluation splits: E1 leave-one-out (../shared/PROTOCOL.md) and a global time cut.

Sorting is always stable, so interactions with equal timestamps keep their file order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from textrec.data import RecData


@dataclass(frozen=True)
class EvalEvent:
    """Rank `target` for `user` given `history` (item indices, oldest first)."""

    user: int
    history: tuple[int, ...]
    target: int
    rating: float | None = None


@dataclass(frozen=True)
class LeaveOneOutSplit:
    """E1: per user, last item = test, second-to-last = validation, the rest = training."""

    train: list[np.ndarray]  # per user (index = user code), training item indices in time order
    valid: list[EvalEvent]
    test: list[EvalEvent]
    train_ratings: list[np.ndarray] | None = None

    @property
    def num_train_interactions(self) -> int:
        return int(sum(len(s) for s in self.train))


def user_sequences(data: RecData) -> list[np.ndarray]:
    """Row numbers of each user's interactions sorted by timestamp (stable), indexed by user code."""
    arrays = data.arrays
    order = np.lexsort((np.arange(len(arrays.users)), arrays.timestamps, arrays.users))
    bounds = np.searchsorted(arrays.users[order], np.arange(len(arrays.user_ids) + 1))
    return [order[bounds[u] : bounds[u + 1]] for u in range(len(arrays.user_ids))]


def leave_one_out(data: RecData) -> LeaveOneOutSplit:
    """E1 split. Users with fewer than 3 interactions keep all of them in training and get no evaluation event."""
    arrays = data.arrays
    train, train_ratings, valid, test = [], [], [], []
    for user, rows in enumerate(user_sequences(data)):
        items = arrays.items[rows]
        ratings = arrays.ratings[rows] if arrays.ratings is not None else None
        if len(rows) < 3:
            train.append(items)
            train_ratings.append(ratings)
            continue
        train.append(items[:-2])
        train_ratings.append(ratings[:-2] if ratings is not None else None)
        valid_rating = float(ratings[-2]) if ratings is not None else None
        test_rating = float(ratings[-1]) if ratings is not None else None
        valid.append(EvalEvent(user, tuple(int(i) for i in items[:-2]), int(items[-2]), valid_rating))
        test.append(EvalEvent(user, tuple(int(i) for i in items[:-1]), int(items[-1]), test_rating))
    return LeaveOneOutSplit(train, valid, test, train_ratings if arrays.ratings is not None else None)


def time_cut(data: RecData, fraction: float | None = None, timestamp: float | None = None) -> tuple[RecData, RecData]:
    """Split all interactions globally by time: the first `fraction` (stable order), or those before `timestamp`."""
    if (fraction is None) == (timestamp is None):
        raise ValueError("time_cut: give exactly one of fraction or timestamp")
    stamps = data.arrays.timestamps
    order = np.argsort(stamps, kind="stable")
    if fraction is not None:
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction: must be in (0, 1), got {fraction}")
        cut = int(round(len(order) * fraction))
    else:
        cut = int(np.searchsorted(stamps[order], timestamp, side="left"))
    return data.select_interactions(order[:cut]), data.select_interactions(order[cut:])
