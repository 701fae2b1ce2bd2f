"""Protocol E1-cold (../shared/PROTOCOL.md): new items, known only by their text.

A seeded share of the catalogue is held out entirely: every interaction with those items is removed from the
training sequences and from every event's input history, and they get no id row; the E1 split itself is made on the
full data first, so the events are those of E1. Validation and test events are then reported in two slices, `warm`
(target seen in training) and `cold` (target held out); cold items stay in the ranked catalogue for every event.
References: popularity (cold items have no count, so they score lowest) and the untrained encoder's content
similarity (cosine to the mean text vector of the whole history).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from textrec.data.splits import EvalEvent, LeaveOneOutSplit
from textrec.evaluate.ranking import evaluate, evaluate_content_similarity, evaluate_scores

SLICES = ("warm", "cold")


def hold_out_items(num_items: int, fraction: float, seed: int = 0) -> np.ndarray:
    """A seeded `fraction` of item indices 0..num_items-1 (sorted): the cold items of E1-cold."""
    if not 0 < fraction < 1:
        raise ValueError(f"cold item fraction: must be in (0, 1), got {fraction}")
    count = int(round(num_items * fraction))
    if count < 1:
        raise ValueError(f"cold item fraction {fraction} of {num_items} items holds out no item")
    return np.sort(np.random.default_rng(seed).choice(num_items, size=count, replace=False))


def without_items(split: LeaveOneOutSplit, items: Sequence[int]) -> LeaveOneOutSplit:
    """The E1 split with `items` removed from every training sequence (ratings alike) and every event's history;
    the events and their targets are unchanged."""
    held = np.unique(np.asarray(items, dtype=np.int64))
    masks = [~np.isin(s, held) for s in split.train]
    train = [s[m] for s, m in zip(split.train, masks)]
    ratings = None if split.train_ratings is None else [r[m] for r, m in zip(split.train_ratings, masks)]
    gone = set(held.tolist())

    def strip(events: list[EvalEvent]) -> list[EvalEvent]:
        return [replace(e, history=tuple(i for i in e.history if i not in gone)) for e in events]

    return LeaveOneOutSplit(train, strip(split.valid), strip(split.test), ratings)


def slice_of_events(events: Sequence[EvalEvent], cold: Sequence[int]) -> list[str]:
    """Per event, "warm" (target seen in training) or "cold" (target is a held-out item)."""
    cold = set(int(i) for i in cold)
    return ["cold" if e.target in cold else "warm" for e in events]


def slices(events: Sequence[EvalEvent], cold: Sequence[int]) -> dict[str, list[EvalEvent]]:
    """{"warm": events whose target was seen in training, "cold": events whose target is a held-out item}."""
    labels = slice_of_events(events, cold)
    return {name: [e for e, label in zip(events, labels) if label == name] for name in SLICES}


def cold_start_report(
    events: Sequence[EvalEvent],
    cold: Sequence[int],
    *,
    model=None,
    item_vectors: torch.Tensor | None = None,
    popularity: torch.Tensor | None = None,
    content_vectors: torch.Tensor | None = None,
    history_text=None,
    batch_size: int = 256,
    accelerator=None,
) -> dict[str, dict[str, dict]]:
    """Metrics (history masked) per method and slice: {"model" | "popularity" | "content_similarity" |
    "content_similarity_last5": {"all" | "warm" | "cold": metrics}} for the references given. Content similarity
    reads the whole history (the protocol's reference) or its last 5 items."""
    parts = {"all": list(events), **slices(events, cold)}
    out: dict[str, dict[str, dict]] = {}
    for name, part in parts.items():
        if not part:
            continue
        if model is not None:
            out.setdefault("model", {})[name] = evaluate(
                model, part, item_vectors, batch_size=batch_size, history_text=history_text, accelerator=accelerator
            )
        if popularity is not None:
            out.setdefault("popularity", {})[name] = evaluate_scores(popularity, part)
        if content_vectors is not None:  # the protocol's whole-history mean, and the last 5 items (often stronger)
            for method, last in (("content_similarity", None), ("content_similarity_last5", 5)):
                out.setdefault(method, {})[name] = evaluate_content_similarity(content_vectors, part, last=last)
    return out


def cold_start_markdown(report: dict[str, dict[str, dict]]) -> str:
    """The slices table: NDCG@10 and Recall@10 per method and slice, with the number of events."""
    lines = ["| method | slice | NDCG@10 | Recall@10 | events |", "|---|---|---|---|---|"]
    for method, by_slice in report.items():
        for name, m in by_slice.items():
            lines.append(f"| {method} | {name} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {m['n_events']} |")
    return "\n".join(lines) + "\n"
