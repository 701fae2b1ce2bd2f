"""Synthetic interaction data with a planted text signal, for tests and a zero-download demo.

Every item belongs to one topic, and its text names the topic word (plus random filler words). Every user has a
favourite topic and picks most items from it, so a model that reads item text can learn the preference; item
popularity is flat, so popularity cannot. With `drift > 0` users move to a new favourite topic over time, which
is what incremental updates must follow. With `shift_at` the whole population changes behaviour at one moment: from
then on the per-interaction drift is `drift_after` (with `drift_after=1` every user walks to the next topic at
every step, where before the shift they stayed). A model trained only on the later behaviour forgets the earlier
one, which is the non-stationarity that replay must protect against.
"""

from __future__ import annotations

import datasets
import numpy as np

from textrec.data.records import RecData

TOPIC_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
    "romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()
FILLER_WORDS = "red green blue small large old new fast slow bright dark soft loud calm wild".split()


def make_synthetic(
    num_users: int = 200,
    num_items: int = 120,
    num_topics: int = 6,
    min_length: int = 8,
    max_length: int = 20,
    on_topic: float = 0.85,
    drift: float = 0.0,
    seed: int = 0,
    shift_at: float | None = None,
    drift_after: float = 1.0,
    filler_words: int = 2,
) -> RecData:
    """Generate `RecData` with items titled "<topic word> <filler> <filler> item<k>" (`filler_words` fillers).

    on_topic: probability that an interaction comes from the user's current favourite topic.
    drift: probability, per interaction, that a user's favourite topic moves to the next topic (time drift).
    shift_at: share of the stream (by interaction count) after which `drift_after` replaces `drift`; None: never.
    Timestamps are global ticks; users interleave, so a global time cut is meaningful.
    """
    if num_topics > len(TOPIC_WORDS):
        raise ValueError(f"num_topics: at most {len(TOPIC_WORDS)} topics are supported")
    if max_length > num_items:
        raise ValueError(f"max_length ({max_length}) exceeds num_items ({num_items}): a user never repeats an item")
    if shift_at is not None and not 0.0 <= shift_at <= 1.0:
        raise ValueError(f"shift_at: expected a share of the stream in [0, 1], got {shift_at}")
    rng = np.random.default_rng(seed)
    topics = np.arange(num_items) % num_topics
    by_topic = [np.flatnonzero(topics == t) for t in range(num_topics)]
    titles = [
        " ".join([TOPIC_WORDS[topics[i]], *(str(rng.choice(FILLER_WORDS)) for _ in range(filler_words)), f"item{i}"])
        for i in range(num_items)
    ]
    lengths = rng.integers(min_length, max_length + 1, size=num_users)
    favourite = rng.integers(0, num_topics, size=num_users)
    # Interleave users over time: each tick one user (drawn in proportion to what is left) interacts.
    remaining = lengths.copy()
    users, items, stamps, ratings = [], [], [], []
    seen: list[set[int]] = [set() for _ in range(num_users)]
    tick = 0
    shift_tick = None if shift_at is None else round(shift_at * lengths.sum())
    while remaining.sum() > 0:
        u = int(rng.choice(num_users, p=remaining / remaining.sum()))
        remaining[u] -= 1
        p_move = drift_after if shift_tick is not None and tick >= shift_tick else drift
        if p_move > 0 and rng.random() < p_move:
            favourite[u] = (favourite[u] + 1) % num_topics
        pool = by_topic[favourite[u]] if rng.random() < on_topic else np.arange(num_items)
        fresh = [i for i in pool if i not in seen[u]] or [i for i in range(num_items) if i not in seen[u]]
        item = int(rng.choice(fresh))
        seen[u].add(item)
        users.append(f"u{u}")
        items.append(f"i{item}")
        stamps.append(float(tick))
        ratings.append(float(5 if topics[item] == favourite[u] else rng.integers(1, 4)))
        tick += 1
    interactions = datasets.Dataset.from_dict(
        {"user_id": users, "item_id": items, "timestamp": stamps, "rating": ratings}
    )
    catalogue = datasets.Dataset.from_dict(
        {
            "item_id": [f"i{i}" for i in range(num_items)],
            "title": titles,
            "topic": [TOPIC_WORDS[t] for t in topics],
        }
    )
    return RecData(interactions, catalogue, source=f"synthetic(seed={seed})", name="synthetic")
