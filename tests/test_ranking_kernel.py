"""`rank_events`, the one ranking kernel, against a plain per-event, per-item count; and the rankers built on it
(popularity, content similarity, the transfer protocol's) against the per-event loops they replaced."""

import math
import random

import pytest
import torch

from textrec.data.splits import EvalEvent
from textrec.evaluate.metrics import metrics_from_ranks
from textrec.evaluate.ranking import (
    content_scores,
    evaluate_content_similarity,
    evaluate_scores,
    fixed_scores,
    history_mask,
    rank_events,
)
from textrec.protocols.transfer import content_ranks, popularity_ranks

NUM_ITEMS = 23


def _events(n: int, seed: int = 0) -> list[EvalEvent]:
    """Random events: empty histories, histories holding the target, repeated items."""
    rng = random.Random(seed)
    events = []
    for user in range(n):
        history = tuple(rng.randrange(NUM_ITEMS) for _ in range(rng.choice([0, 1, 3, 8])))
        target = rng.choice(history) if history and rng.random() < 0.2 else rng.randrange(NUM_ITEMS)
        events.append(EvalEvent(user=user, history=history, target=target))
    return events


def _reference_rank(row: list[float], event: EvalEvent, mask_history: bool) -> int:
    """Items other than the target scoring at least as high as it (ties count against it; a NaN always does),
    history items left out when masked; a NaN target ranks last."""
    target = row[event.target]
    if math.isnan(target):
        return len(row) - 1
    left_out = set(event.history) if mask_history else set()
    return sum(
        1 for j, s in enumerate(row) if j != event.target and j not in left_out and (math.isnan(s) or s >= target)
    )


def _tied_scores(n: int, seed: int = 0) -> torch.Tensor:
    """Scores with many ties (four distinct values) and a few NaNs."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 4, (n, NUM_ITEMS), generator=gen).float() / 3
    scores[torch.rand(n, NUM_ITEMS, generator=gen) < 0.03] = float("nan")
    return scores


@pytest.mark.parametrize("mask_history", [True, False])
@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_kernel_equals_a_plain_count_on_tied_scores_and_masks(mask_history, batch_size):
    events, scores = _events(101), _tied_scores(101)
    ranks = rank_events(
        lambda start, end: scores[start:end], events, NUM_ITEMS, mask_history=mask_history, batch_size=batch_size
    )
    expected = [_reference_rank(scores[i].tolist(), e, mask_history) for i, e in enumerate(events)]
    assert ranks.dtype == torch.int64 and ranks.tolist() == expected


def test_unrankable_items_score_minus_infinity_and_target_values_come_back():
    events, scores = _events(50, seed=1), _tied_scores(50, seed=1)
    unrankable = torch.zeros(NUM_ITEMS, dtype=torch.bool)
    unrankable[[0, 5, 6]] = True
    ranks, values = rank_events(
        lambda start, end: scores[start:end], events, NUM_ITEMS, unrankable=unrankable, target_fn=lambda t: 2 * t
    )
    filled = scores.masked_fill(unrankable, float("-inf"))
    assert ranks.tolist() == [_reference_rank(filled[i].tolist(), e, True) for i, e in enumerate(events)]
    picked = filled[torch.arange(len(events)), torch.tensor([e.target for e in events])]
    assert torch.equal(values, (2 * picked).double())


def test_no_events_and_the_history_mask():
    assert rank_events(lambda start, end: torch.zeros(end - start, 4), [], 4).tolist() == []
    events = [EvalEvent(0, (), 1), EvalEvent(1, (2, 0, 2), 1)]
    assert history_mask(events, 4).tolist() == [[False] * 4, [True, False, True, False]]


def test_a_fixed_score_vector_ranks_as_one_event_at_a_time():
    events = _events(80, seed=2)
    counts = torch.randint(0, 5, (NUM_ITEMS,), generator=torch.Generator().manual_seed(2)).double()
    for mask in (True, False):
        expected = [_reference_rank(counts.float().tolist(), e, mask) for e in events]
        assert rank_events(fixed_scores(counts), events, NUM_ITEMS, mask_history=mask).tolist() == expected
        assert evaluate_scores(counts, events, mask_history=mask) == metrics_from_ranks(expected)
    assert popularity_ranks(counts, events, batch_size=9) == [
        _reference_rank(counts.float().tolist(), e, True) for e in events
    ]


def _content_reference(vectors, events, last, mask_history=True):
    """The per-event loop `evaluate_content_similarity` ran before the kernel: one product with the catalogue per
    event."""
    unit = torch.nn.functional.normalize(vectors.float(), dim=-1)
    ranks = []
    for e in events:
        recent = list(e.history) if last is None else list(e.history)[-last:]
        scores = unit @ unit[torch.as_tensor(recent)].mean(0) if recent else torch.zeros(len(unit))
        ranks.append(_reference_rank(scores.tolist(), e, mask_history))
    return ranks


@pytest.mark.parametrize("last", [None, 1, 5])
def test_one_content_scorer_for_evaluation_and_transfer(last):
    events = _events(120, seed=3)
    # few distinct directions: many exact ties between items
    vectors = torch.randint(-2, 3, (NUM_ITEMS, 6), generator=torch.Generator().manual_seed(3)).float()
    expected = _content_reference(vectors, events, last)
    assert content_ranks(vectors, events, last=last, batch_size=17) == expected
    assert evaluate_content_similarity(vectors, events, last=last) == metrics_from_ranks(expected)
    unmasked = _content_reference(vectors, events, last, mask_history=False)
    assert evaluate_content_similarity(vectors, events, last=last, mask_history=False) == metrics_from_ranks(unmasked)


def test_content_scores_do_not_depend_on_the_batch():
    events = _events(40, seed=4)
    vectors = torch.randn(NUM_ITEMS, 16, generator=torch.Generator().manual_seed(4))
    score = content_scores(vectors, events, last=None)
    whole = score(0, len(events))
    assert torch.equal(torch.cat([score(s, min(len(events), s + 3)) for s in range(0, len(events), 3)]), whole)
    empty = [i for i, e in enumerate(events) if not e.history]
    assert empty and torch.equal(whole[empty], torch.zeros(len(empty), NUM_ITEMS))  # an empty history scores 0
