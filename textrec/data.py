"""Interaction tables and item catalogues, held as `datasets.Dataset` (Arrow), and their loaders.

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

import csv
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

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
# Readers
# ---------------------------------------------------------------------------------------------------------------


def _read_delimited(path: Path, delimiter: str, header: Sequence[str] | None, encoding: str = "utf-8") -> _Table:
    """Read a delimited text file; `header=None` means the first line is the header. Blank lines hold no data
    and are skipped; every row keeps its true line number for error messages. Tab-separated UTF-8 files are read
    by pyarrow (`_read_tsv_arrow`) and fall back to the row-by-row reader when pyarrow cannot read them."""
    if delimiter == "\t" and encoding == "utf-8":
        table = _read_tsv_arrow(path, header)
        if table is not None:
            return table
    return _read_rows(path, delimiter, header, encoding)


@dataclass(frozen=True)
class _ArrowTable(_Table):
    """Arrow string columns read from a tab-separated file; line numbers are counted only for an error message."""

    header_in_file: bool = True

    def where(self, row: int) -> str:
        return f"{self.path}, line {_data_lines(Path(self.path), self.header_in_file)[row]}"


def _data_lines(path: Path, header_in_file: bool) -> list[int]:
    """Line numbers of the data rows of a tab-separated file (no quoting: one row per non-blank line)."""
    lines = [n for n, line in enumerate(path.read_bytes().splitlines(), start=1) if line]
    return lines[1:] if header_in_file else lines


def _read_tsv_arrow(path: Path, header: Sequence[str] | None) -> _ArrowTable | None:
    """A tab-separated UTF-8 file (no quoting) as Arrow string columns, read by pyarrow; None if the file needs the
    row-by-row reader: missing, empty, a repeated column name, bad UTF-8 or a row with the wrong number of fields
    (that reader then raises the precise error)."""
    import pyarrow.csv as pa_csv

    if not path.is_file():
        return None
    names = list(header) if header is not None else _first_row(path)
    if not names or len(set(names)) != len(names):
        return None
    read = pa_csv.ReadOptions(column_names=names if header is not None else None, block_size=1 << 24)
    parse = pa_csv.ParseOptions(delimiter="\t", quote_char=False, ignore_empty_lines=True)
    convert = pa_csv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=False)
    try:
        table = pa_csv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, OSError):
        return None
    if table.column_names != names:
        return None
    columns = {n: table.column(n) for n in names} if table.num_rows else {}
    return _ArrowTable(str(path), columns, 0, header_in_file=header is None)


def _first_row(path: Path) -> list[str] | None:
    """The fields of the first non-blank line (a UTF-8 byte-order mark removed), or None."""
    with open(path, "rb") as f:
        for raw in f:
            for line in raw.splitlines():
                if line:
                    try:
                        return line.decode("utf-8").removeprefix("\ufeff").split("\t")
                    except UnicodeDecodeError:
                        return None
    return None


def _read_rows(path: Path, delimiter: str, header: Sequence[str] | None, encoding: str = "utf-8") -> _Table:
    """The careful reader: Python's `csv` module, row by row, with every row's line number."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if encoding == "utf-8":
        encoding = "utf-8-sig"  # a byte-order mark before the header is common (spreadsheet exports)
    try:
        with open(path, newline="", encoding=encoding) as f:
            quoting = csv.QUOTE_NONE if delimiter != "," else csv.QUOTE_MINIMAL
            reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
            rows, start = [], 1
            for row in reader:  # a quoted field may span lines: a row's number is the line it starts on
                if row:
                    rows.append((start, row))
                start = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: not valid {encoding.removesuffix('-sig')} text ({e.reason} at byte {e.start})"
        ) from None
    except csv.Error as e:
        raise DataError(f"{path}, line {reader.line_num}: unreadable CSV ({e})") from None
    if header is None:
        if not rows:
            raise DataError(f"{path}: the file is empty")
        header, rows = rows[0][1], rows[1:]
    names = list(header)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{path}: column {repeated[0]!r} appears more than once in the header")
    columns: dict[str, list] = {name: [] for name in names}
    for line, row in rows:
        if len(row) != len(names):
            raise DataError(f"{path}, line {line}: expected {len(names)} fields, found {len(row)}")
        for name, value in zip(names, row):
            columns[name].append(value)
    return _LinedTable(str(path), columns if rows else {}, 0, lines=[n for n, _ in rows])


def _recbole_header(table: _Table) -> _Table:
    """Strip RecBole's `name:type` suffixes from column names."""
    return dataclasses.replace(table, columns={k.split(":")[0]: v for k, v in table.columns.items()})


def load_recbole(directory: str | Path, name: str | None = None, text_fields: Sequence[str] | None = None) -> RecData:
    """Load RecBole atomic files `<directory>/<name>.inter` and `<name>.item` (name defaults to the folder name)."""
    directory = Path(directory)
    name = name or directory.name
    inter = _recbole_header(_read_delimited(directory / f"{name}.inter", "\t", None))
    items = _recbole_header(_read_delimited(directory / f"{name}.item", "\t", None))
    return build_recdata(inter, items, text_fields)


def load_grouplens_100k(directory: str | Path) -> RecData:
    """Load GroupLens' original ml-100k layout (`u.data`, `u.item`, `u.genre`) with RecBole-style item fields.

    Items get `movie_title` (year removed), `release_year` and `class` (genre names, space separated), so the same
    item template works for both layouts.
    """
    directory = Path(directory)
    inter = _read_delimited(directory / "u.data", "\t", ["user_id", "item_id", "rating", "timestamp"])
    genre_table = _read_delimited(directory / "u.genre", "|", ["name", "index"], encoding="latin-1")
    genres = [g for g in genre_table.columns.get("name", [])]
    header = ["item_id", "title", "release_date", "video_release_date", "url"] + [f"g{i}" for i in range(len(genres))]
    raw = _read_delimited(directory / "u.item", "|", header, encoding="latin-1")
    _require_columns(raw, ["item_id"])
    titles, years, classes = [], [], []
    for row in range(len(raw)):
        title = raw.columns["title"][row].strip()
        year = raw.columns["release_date"][row][-4:]
        if title.endswith(")") and title[-6:-5] == "(" and title[-5:-1].isdigit():
            title, year = title[:-6].strip(), title[-5:-1]
        flags = [raw.columns[f"g{i}"][row] for i in range(len(genres))]
        bad = [f for f in flags if f not in ("0", "1")]
        if bad:
            raise DataError(f"{raw.where(row)}: genre flag is not 0/1: {bad[0]!r}")
        titles.append(title)
        years.append(year)
        classes.append(" ".join(g for g, f in zip(genres, flags) if f == "1"))
    items = _LinedTable(
        raw.path,
        {"item_id": raw.columns["item_id"], "movie_title": titles, "release_year": years, "class": classes},
        0,
        lines=raw.lines,
    )
    return build_recdata(inter, items)


def iter_json_lines(path: str | Path):
    """(line number, object) of every non-blank line of a JSON-lines file (a BOM before the first line is allowed);
    bad UTF-8, bad JSON or a line that is not an object is a DataError naming the file and the line."""
    import json

    with open(path, "rb") as f:
        for line_no, raw_line in enumerate(f, start=1):
            try:
                line = raw_line.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}, line {line_no}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}, line {line_no}: not valid JSON ({e.msg}, column {e.colno})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}, line {line_no}: expected a JSON object, got {type(record).__name__}")
            yield line_no, record


def _read_any(path: Path) -> _Table:
    """CSV, TSV, JSON lines or Parquet, chosen by file extension."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if suffix in (".csv", ".tsv"):
        return _read_delimited(path, "," if suffix == ".csv" else "\t", None)
    if suffix in (".jsonl", ".json"):
        columns: dict[str, list] = {}
        rows = list(iter_json_lines(path))
        names = sorted({k for _, r in rows for k in r})
        for name in names:
            columns[name] = [r.get(name) for _, r in rows]
        return _LinedTable(str(path), columns, 0, lines=[n for n, _ in rows])
    if suffix == ".parquet":
        return _read_parquet(path)
    raise DataError(f"{path}: unsupported file type {suffix!r} (use .csv, .tsv, .jsonl or .parquet)")


def _read_parquet(path: Path) -> _Table:
    """A Parquet file's columns; timestamp columns (any unit, any time zone) become seconds since the epoch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    names = table.column_names
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{path}: column {repeated[0]!r} appears more than once")
    per_second = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}
    data = {}
    for name, column in zip(names, table.columns):
        if pa.types.is_timestamp(column.type):
            scale = per_second[column.type.unit]
            data[name] = [None if v is None else v / scale for v in column.cast(pa.int64()).to_pylist()]
        else:
            data[name] = column.to_pylist()
    return _Table(str(path), data if data and table.num_rows else {}, 1, unit="row")


def _rename(table: _Table, mapping: Mapping[str, str], what: str) -> _Table:
    """Rename file columns to textrec names; `mapping` is textrec name -> file column name."""
    columns = dict(table.columns)
    for ours, theirs in mapping.items():
        if theirs == ours or not table.columns:
            continue
        if theirs not in columns:
            raise DataError(
                f"{table.path}: missing column {theirs!r} (mapped to {what} field {ours!r}; "
                f"columns found: {sorted(table.columns)})"
            )
        columns[ours] = columns.pop(theirs)
    return dataclasses.replace(table, columns=columns)


def load_tabular(
    interactions_path: str | Path,
    items_path: str | Path,
    columns: Mapping[str, str] | None = None,
    item_columns: Mapping[str, str] | None = None,
    text_fields: Sequence[str] | None = None,
) -> RecData:
    """Load interactions and items from CSV / TSV / JSONL / Parquet files.

    `columns` maps textrec's interaction fields (user_id, item_id, timestamp, rating) to the file's column names;
    `item_columns` maps `item_id` likewise for the item file. `text_fields` (default: every other item column) are
    the item fields available to the text template.
    """
    inter = _rename(_read_any(Path(interactions_path)), dict(columns or {}), "interaction")
    items = _rename(_read_any(Path(items_path)), dict(item_columns or {}), "item")
    return build_recdata(inter, items, text_fields)


def load_items(path: str | Path, item_columns: Mapping[str, str] | None = None) -> datasets.Dataset:
    """Load an item catalogue alone (item_id + text fields): a RecBole `.item` file, CSV, TSV, JSONL or Parquet."""
    path = Path(path)
    table = _recbole_header(_read_delimited(path, "\t", None)) if path.suffix == ".item" else _read_any(path)
    table = _rename(table, dict(item_columns or {}), "item")
    _require_columns(table, ["item_id"])
    dummy = _Table(str(path), {"user_id": ["u"], "item_id": [None], "timestamp": [0]}, 1)
    dummy.columns["item_id"][0] = _as_id(table, "item_id")[0]
    return build_recdata(dummy, table).items


def load_data(
    format,
    path: str | Path | None = None,
    name: str | None = None,
    items_path: str | Path | None = None,
    columns: Mapping[str, str] | None = None,
    item_columns: Mapping[str, str] | None = None,
) -> RecData:
    """Dispatch on `format` in {"recbole", "grouplens", "tabular"}; or pass a recipe's `DataConfig` as `format`
    (which also knows "synthetic")."""
    if not isinstance(format, str):  # a DataConfig
        cfg = format
        if cfg.format == "synthetic":
            from textrec.synthetic import make_synthetic

            return make_synthetic(
                num_users=cfg.synthetic_users,
                num_items=cfg.synthetic_items,
                drift=cfg.synthetic_drift,
                seed=cfg.seed,
                shift_at=cfg.synthetic_shift_at,
                drift_after=cfg.synthetic_drift_after,
            )
        return load_data(cfg.format, cfg.path, cfg.name, cfg.items_path, cfg.columns, cfg.item_columns)
    if format == "recbole":
        return load_recbole(path, name)
    if format == "grouplens":
        return load_grouplens_100k(path)
    if format == "tabular":
        if items_path is None:
            raise DataError("format 'tabular' needs items_path (the item catalogue file)")
        return load_tabular(path, items_path, columns, item_columns)
    raise ValueError(f"format: unknown data format {format!r} (expected recbole, grouplens or tabular)")
