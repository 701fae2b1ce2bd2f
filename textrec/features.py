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


def sequence_windows(sequences: Sequence[np.ndarray], max_len: int) -> list[np.ndarray]:
    """Cut each user's training sequence into windows of up to max_len + 1 items, from the most recent end
    backwards; consecutive windows share one item so that every item after the first is a target exactly once."""
    windows = []
    for seq in sequences:
        end = len(seq)
        while end >= 2:
            start = max(0, end - max_len - 1)
            windows.append(np.asarray(seq[start:end]))
            end = start + 1
    return windows


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
