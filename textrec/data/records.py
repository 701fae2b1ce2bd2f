"""Interaction tables and item catalogues, held as `datasets.Dataset` (Arrow): `RecData`, its integer-coded view
(`InteractionArrays`) and `build_recdata`, which makes one from two validated tables.

The readers (`textrec.data.readers`) read files into tables; the checks of their columns are `textrec.data.tables`'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from textrec.data.tables import (
    DataError,
    _as_id,
    _float_column,
    _id_column,
    _refuse_duplicate_events,
    _require_columns,
    _Table,
    _text,
    _timestamp_column,
    _values,
)

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")


@dataclass(frozen=True)
class RecData:
    """Interactions plus the item catalogue they refer to.

    `interactions` has the columns user_id (str), item_id (str), timestamp (int64 when the file's timestamps are
    all integers, else float64) and optionally rating (float64), in file order. `items` has item_id (str) plus text
    fields (str); its row order defines the item index used by models (row i <-> item index i). `source`: what was
    read (a file, or the generator and its seed); `name`: the dataset's name as the loader knows it (the RecBole
    name, the GroupLens folder, the tabular interactions file, "synthetic"), which runs record.
    """

    interactions: datasets.Dataset
    items: datasets.Dataset
    source: str = ""
    name: str = ""

    @cached_property
    def item_ids(self) -> list[str]:
        return _arrow_table(self.items).column("item_id").to_pylist()

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {item_id: i for i, item_id in enumerate(self.item_ids)}

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def has_ratings(self) -> bool:
        return "rating" in self.interactions.column_names

    @property
    def text_fields(self) -> list[str]:
        return [c for c in self.items.column_names if c != "item_id"]

    @cached_property
    def arrays(self) -> InteractionArrays:
        """Integer-coded interactions, for fast splitting and batching. User codes follow the sorted user ids
        (`user_ids[code]`); item codes are rows of the catalogue."""
        table = _arrow_table(self.interactions)
        user_codes, user_ids = _sorted_codes(table.column("user_id"))
        ratings = _float64(table.column("rating")) if self.has_ratings else None
        return InteractionArrays(
            users=user_codes,
            items=self._item_codes(table.column("item_id")),
            timestamps=np.asarray(table.column("timestamp").to_numpy()),  # int64 or float64, as read
            ratings=ratings,
            user_ids=[str(u) for u in user_ids],
        )

    def _item_codes(self, column: pa.ChunkedArray) -> np.ndarray:
        """Catalogue row of every interaction's item (the last row, as `item_index`, if an id repeats)."""
        catalogue = _arrow_table(self.items).column("item_id").combine_chunks()
        try:
            found = pc.index_in(column, value_set=catalogue[::-1])  # reversed: the last occurrence wins
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # mixed id types: compare as Python values
            index = self.item_index
            return np.fromiter((index[i] for i in column.to_pylist()), dtype=np.int64, count=len(column))
        if found.null_count:
            raise KeyError(column[int(np.flatnonzero(found.is_null().to_numpy(zero_copy_only=False))[0])].as_py())
        return len(catalogue) - 1 - found.to_numpy().astype(np.int64)

    def select_interactions(self, rows: Sequence[int] | np.ndarray) -> RecData:
        """The same catalogue with a subset of the interaction rows (kept in the given order)."""
        taken = _arrow_table(self.interactions).take(pa.array(np.asarray(rows, dtype=np.int64).reshape(-1)))
        interactions = datasets.Dataset(taken, info=self.interactions.info.copy())
        return RecData(interactions, self.items, self.source, self.name)


def _arrow_table(dataset: datasets.Dataset) -> pa.Table:
    """A Dataset's rows as one Arrow table (its selection applied), without a Python object per row."""
    return dataset.with_format("arrow")[:]


def _float64(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(column.to_numpy(), dtype=np.float64)


def _sorted_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list]:
    """(codes, values): `values` are the distinct values in sorted order and `values[codes[i]]` is row i's value
    (what `np.unique(..., return_inverse=True)` gives, without a Python object per row)."""
    encoded = column.combine_chunks().dictionary_encode()
    order = pc.sort_indices(encoded.dictionary).to_numpy()  # strings: UTF-8 byte order = code point order
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[encoded.indices.to_numpy()], encoded.dictionary.take(pa.array(order)).to_pylist()


@dataclass(frozen=True)
class InteractionArrays:
    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray | None
    user_ids: list[str] = field(default_factory=list)


def build_recdata(
    inter: _Table, items: _Table, text_fields: Sequence[str] | None = None, name: str | None = None
) -> RecData:
    """Validate two tables (already renamed to textrec's column names) and build a `RecData` named `name` (default:
    the interactions file's name)."""
    _require_columns(items, ["item_id"])
    _require_columns(inter, INTERACTION_COLUMNS)
    item_ids = _as_id(items, "item_id")
    seen: dict[str, int] = {}
    for row, item_id in enumerate(item_ids):
        if item_id in seen:
            first, again = items.where(seen[item_id]).split(", ")[-1], items.where(row).split(", ")[-1]
            raise DataError(f"{items.path}: duplicate item id {item_id!r} ({first} and {again})")
        seen[item_id] = row
    fields = list(text_fields) if text_fields is not None else [c for c in items.columns if c != "item_id"]
    missing = [f for f in fields if f not in items.columns]
    if missing:
        raise DataError(f"{items.path}: missing column {missing[0]!r} (columns found: {sorted(items.columns)})")
    item_columns = {"item_id": item_ids}
    for text_field in fields:
        item_columns[text_field] = [_text(v) for v in _values(items.columns[text_field])]

    # Checked column by column, in this order, each naming its first bad row (as a row-by-row check would).
    inter_item = _id_column(inter, "item_id")
    known = pc.is_in(inter_item, value_set=pa.array(item_ids, pa.string())).to_numpy(zero_copy_only=False)
    if not known.all():
        row = int(np.argmin(known))
        raise DataError(
            f"{inter.where(row)}: field 'item_id': unknown item id {inter_item[row].as_py()!r} (not in the item "
            f"catalogue {items.path})"
        )
    inter_columns: dict[str, pa.Array | np.ndarray] = {
        "user_id": _id_column(inter, "user_id"),
        "item_id": inter_item,
        "timestamp": _timestamp_column(inter, "timestamp"),
    }
    features = {
        "user_id": datasets.Value("string"),
        "item_id": datasets.Value("string"),
        "timestamp": datasets.Value(str(inter_columns["timestamp"].dtype)),
    }
    if "rating" in inter.columns:
        inter_columns["rating"] = _float_column(inter, "rating")
        features["rating"] = datasets.Value("float64")
    _refuse_duplicate_events(inter, inter_columns)
    arrow = {k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in inter_columns.items()}
    interactions = datasets.Dataset.from_dict(arrow, features=datasets.Features(features))
    catalogue = datasets.Dataset.from_dict(
        item_columns, features=datasets.Features({k: datasets.Value("string") for k in item_columns})
    )
    return RecData(interactions, catalogue, source=inter.path, name=name or Path(inter.path).name)
