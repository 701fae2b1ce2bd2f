"""Reading one file into a table of columns (`textrec.data.tables._Table`), by file format: delimited text (tab- or
comma-separated, or `|` for GroupLens), JSON lines and Parquet; `_read_any` picks one by the file's extension.

Tab-separated UTF-8 files (RecBole, `u.data`, `.tsv`) are parsed by pyarrow's CSV reader into Arrow columns; any file
pyarrow cannot read exactly as the `csv` module would (a wrong field count, bad UTF-8, an empty file) is read again by
the careful row-by-row reader, which raises the precise error. Line numbers are counted only when an error needs one.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from textrec.data.tables import DataError, _LinedTable, _Table


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
    data = {}
    for name, column in zip(names, table.columns):
        data[name] = _seconds(path, name, column) if pa.types.is_timestamp(column.type) else column.to_pylist()
    return _Table(str(path), data if data and table.num_rows else {}, 1, unit="row")


def _seconds(path: Path, name: str, column) -> list:
    """A Parquet timestamp column (any unit) as seconds since the epoch: integers when every value is a whole
    second, else floats; a column whose distinct values float64 seconds would merge (instants under about a
    microsecond apart) is refused rather than rounded, since that reorders events."""
    import numpy as np
    import pyarrow as pa

    scale = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[column.type.unit]
    ticks = column.cast(pa.int64()).to_pylist()
    if all(v is None or v % scale == 0 for v in ticks):
        return [None if v is None else v // scale for v in ticks]
    seconds = [None if v is None else v / scale for v in ticks]
    known = [v for v in ticks if v is not None]
    if len(np.unique(np.asarray(known, dtype=np.int64))) != len({v / scale for v in known}):
        raise DataError(
            f"{path}: column {name!r}: timestamps ({column.type.unit}) closer than float64 seconds can tell apart: "
            "store them as an integer column (e.g. nanoseconds as int64), which textrec keeps exact"
        )
    return seconds
