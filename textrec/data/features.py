"""Turning items and histories into tensors: padded token batches, padded histories, training windows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


class ItemTokens:
    """Token ids of every catalogue item (tokenized once), padded per batch on demand."""

    def __init__(self, input_ids: Sequence[Sequence[int]], pad_id: int):
        self.input_ids = [list(ids) for ids in input_ids]
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.input_ids)

    def extend(self, input_ids: Sequence[Sequence[int]]) -> None:
        self.input_ids.extend(list(ids) for ids in input_ids)

    def batch(self, indices: Sequence[int] | torch.Tensor, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded (input_ids, attention_mask) for the given item indices."""
        rows = [self.input_ids[int(i)] for i in indices]
        return pad_token_lists(rows, self.pad_id, device)


def pad_token_lists(rows: Sequence[Sequence[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max(initial=1)) or 1
    mask = np.arange(width)[None, :] < lengths[:, None]
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    ids[mask] = _flat_ints(rows, int(lengths.sum()))  # row-major: row i's tokens fill its first len(i) slots
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask.astype(np.int64)).to(device)


def pad_histories(histories: Sequence[Sequence[int]], max_len: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad the last `max_len` items of each history: (items [B, L] with 0 at pads, mask [B, L] bool)."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    width = max(1, min(max_len, int(lengths.max(initial=1))))
    kept = np.minimum(lengths, width)
    tails = [h[len(h) - k :] if k else () for h, k in zip(histories, kept.tolist())]
    mask = np.arange(width)[None, :] >= (width - kept)[:, None]
    items = np.zeros((len(histories), width), dtype=np.int64)
    items[mask] = _flat_ints(tails, int(kept.sum()))
    return torch.from_numpy(items).to(device), torch.from_numpy(mask).to(device)


def _flat_ints(rows, total: int) -> np.ndarray:
    """All rows' values, concatenated, as int64 (rows may be lists, tuples, numpy arrays or tensors)."""
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.asarray(r, dtype=np.int64).reshape(-1) for r in rows if len(r)])


class HistoryText:
    """Renders a history as text for the text user tower: the last `num_items` item texts, oldest first."""

    def __init__(
        self,
        item_texts: Sequence[str],
        tokenizer,
        num_items: int = 10,
        max_tokens: int = 256,
        separator: str = "; ",
        prefix: str = "History: ",
    ):
        self.item_texts = list(item_texts)
        self.tokenizer = tokenizer
        self.num_items = num_items
        self.max_tokens = max_tokens
        self.separator = separator
        self.prefix = prefix

    def render(self, history: Sequence[int | str]) -> str:
        parts = [self.item_texts[h] if isinstance(h, (int, np.integer)) else str(h) for h in history]
        return self.prefix + self.separator.join(parts[-self.num_items :])

    def tokenize(self, histories: Sequence[Sequence[int]], device=None) -> tuple[torch.Tensor, torch.Tensor]:
        # Truncate from the left so the most recent items survive; the tokenizer's own setting is restored.
        side = self.tokenizer.truncation_side
        self.tokenizer.truncation_side = "left"
        try:
            enc = self.tokenizer(
                [self.render(h) for h in histories],
                truncation=True,
                max_length=self.max_tokens,
                padding=True,
                return_tensors="pt",
            )
        finally:
            self.tokenizer.truncation_side = side
        return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def target_windows(sequences, max_len: int) -> list[tuple[np.ndarray, ...]]:
    """Cut each sequence `(items, is_target[, ratings])` (arrays of one user's events in time order) into windows of
    up to max_len + 1 events, from the most recent end backwards. Consecutive windows share one event, so every event
    after a sequence's first is predicted exactly once; only events marked `is_target` carry loss (the others are
    context), and windows without any target are left out. Each window is a tuple of the same arrays, sliced."""
    sequences = [tuple(np.asarray(a) for a in arrays) for arrays in sequences]
    lengths = np.array([len(arrays[0]) for arrays in sequences], dtype=np.int64)
    flags = [np.asarray(arrays[1], dtype=bool) for arrays in sequences]
    which, starts, ends = window_bounds(lengths, np.concatenate(flags) if flags else np.zeros(0, bool), max_len)
    offsets = np.concatenate([[0], np.cumsum(lengths)])[which]
    starts, ends = (starts - offsets).tolist(), (ends - offsets).tolist()
    return [tuple(a[s:e] for a in sequences[w]) for w, s, e in zip(which.tolist(), starts, ends)]


def window_bounds(lengths: np.ndarray, is_target: np.ndarray, max_len: int) -> tuple[np.ndarray, ...]:
    """The windows of `target_windows` over sequences laid end to end (`lengths` events each, `is_target` for all
    events concatenated): (sequence index, start, end) per window, as positions in the concatenation, in the order
    `target_windows` lists them (by sequence, most recent window first).

    Window k of a sequence of n >= 2 events ends at n - k * max_len and starts max_len + 1 events earlier (or at 0),
    for k = 0 .. (n - 2) // max_len; it is kept if an event after its first is a target."""
    if max_len < 1:
        raise ValueError(f"max_len: must be >= 1, got {max_len}")
    lengths = np.asarray(lengths, dtype=np.int64)
    counts = np.where(lengths >= 2, (lengths - 2) // max_len + 1, 0)
    which = np.repeat(np.arange(len(lengths)), counts)
    k = np.arange(len(which)) - np.repeat(np.cumsum(counts) - counts, counts)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ends = lengths[which] - k * max_len
    starts = np.maximum(0, ends - max_len - 1) + offsets[which]
    ends = ends + offsets[which]
    targets_before = np.concatenate([[0], np.cumsum(is_target, dtype=np.int64)])
    keep = targets_before[ends] - targets_before[starts + 1] > 0
    return which[keep], starts[keep], ends[keep]


def all_targets(sequences, ratings=None) -> list[tuple[np.ndarray, ...]]:
    """`(items, is_target[, ratings])` per sequence with every event a target (E1 training sequences)."""
    if ratings is None:
        return [(np.asarray(s), np.ones(len(s), dtype=bool)) for s in sequences]
    return [(np.asarray(s), np.ones(len(s), dtype=bool), np.asarray(r)) for s, r in zip(sequences, ratings)]


def collate_windows(windows, max_len: int, device=None) -> dict[str, torch.Tensor]:
    """Windows from `target_windows` -> {"inputs", "targets"[, "ratings"]} [B, L], left-padded; inputs and targets
    are -1 where there is no event or no target."""
    lengths = np.array([len(w[0]) for w in windows], dtype=np.int64)
    ends = np.cumsum(lengths)
    items = np.concatenate([np.asarray(w[0], dtype=np.int64) for w in windows]) if windows else np.zeros(0, np.int64)
    flags = np.concatenate([np.asarray(w[1], dtype=bool) for w in windows]) if windows else np.zeros(0, bool)
    ratings = None
    if len(windows) and len(windows[0]) > 2:
        ratings = np.concatenate([np.asarray(w[2], dtype=np.float64) for w in windows])
    return gather_windows(items, flags, ratings, ends - lengths, ends, max_len, device)


def gather_windows(
    items: np.ndarray,
    is_target: np.ndarray,
    ratings: np.ndarray | None,
    starts: np.ndarray,
    ends: np.ndarray,
    max_len: int,
    device=None,
) -> dict[str, torch.Tensor]:
    """`collate_windows` for windows given as slices [starts[b], ends[b]) of flat event arrays: one numpy gather.

    Row b is left-padded to the batch width L = max(1, min(max_len, longest window - 1)); position j holds input
    event ends[b] - 1 - L + j and target event ends[b] - L + j, where these lie inside the window."""
    starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    if len(items) == 0:  # nothing to gather from (every window empty): one dummy event, never marked present
        items, is_target = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=bool)
        ratings = None if ratings is None else np.zeros(1)
    width = max(1, min(max_len, int((ends - starts).max(initial=1)) - 1))
    inputs_at = ends[:, None] - 1 - width + np.arange(width)[None, :]
    present = inputs_at >= starts[:, None]
    inputs_at = np.where(present, inputs_at, 0)
    targets_at = np.where(present, inputs_at + 1, 0)
    has_target = present & is_target[targets_at]
    batch = {
        "inputs": torch.from_numpy(np.where(present, items[inputs_at], -1)).to(device),
        "targets": torch.from_numpy(np.where(has_target, items[targets_at], -1)).to(device),
    }
    if ratings is not None:
        values = np.where(present, ratings[targets_at], 0.0).astype(np.float32)
        batch["ratings"] = torch.from_numpy(values).to(device)
    return batch


def epoch_batches(
    num_examples: int,
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    shuffle: bool = True,
    multiple: int = 1,
) -> list[np.ndarray]:
    """This process's batches of example indices for one epoch: a seeded permutation cut into batches,
    dealt round-robin to processes. Batch counts are made equal across processes by wrapping around, so
    distributed training never waits on a missing batch; with `multiple` (gradient accumulation steps) every
    process gets whole accumulation cycles, so no gradient is left over at the end of an epoch."""
    order = np.random.default_rng([seed, epoch]).permutation(num_examples) if shuffle else np.arange(num_examples)
    batches = [order[i : i + batch_size] for i in range(0, num_examples, batch_size)]
    if not batches:
        return []
    per_process = -(-len(batches) // (world_size * multiple)) * multiple  # whole accumulation cycles
    batches = [batches[i % len(batches)] for i in range(per_process * world_size)]
    return batches[rank::world_size]
