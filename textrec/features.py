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
    width = max((len(r) for r in rows), default=1) or 1
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)


def pad_histories(histories: Sequence[Sequence[int]], max_len: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad the last `max_len` items of each history: (items [B, L] with 0 at pads, mask [B, L] bool)."""
    width = max(1, min(max_len, max((len(h) for h in histories), default=1)))
    items = torch.zeros((len(histories), width), dtype=torch.long)
    mask = torch.zeros((len(histories), width), dtype=torch.bool)
    for i, h in enumerate(histories):
        tail = list(h)[-width:]
        if tail:
            items[i, width - len(tail) :] = torch.as_tensor(tail, dtype=torch.long)
            mask[i, width - len(tail) :] = True
    return items.to(device), mask.to(device)


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
    out = []
    for arrays in sequences:
        arrays = tuple(np.asarray(a) for a in arrays)
        items, is_target = arrays[0], arrays[1]
        end = len(items)
        while end >= 2:
            start = max(0, end - max_len - 1)
            if is_target[start + 1 : end].any():
                out.append(tuple(a[start:end] for a in arrays))
            end = start + 1
    return out


def all_targets(sequences, ratings=None) -> list[tuple[np.ndarray, ...]]:
    """`(items, is_target[, ratings])` per sequence with every event a target (E1 training sequences)."""
    if ratings is None:
        return [(np.asarray(s), np.ones(len(s), dtype=bool)) for s in sequences]
    return [(np.asarray(s), np.ones(len(s), dtype=bool), np.asarray(r)) for s, r in zip(sequences, ratings)]


def collate_windows(windows, max_len: int, device=None) -> dict[str, torch.Tensor]:
    """Windows from `target_windows` -> {"inputs", "targets"[, "ratings"]} [B, L], left-padded; inputs and targets
    are -1 where there is no event or no target."""
    inputs, in_mask = pad_histories([w[0][:-1] for w in windows], max_len)
    targets, t_mask = pad_histories([w[0][1:] for w in windows], max_len)
    flags, _ = pad_histories([w[1][1:].astype(np.int64) for w in windows], max_len)
    batch = {
        "inputs": inputs.masked_fill(~in_mask, -1).to(device),
        "targets": targets.masked_fill(~(t_mask & flags.bool()), -1).to(device),
    }
    if len(windows) and len(windows[0]) > 2:
        ratings = torch.zeros(targets.shape)
        for row, w in enumerate(windows):
            tail = torch.as_tensor(w[2][1:], dtype=torch.float32)[-targets.shape[1] :]
            if len(tail):
                ratings[row, -len(tail) :] = tail
        batch["ratings"] = ratings.to(device)
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
