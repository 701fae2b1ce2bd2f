"""Interaction tables and item catalogues, held as `datasets.Dataset` (Arrow), and their validated columns.

Every loader validates what it reads and fails with a `DataError` that names the file, the line (or row) and the
field; nothing is dropped silently. Supported layouts:

* RecBole atomic files (`<name>.inter`, `<name>.item`, headers like `item_id:token`),
* GroupLens' original MovieLens-100k (`u.data`, `u.item`, `u.genre`),
* generic CSV / TSV / JSONL / Parquet with a column mapping.

Tab-separated files (RecBole, `u.data`, `.tsv`) are parsed by pyarrow's CSV reader and validated column-wise with
Arrow / numpy; any file pyarrow cannot read exactly as the `csv` module would (a wrong field count, bad UTF-8, an
empty file) is read again by the careful row-by-row reader, which raises the precise error. Line numbers are
counted only when an error needs one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")


class DataError(ValueError):
    """Bad input data; the message names the file, the line or row, and the field."""


@dataclass(frozen=True)
class RecData:
    """Interactions plus the item catalogue they refer to.

    `interactions` has the columns user_id (str), item_id (str), timestamp (float64) and optionally rating
    (float64), in file order. `items` has item_id (str) plus text fields (str); its row order defines the item
    index used by models (row i <-> item index i).
    """

    interactions: datasets.Dataset
    items: datasets.Dataset
    source: str = ""

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
            timestamps=_float64(table.column("timestamp")),
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
        return RecData(datasets.Dataset(taken, info=self.interactions.info.copy()), self.items, self.source)


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


# ---------------------------------------------------------------------------------------------------------------
# Validation shared by all loaders
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    """Columns read from one file, with a function that says where row i came from."""

    path: str
    columns: dict[str, list]
    first_line: int  # line number of row 0 (text files) or 0 for row numbering (parquet)
    unit: str = "line"

    def where(self, row: int) -> str:
        return f"{self.path}, {self.unit} {row + self.first_line}"

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


@dataclass(frozen=True)
class _LinedTable(_Table):
    lines: list[int] = field(default_factory=list)

    def where(self, row: int) -> str:
        return f"{self.path}, line {self.lines[row]}"


def _require_columns(table: _Table, required: Sequence[str]) -> None:
    if not table.columns or len(table) == 0:
        raise DataError(f"{table.path}: the file has no data rows")
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(f"{table.path}: missing column {missing[0]!r} (columns found: {sorted(table.columns)})")


def _values(column) -> list:
    """A column as Python values (Arrow columns are converted; lists are returned as they are)."""
    return column.to_pylist() if isinstance(column, (pa.Array, pa.ChunkedArray)) else column


def _is_text_column(column) -> bool:
    return isinstance(column, (pa.Array, pa.ChunkedArray)) and pa.types.is_string(column.type)


def _as_float(table: _Table, name: str) -> list[float]:
    out = []
    for row, value in enumerate(_values(table.columns[name])):
        if isinstance(value, bool):
            raise DataError(f"{table.where(row)}: field {name!r} is a boolean, not a number: {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise DataError(f"{table.where(row)}: field {name!r} is not a number: {value!r}") from None
        if math.isnan(number):
            raise DataError(f"{table.where(row)}: field {name!r} is empty or NaN")
        if math.isinf(number):
            raise DataError(f"{table.where(row)}: field {name!r} is infinite or too large: {value!r}")
        out.append(number)
    return out


def _float_column(table: _Table, name: str) -> np.ndarray:
    """`_as_float` as a float64 array. Text columns are parsed by Arrow, which accepts a subset of what Python's
    `float` does and rounds alike; anything else (text Arrow refuses, NaN, infinity, non-text values) goes through
    `_as_float`, which converts it or raises the row's error."""
    column = table.columns[name]
    if _is_text_column(column):
        try:
            numbers = np.asarray(pc.cast(column, pa.float64()).to_numpy(), dtype=np.float64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            numbers = None
        if numbers is not None and np.isfinite(numbers).all():
            return numbers
    return np.asarray(_as_float(table, name), dtype=np.float64)


def _as_id(table: _Table, name: str) -> list[str]:
    out = []
    for row, value in enumerate(_values(table.columns[name])):
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        text = "" if missing else str(value).strip()
        if isinstance(value, float) and value.is_integer():
            text = str(int(value))
        if not text:
            raise DataError(f"{table.where(row)}: field {name!r} is empty")
        out.append(text)
    return out


def _id_column(table: _Table, name: str) -> pa.Array:
    """`_as_id` as an Arrow string array. A text column is checked once per distinct value (ids repeat a lot)."""
    column = table.columns[name]
    if not _is_text_column(column) or column.null_count:
        return pa.array(_as_id(table, name), pa.string())
    encoded = (column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column).dictionary_encode()
    values = encoded.dictionary.to_pylist()
    texts = [v.strip() for v in values]
    empty = np.array([not t for t in texts], dtype=bool)
    if len(empty) and empty.any():
        row = int(np.argmax(empty[encoded.indices.to_numpy()]))
        raise DataError(f"{table.where(row)}: field {name!r} is empty")
    if texts == values:
        return encoded.dictionary.take(encoded.indices)
    return pa.array(texts, pa.string()).take(encoded.indices)


def _text(value) -> str:
    """A catalogue field as text: a missing value (None, NaN) is the empty text, never "nan"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _refuse_duplicate_events(inter: _Table, columns: Mapping[str, pa.Array | np.ndarray]) -> None:
    """The same (user, item, timestamp) twice is refused: one copy could be a test target while its twin sits in
    the history. Remove the duplicates in the file (or give them distinct timestamps) if they are real events.
    The error names the first row (in file order) that repeats an earlier one, and that earlier row."""
    users = columns["user_id"].dictionary_encode().indices.to_numpy().astype(np.int64)
    items = columns["item_id"].dictionary_encode().indices.to_numpy().astype(np.int64)
    stamps = np.asarray(columns["timestamp"], dtype=np.float64)
    pair = users * (int(items.max(initial=0)) + 1) + items
    by_pair = np.sort(pair)
    if not (by_pair[1:] == by_pair[:-1]).any():  # the common case: no (user, item) pair repeats at all
        return
    order = np.lexsort((np.arange(len(pair)), stamps, pair))  # equal keys together, in file order
    repeat = (pair[order][1:] == pair[order][:-1]) & (stamps[order][1:] == stamps[order][:-1])
    if not repeat.any():
        return
    position = 1 + int(np.argmin(np.where(repeat, order[1:], len(order))))  # the earliest row that repeats a key
    first = position
    while first > 0 and repeat[first - 1]:
        first -= 1
    row, seen = int(order[position]), int(order[first])
    user, item = columns["user_id"][row].as_py(), columns["item_id"][row].as_py()
    raise DataError(
        f"{inter.path}: duplicate interaction (user {user!r}, item {item!r}, timestamp {float(stamps[row])}) at "
        f"{inter.where(seen).split(', ')[-1]} and {inter.where(row).split(', ')[-1]}"
    )


def build_recdata(inter: _Table, items: _Table, text_fields: Sequence[str] | None = None) -> RecData:
    """Validate two tables (already renamed to textrec's column names) and build a `RecData`."""
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
    for name in fields:
        item_columns[name] = [_text(v) for v in _values(items.columns[name])]

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
        "timestamp": _float_column(inter, "timestamp"),
    }
    features = {
        "user_id": datasets.Value("string"),
        "item_id": datasets.Value("string"),
        "timestamp": datasets.Value("float64"),
    }
    if "rating" in inter.columns:
        inter_columns["rating"] = _float_column(inter, "rating")
        features["rating"] = datasets.Value("float64")
    _refuse_duplicate_events(inter, inter_columns)
    arrow = {k: v if isinstance(v, pa.Array) else pa.array(v, pa.float64()) for k, v in inter_columns.items()}
    interactions = datasets.Dataset.from_dict(arrow, features=datasets.Features(features))
    catalogue = datasets.Dataset.from_dict(
        item_columns, features=datasets.Features({k: datasets.Value("string") for k in item_columns})
    )
    return RecData(interactions, catalogue, source=inter.path)


# ---------------------------------------------------------------------------------------------------------------
