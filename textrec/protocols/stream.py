"""Protocol E2 (../shared/PROTOCOL.md): a time-sliced interaction stream for incremental learning.

All interactions are sorted globally by timestamp (stable). The first `base_fraction` form the base period; the
rest is cut into `num_slices` slices of equal size. From every period a fixed seeded 10% is held out as test
events and another 10% as validation events (early stopping of whatever trains on that period); the rest is that
period's training data. A held-out event is ranked given the user's full history before it (training and held-out
events alike) with the history masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from textrec.data.records import RecData
from textrec.data.splits import EvalEvent


@dataclass(frozen=True)
class Period:
    """One period of the stream: positions in the global time order of its training, validation and test events."""

    index: int
    train: np.ndarray
    test: np.ndarray
    start_time: float
    end_time: float
    valid: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def size(self) -> int:
        return len(self.train) + len(self.valid) + len(self.test)


@dataclass
class Stream:
    """The E2 stream: global order, periods, and per-event user/item codes in that order."""

    order: np.ndarray  # row numbers of the interactions table in global time order
    users: np.ndarray  # user code of each event, in global order
    items: np.ndarray
    timestamps: np.ndarray
    periods: list[Period] = field(default_factory=list)
    _by_user: dict | None = field(default=None, repr=False)

    def train_positions(self, through: int, start: int = 0) -> np.ndarray:
        """Training events of periods start..through (inclusive), in global order."""
        return np.sort(np.concatenate([self.periods[p].train for p in range(start, through + 1)]))

    def eval_events(self, period: int, cap: int = 2000, seed: int = 0, split: str = "test") -> list[EvalEvent]:
        """Test (or `split="valid"`: validation) events of a period, a fixed seeded sample of at most `cap`, each
        with the user's full history before it in global order."""
        if split not in ("test", "valid"):
            raise ValueError(f"split: expected test or valid, got {split!r}")
        positions = getattr(self.periods[period], split)
        if len(positions) > cap:
            salt = 11 if split == "test" else 13
            positions = np.sort(np.random.default_rng([seed, period, salt]).choice(positions, cap, replace=False))
        by_user = self._positions_by_user()
        events = []
        for pos in positions:
            user = int(self.users[pos])
            mine = by_user[user]
            before = mine[: np.searchsorted(mine, pos)]
            events.append(EvalEvent(user, tuple(int(i) for i in self.items[before]), int(self.items[pos])))
        return events

    def _positions_by_user(self) -> dict[int, np.ndarray]:
        if self._by_user is None:
            order = np.argsort(self.users, kind="stable")
            bounds = np.flatnonzero(np.diff(self.users[order])) + 1
            self._by_user = {int(self.users[g[0]]): g for g in np.split(order, bounds) if len(g)}
        return self._by_user

    def user_sequences(self, positions: np.ndarray, targets: np.ndarray | None = None):
        """Per user: (item sequence over `positions` in time order, bool mask of which events are targets).
        `targets` (a subset of positions) marks the events that carry the loss; default: all of them."""
        positions = np.sort(positions)
        is_target = np.isin(positions, targets) if targets is not None else np.ones(len(positions), dtype=bool)
        out = {}
        for user in np.unique(self.users[positions]):
            mine = self.users[positions] == user
            out[int(user)] = (self.items[positions[mine]], is_target[mine])
        return out


def make_stream(
    data: RecData,
    base_fraction: float = 0.5,
    num_slices: int = 5,
    test_fraction: float = 0.1,
    seed: int = 0,
    valid_fraction: float = 0.1,
) -> Stream:
    """Cut `data` into the E2 periods (base + `num_slices` slices), each with seeded held-out test and validation
    shares (the test draw does not depend on `valid_fraction`)."""
    if valid_fraction < 0 or test_fraction + valid_fraction >= 1:
        raise ValueError(f"valid_fraction: must be >= 0 with test_fraction + valid_fraction < 1, got {valid_fraction}")
    if not 0 < base_fraction < 1:
        raise ValueError(f"base_fraction: must be in (0, 1), got {base_fraction}")
    if num_slices < 1:
        raise ValueError(f"num_slices: must be >= 1, got {num_slices}")
    arrays = data.arrays
    order = np.argsort(arrays.timestamps, kind="stable")
    n = len(order)
    base_end = int(round(n * base_fraction))
    bounds = [0, base_end] + [base_end + int(round((n - base_end) * (k + 1) / num_slices)) for k in range(num_slices)]
    stream = Stream(order, arrays.users[order], arrays.items[order], arrays.timestamps[order])
    for p in range(num_slices + 1):
        positions = np.arange(bounds[p], bounds[p + 1])
        if len(positions) == 0:
            raise ValueError(f"period {p} is empty: the data has too few interactions for {num_slices} slices")
        rng = np.random.default_rng([seed, p])
        test = np.sort(rng.choice(positions, int(round(len(positions) * test_fraction)), replace=False))
        rest = np.setdiff1d(positions, test)
        draw = np.random.default_rng([seed, p, 1])
        valid = np.sort(draw.choice(rest, int(round(len(positions) * valid_fraction)), replace=False))
        train = np.setdiff1d(rest, valid)
        stamps = stream.timestamps[positions]
        stream.periods.append(Period(p, train, test, float(stamps.min()), float(stamps.max()), valid))
    return stream


class Reservoir:
    """A bounded uniform sample of everything seen so far (reservoir sampling, Vitter's algorithm R)."""

    def __init__(self, capacity: int, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"capacity: must be >= 1, got {capacity}")
        self.capacity = capacity
        self.items: list[int] = []
        self.seen = 0
        self.rng = np.random.default_rng(seed)

    def add(self, values) -> None:
        for value in values:
            self.seen += 1
            if len(self.items) < self.capacity:
                self.items.append(int(value))
            else:
                slot = int(self.rng.integers(0, self.seen))
                if slot < self.capacity:
                    self.items[slot] = int(value)

    def sample(self) -> np.ndarray:
        return np.asarray(sorted(self.items), dtype=np.int64)

    def state_dict(self) -> dict:
        return {
            "capacity": self.capacity,
            "items": list(self.items),
            "seen": self.seen,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.capacity, self.items, self.seen = state["capacity"], list(state["items"]), state["seen"]
        self.rng.bit_generator.state = state["rng"]


def continual_metrics(matrix: list[list[float]]) -> dict:
    """From R[t][j] (score on period j after training through t): prequential R[t-1][t], current R[t][t],
    forgetting f_j = max_{l in j..T-1} R[l][j] - R[T][j], and BWT = mean_j (R[T][j] - R[j][j]) (Chaudhry 2018)."""
    r = np.asarray(matrix, dtype=np.float64)
    last = r.shape[0] - 1
    prequential = [float(r[t - 1, t]) for t in range(1, last + 1)]
    current = [float(r[t, t]) for t in range(last + 1)]
    forgetting = [float(r[j:last, j].max() - r[last, j]) for j in range(last)]
    relative = [float((r[j:last, j].max() - r[last, j]) / max(r[j:last, j].max(), 1e-12)) for j in range(last)]
    bwt = float(np.mean([r[last, j] - r[j, j] for j in range(last)])) if last else 0.0
    return {
        "prequential": prequential,
        "mean_prequential": float(np.mean(prequential)) if prequential else float("nan"),
        "current": current,
        "forgetting": forgetting,
        "mean_forgetting": float(np.mean(forgetting)) if forgetting else 0.0,
        "mean_relative_forgetting": float(np.mean(relative)) if relative else 0.0,
        "bwt": bwt,
    }
