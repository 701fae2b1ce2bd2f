"""Evaluation splits: E1 leave-one-out (../shared/PROTOCOL.md) and a global time cut.

Sorting is always stable, so interactions with equal timestamps keep their file order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from textrec.data.records import RecData


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
    order, bounds = _user_order(data)
    return _pieces(order, bounds)


def _user_order(data: RecData) -> tuple[np.ndarray, np.ndarray]:
    """(order, bounds): rows sorted by user code, then timestamp, then file order; user u's rows are
    order[bounds[u]:bounds[u + 1]]."""
    arrays = data.arrays
    by_time = np.argsort(arrays.timestamps, kind="stable")
    order = by_time[np.argsort(arrays.users[by_time], kind="stable")]
    counts = np.bincount(arrays.users, minlength=len(arrays.user_ids))
    return order, np.concatenate([[0], np.cumsum(counts)])


def _pieces(values: np.ndarray, bounds: np.ndarray) -> list[np.ndarray]:
    """values[bounds[u]:bounds[u + 1]] for every u (views)."""
    return np.split(values, bounds[1:-1]) if len(bounds) > 1 else []


def leave_one_out(data: RecData) -> LeaveOneOutSplit:
    """E1 split. Users with fewer than 3 interactions keep all of them in training and get no evaluation event."""
    arrays = data.arrays
    order, bounds = _user_order(data)
    items = arrays.items[order]
    ratings = arrays.ratings[order] if arrays.ratings is not None else None
    lengths = np.diff(bounds)
    evaluated = lengths >= 3
    # training rows: all of a user's rows, less the last two of an evaluated user
    train_ends = bounds[1:] - 2 * evaluated
    keep = np.ones(len(order), dtype=bool)
    keep[np.concatenate([train_ends[evaluated], train_ends[evaluated] + 1])] = False
    train_bounds = np.concatenate([[0], np.cumsum(train_ends - bounds[:-1])])
    train = _pieces(items[keep], train_bounds)
    train_ratings = _pieces(ratings[keep], train_bounds) if ratings is not None else None
    valid, test = [], []
    item_list = items.tolist()  # histories are tuples of Python ints: slice one list instead of converting per user
    for user in np.flatnonzero(evaluated).tolist():
        start, end = int(bounds[user]), int(bounds[user + 1])
        valid_rating = float(ratings[end - 2]) if ratings is not None else None
        test_rating = float(ratings[end - 1]) if ratings is not None else None
        valid.append(EvalEvent(user, tuple(item_list[start : end - 2]), item_list[end - 2], valid_rating))
        test.append(EvalEvent(user, tuple(item_list[start : end - 1]), item_list[end - 1], test_rating))
    return LeaveOneOutSplit(train, valid, test, train_ratings)


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
