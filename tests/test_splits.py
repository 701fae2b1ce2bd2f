import datasets
import numpy as np
import pytest

from textrec.data import RecData
from textrec.data.splits import leave_one_out, time_cut, user_sequences


def _data(rows):
    users, items, stamps = zip(*rows)
    inter = datasets.Dataset.from_dict({"user_id": list(users), "item_id": list(items), "timestamp": list(stamps)})
    names = sorted(set(items))
    catalogue = datasets.Dataset.from_dict({"item_id": names, "title": [f"t{n}" for n in names]})
    return RecData(inter, catalogue)


def test_leave_one_out_sorts_by_time_and_keeps_file_order_on_ties():
    data = _data([("a", "x", 3.0), ("a", "y", 1.0), ("a", "z", 2.0), ("a", "w", 2.0), ("b", "x", 5.0)])
    idx = data.item_index
    split = leave_one_out(data)
    user_a = data.arrays.user_ids.index("a")
    # a: y(1), z(2), w(2, after z in file order), x(3)
    assert split.train[user_a].tolist() == [idx["y"], idx["z"]]
    (valid,) = [e for e in split.valid if e.user == user_a]
    (test,) = [e for e in split.test if e.user == user_a]
    assert valid.target == idx["w"] and valid.history == (idx["y"], idx["z"])
    assert test.target == idx["x"] and test.history == (idx["y"], idx["z"], idx["w"])


def test_users_with_fewer_than_three_interactions_stay_in_train():
    data = _data([("a", "x", 1.0), ("a", "y", 2.0), ("b", "x", 1.0), ("c", "x", 1), ("c", "y", 2), ("c", "z", 3)])
    split = leave_one_out(data)
    codes = data.arrays.user_ids
    assert [len(s) for s in split.train] == [2 if u == "a" else 1 if u in ("b", "c") else 0 for u in codes]
    assert {e.user for e in split.test} == {codes.index("c")}
    assert len(split.valid) == len(split.test) == 1


def test_user_sequences_are_stable():
    data = _data([("a", "x", 1.0), ("a", "y", 1.0), ("a", "z", 1.0)])
    assert user_sequences(data)[0].tolist() == [0, 1, 2]


def test_time_cut():
    data = _data([("a", "x", 3.0), ("b", "y", 1.0), ("a", "z", 2.0), ("c", "w", 4.0)])
    before, after = time_cut(data, fraction=0.5)
    assert sorted(before.interactions["timestamp"]) == [1.0, 2.0]
    assert sorted(after.interactions["timestamp"]) == [3.0, 4.0]
    before, after = time_cut(data, timestamp=3.0)
    assert len(before.interactions) == 2 and len(after.interactions) == 2
    with pytest.raises(ValueError, match="exactly one"):
        time_cut(data)
    assert np.all(np.diff(np.asarray(after.interactions["timestamp"])) >= 0)
