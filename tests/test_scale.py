"""The vectorised data path equals the plain per-row implementations it replaced (kept here as references).

Random interaction tables with many timestamp ties, users with fewer than 3 events, non-ASCII ids and ratings:
`RecData.arrays`, `user_sequences`, `leave_one_out` (E1 must stay exactly the same split), `target_windows`,
`collate_windows` / `WindowExamples.batch`, `pad_histories`, `pad_token_lists` and `TextUserExamples` give the same
values, dtypes and order as before.
"""

import datasets
import numpy as np
import pytest
import torch

from textrec.data import RecData
from textrec.data.features import all_targets, collate_windows, pad_histories, pad_token_lists, target_windows
from textrec.data.splits import leave_one_out, user_sequences
from textrec.train.loop import TextUserExamples, WindowExamples

# ----- the reference implementations (textrec before the vectorised data path) -----


def ref_arrays(data: RecData):
    table = data.interactions
    user_ids, user_codes = np.unique(np.asarray(list(table["user_id"]), dtype=object), return_inverse=True)
    index = data.item_index
    items = np.fromiter((index[i] for i in table["item_id"]), dtype=np.int64, count=len(table))
    ratings = np.asarray(list(table["rating"]), dtype=np.float64) if data.has_ratings else None
    stamps = np.asarray(list(table["timestamp"]), dtype=np.float64)
    return user_codes.astype(np.int64), items, stamps, ratings, [str(u) for u in user_ids]


def ref_user_sequences(data: RecData):
    users, _, stamps, _, user_ids = ref_arrays(data)
    order = np.lexsort((np.arange(len(users)), stamps, users))
    bounds = np.searchsorted(users[order], np.arange(len(user_ids) + 1))
    return [order[bounds[u] : bounds[u + 1]] for u in range(len(user_ids))]


def ref_leave_one_out(data: RecData):
    _, all_items, _, all_ratings, _ = ref_arrays(data)
    train, train_ratings, valid, test = [], [], [], []
    for user, rows in enumerate(ref_user_sequences(data)):
        items = all_items[rows]
        ratings = all_ratings[rows] if all_ratings is not None else None
        if len(rows) < 3:
            train.append(items)
            train_ratings.append(ratings)
            continue
        train.append(items[:-2])
        train_ratings.append(ratings[:-2] if ratings is not None else None)
        valid_rating = float(ratings[-2]) if ratings is not None else None
        test_rating = float(ratings[-1]) if ratings is not None else None
        valid.append((user, tuple(int(i) for i in items[:-2]), int(items[-2]), valid_rating))
        test.append((user, tuple(int(i) for i in items[:-1]), int(items[-1]), test_rating))
    return train, valid, test, train_ratings if all_ratings is not None else None


def ref_target_windows(sequences, max_len):
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


def ref_pad_histories(histories, max_len):
    width = max(1, min(max_len, max((len(h) for h in histories), default=1)))
    items = torch.zeros((len(histories), width), dtype=torch.long)
    mask = torch.zeros((len(histories), width), dtype=torch.bool)
    for i, h in enumerate(histories):
        tail = list(h)[-width:]
        if tail:
            items[i, width - len(tail) :] = torch.as_tensor(tail, dtype=torch.long)
            mask[i, width - len(tail) :] = True
    return items, mask


def ref_pad_token_lists(rows, pad_id):
    width = max((len(r) for r in rows), default=1) or 1
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def ref_collate_windows(windows, max_len):
    inputs, in_mask = ref_pad_histories([w[0][:-1] for w in windows], max_len)
    targets, t_mask = ref_pad_histories([w[0][1:] for w in windows], max_len)
    flags, _ = ref_pad_histories([w[1][1:].astype(np.int64) for w in windows], max_len)
    batch = {"inputs": inputs.masked_fill(~in_mask, -1), "targets": targets.masked_fill(~(t_mask & flags.bool()), -1)}
    if len(windows) and len(windows[0]) > 2:
        ratings = torch.zeros(targets.shape)
        for row, w in enumerate(windows):
            tail = torch.as_tensor(w[2][1:], dtype=torch.float32)[-targets.shape[1] :]
            if len(tail):
                ratings[row, -len(tail) :] = tail
        batch["ratings"] = ratings
    return batch


def ref_text_pairs(sequences, per_user, seed, epoch):
    sequences = [np.asarray(s) for s in sequences if len(s) >= 2]
    rng = np.random.default_rng([seed, epoch, 7])
    return [(seq[:t].tolist(), int(seq[t])) for seq in sequences for t in rng.integers(1, len(seq), per_user)]


# ----- random data -----

USER_NAMES = ["u10", "u9", "Ünal", "zoë", "ßig", "a", "B", "日本", "u1", "u2", "x y", "😀"]


def random_data(seed: int, rows: int = 600, ratings: bool = True) -> RecData:
    rng = np.random.default_rng(seed)
    names = USER_NAMES + [f"user{i}" for i in range(int(rng.integers(5, 40)))]
    weights = rng.pareto(1.0, len(names)) + 0.05  # skewed: some users with 1-2 events, some with many
    users = rng.choice(names, rows, p=weights / weights.sum())
    items = [f"i{k}" for k in rng.integers(0, 50, rows)]
    stamps = rng.integers(0, 12, rows).astype(np.float64)  # few distinct timestamps: ties everywhere
    columns = {"user_id": list(users), "item_id": items, "timestamp": stamps.tolist()}
    if ratings:
        columns["rating"] = rng.integers(1, 6, rows).astype(np.float64).tolist()
    catalogue = sorted(set(items), key=lambda s: (len(s), s))[::-1]  # catalogue order differs from id order
    return RecData(
        datasets.Dataset.from_dict(columns), datasets.Dataset.from_dict({"item_id": catalogue, "t": catalogue})
    )


SEEDS = [0, 1, 2, 3]


@pytest.mark.parametrize("seed", SEEDS)
def test_arrays_and_user_sequences_equal_the_reference(seed):
    data = random_data(seed, ratings=seed % 2 == 0)
    users, items, stamps, ratings, user_ids = ref_arrays(data)
    arrays = data.arrays
    for new, old in ((arrays.users, users), (arrays.items, items), (arrays.timestamps, stamps)):
        assert new.dtype == old.dtype and np.array_equal(new, old)
    assert arrays.user_ids == user_ids
    assert (arrays.ratings is None) == (ratings is None)
    if ratings is not None:
        assert np.array_equal(arrays.ratings, ratings)
    new_seq, old_seq = user_sequences(data), ref_user_sequences(data)
    assert len(new_seq) == len(old_seq) and all(np.array_equal(a, b) for a, b in zip(new_seq, old_seq))


@pytest.mark.parametrize("seed", SEEDS)
def test_leave_one_out_equals_the_reference(seed):
    data = random_data(seed, ratings=seed % 2 == 0)
    split = leave_one_out(data)
    train, valid, test, train_ratings = ref_leave_one_out(data)
    assert len(split.train) == len(train)
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(split.train, train))
    for events, reference in ((split.valid, valid), (split.test, test)):
        got = [(e.user, e.history, e.target, e.rating) for e in events]
        assert got == reference
        assert all(type(i) is int for e in events for i in (e.user, e.target, *e.history))
    assert (split.train_ratings is None) == (train_ratings is None)
    if train_ratings is not None:
        assert all(np.array_equal(a, b) for a, b in zip(split.train_ratings, train_ratings))


def test_selected_interactions_keep_order_and_codes():
    data = random_data(5)
    rows = np.random.default_rng(0).permutation(len(data.interactions))[:200]
    part = data.select_interactions(rows)
    assert part.interactions["user_id"] == [data.interactions["user_id"][int(r)] for r in rows]
    assert part.interactions.features == data.interactions.features
    assert np.array_equal(part.arrays.items, data.arrays.items[rows])
    assert len(data.select_interactions([]).interactions) == 0


def _sequences(seed: int, rated: bool):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(30):
        n = int(rng.choice([0, 1, 2, 3, 5, 9, 10, 11, 12, 25, 40]))
        seq = (rng.integers(0, 100, n), rng.random(n) < 0.3)  # most events context only: some windows dropped
        out.append(seq + (rng.integers(1, 6, n).astype(np.float64),) if rated else seq)
    return out


@pytest.mark.parametrize("max_len", [1, 2, 3, 10])
@pytest.mark.parametrize("rated", [False, True])
def test_windows_and_batches_equal_the_reference(max_len, rated):
    sequences = _sequences(max_len * 10 + rated, rated)
    windows, reference = target_windows(sequences, max_len), ref_target_windows(sequences, max_len)
    assert len(windows) == len(reference)
    for w, r in zip(windows, reference):
        assert len(w) == len(r) and all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(w, r))
    examples = WindowExamples(sequences, max_len)
    assert len(examples) == len(reference)
    rng = np.random.default_rng(max_len)
    for _ in range(5):
        batch = rng.choice(len(reference), size=min(7, len(reference)), replace=False)
        expected = ref_collate_windows([reference[i] for i in batch], max_len)
        for got in (examples.batch(batch, 0, None), collate_windows([windows[i] for i in batch], max_len)):
            assert got.keys() == expected.keys()
            for key in expected:
                assert got[key].dtype == expected[key].dtype and torch.equal(got[key], expected[key]), key
    long_windows = [tuple(a[:12] for a in s) for s in sequences if len(s[0]) >= 12]  # longer than max_len + 1
    if long_windows:
        expected = ref_collate_windows(long_windows, max_len)
        got = collate_windows(long_windows, max_len)
        assert all(torch.equal(got[k], expected[k]) for k in expected)
    empty = collate_windows([], max_len)
    assert empty["inputs"].shape == ref_collate_windows([], max_len)["inputs"].shape == (0, 1)


def test_windows_of_all_targets_cover_every_event_once():
    sequences = [np.arange(n) for n in (0, 1, 2, 7, 30)]
    examples = WindowExamples(all_targets(sequences), 4)
    targets = torch.cat([examples.batch([i], 0, None)["targets"].flatten() for i in range(len(examples))])
    assert sorted(targets[targets >= 0].tolist()) == sorted(t for s in sequences for t in s[1:].tolist())


@pytest.mark.parametrize("max_len", [0, 1, 3, 50])
def test_padding_equals_the_reference(max_len):
    rng = np.random.default_rng(max_len)
    histories = [tuple(rng.integers(0, 9, int(n)).tolist()) for n in rng.integers(0, 8, 12)]
    for shape in (histories, [list(h) for h in histories], [np.asarray(h, dtype=np.int64) for h in histories], []):
        got, expected = pad_histories(shape, max_len), ref_pad_histories(shape, max_len)
        assert all(g.dtype == e.dtype and torch.equal(g, e) for g, e in zip(got, expected))
        got, expected = pad_token_lists(shape, 7), ref_pad_token_lists(shape, 7)
        assert all(g.dtype == e.dtype and torch.equal(g, e) for g, e in zip(got, expected))


def test_text_user_examples_equal_the_reference():
    sequences = [np.arange(n) * 3 for n in (1, 2, 5, 9, 0, 4)]
    examples = TextUserExamples(sequences, per_user=3, seed=11)
    for epoch in (0, 1, 0):
        pairs = ref_text_pairs(sequences, 3, 11, epoch)
        assert len(examples) == len(pairs)
        order = np.random.default_rng(epoch).permutation(len(pairs))
        batch = examples.batch(order, epoch, None)
        assert batch["histories"] == [pairs[i][0] for i in order]
        assert torch.equal(batch["targets"], torch.as_tensor([[pairs[i][1]] for i in order]))
