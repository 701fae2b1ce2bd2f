"""What `fit` trains on: sequence windows or text-user pairs, one micro-batch at a time, and the validation
events it early-stops on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from textrec.data.features import HistoryText, ItemTokens, gather_windows, target_windows, window_bounds
from textrec.data.splits import EvalEvent


# ----- examples: what one micro-batch is made of -----
class WindowExamples:
    """Sequence-tower examples: windows of `(items, is_target[, ratings])` sequences (see `target_windows`).

    The sequences are held as flat arrays and each window as a (start, end) slice of them, so a batch is one
    numpy gather (`gather_windows`) whatever the batch size and history length."""

    def __init__(self, sequences, max_len: int):
        sequences = [tuple(np.asarray(a) for a in arrays) for arrays in sequences]
        self.max_len = max_len
        self.items = _concat([s[0] for s in sequences], np.int64)
        self.is_target = _concat([s[1] for s in sequences], bool)
        rated = bool(sequences) and len(sequences[0]) > 2
        self.ratings = _concat([s[2] for s in sequences], np.float64) if rated else None
        lengths = np.array([len(s[0]) for s in sequences], dtype=np.int64)
        self._sequences = sequences
        self._which, self.starts, self.ends = window_bounds(lengths, self.is_target, max_len)

    def __len__(self) -> int:
        return len(self.starts)

    @cached_property
    def windows(self) -> list[tuple[np.ndarray, ...]]:
        """The windows as `target_windows` lists them (slices of the sequences)."""
        return target_windows(self._sequences, self.max_len)

    def batch(self, indices, epoch: int, device) -> dict:
        rows = np.asarray(indices, dtype=np.int64)
        return gather_windows(
            self.items, self.is_target, self.ratings, self.starts[rows], self.ends[rows], self.max_len, device
        )


def _concat(arrays: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=dtype) for a in arrays]) if arrays else np.zeros(0, dtype=dtype)


class TextUserExamples:
    """Text-user-tower examples: `per_user` random (history, next item) pairs per user and epoch.

    Each epoch draws every pair's cut point up front (the same draws as always); the histories themselves are made
    only for the pairs of a batch."""

    def __init__(self, sequences, per_user: int, seed: int):
        self.sequences = [np.asarray(s) for s in sequences if len(s) >= 2]
        self.per_user, self.seed = per_user, seed
        self._epoch, self._cuts = None, None

    def __len__(self) -> int:
        return len(self.sequences) * self.per_user

    def _cuts_of(self, epoch: int) -> np.ndarray:
        """[sequences, per_user] cut points t: pair (s, j) is (sequence s before t, item t)."""
        if self._epoch != epoch:
            rng = np.random.default_rng([self.seed, epoch, 7])
            cuts = [rng.integers(1, len(seq), self.per_user) for seq in self.sequences]
            self._cuts = np.stack(cuts) if cuts else np.zeros((0, self.per_user), dtype=np.int64)
            self._epoch = epoch
        return self._cuts

    def batch(self, indices, epoch: int, device) -> dict:
        cuts = self._cuts_of(epoch)
        rows = np.asarray(indices, dtype=np.int64)
        which, cut = rows // self.per_user, cuts.reshape(-1)[rows]
        chosen = [(self.sequences[s], t) for s, t in zip(which.tolist(), cut.tolist())]
        return {
            "targets": torch.as_tensor([[int(seq[t])] for seq, t in chosen], device=device),
            "histories": [seq[:t].tolist() for seq, t in chosen],
        }


@dataclass
class Validation:
    """Validation events and what ranking them needs; `fit` early-stops on their NDCG@10 (history masked)."""

    events: Sequence[EvalEvent]
    num_items: int
    item_tokens: ItemTokens | None = None
    history_text: HistoryText | None = None
