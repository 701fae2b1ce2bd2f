"""Columns as read from one file (`_Table`) and their validation: ids, numbers and texts checked column by column,
each error a `DataError` that names the file, the line (or row) and the field. Nothing is dropped silently.

The checks run on Arrow columns where the readers give them (tab-separated files parsed by pyarrow) and on Python
lists otherwise; both raise the same error for the same first bad row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class DataError(ValueError):
    """Bad input data; the message names the file, the line or row, and the field."""


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


def _timestamp_column(table: _Table, name: str = "timestamp") -> np.ndarray:
    """Timestamps as int64 when every one is an integer (an integer column, Python ints, or text of digits), so
    that nanosecond timestamps keep their order; else `_float_column`'s float64 (float64 holds integers exactly
    only up to 2**53, about 104 days in nanoseconds)."""
    column = table.columns[name]
    values = column
    if isinstance(column, list) and column and all(isinstance(v, str) for v in column):
        values = pa.array(column, pa.string())
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if values.null_count or not (pa.types.is_integer(values.type) or pa.types.is_string(values.type)):
            return _float_column(table, name)
        try:
            trimmed = pc.utf8_trim_whitespace(values) if pa.types.is_string(values.type) else values
            return np.asarray(pc.cast(trimmed, pa.int64()).to_numpy(), dtype=np.int64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # a fraction, an exponent, not a number, too large
            return _float_column(table, name)
    if values and all(type(v) is int for v in values):
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            pass
    return _float_column(table, name)


def _id_kind(table: _Table, name: str, row: int, value) -> str:
    """How an id is written: 'text', 'an integer' or 'a decimal number'. A boolean, object or list is refused."""
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        kind = {dict: "an object", list: "a list"}.get(type(value), "a boolean")
        raise DataError(f"{table.where(row)}: field {name!r} is {kind}, not an id: {value!r} (write it as text)")
    return "text" if isinstance(value, str) else "an integer" if isinstance(value, int) else "a decimal number"


def _as_id(table: _Table, name: str) -> list[str]:
    """Ids as text, stripped (an integer-valued float 3.0 is "3"). One column writes its ids one way: text, integers
    or other numbers mixed in one column (JSON's 1, "1" and 1.0, which would become one id) are refused."""
    out, first = [], None
    for row, value in enumerate(_values(table.columns[name])):
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        kind = None if missing else _id_kind(table, name, row, value)
        if kind is not None and first is None:
            first = (row, kind, value)
        elif kind is not None and kind != first[1]:
            raise DataError(
                f"{table.where(row)}: field {name!r}: the id {value!r} is {kind}, but {table.where(first[0])} has "
                f"{first[1]} ({first[2]!r}): write every {name} of a file one way (all text, or all integers), so "
                'that 1, "1" and 1.0 are never taken for one id'
            )
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
    stamps = np.asarray(columns["timestamp"])  # int64 or float64, as read: never rounded
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
        f"{inter.path}: duplicate interaction (user {user!r}, item {item!r}, timestamp {stamps[row].item()}) at "
        f"{inter.where(seen).split(', ')[-1]} and {inter.where(row).split(', ')[-1]}"
    )
