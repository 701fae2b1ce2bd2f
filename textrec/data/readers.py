"""Readers of the dataset layouts textrec loads, each into a `RecData`, and `load_data` to pick one:

* RecBole atomic files (`<name>.inter`, `<name>.item`, headers like `item_id:token`),
* GroupLens' original MovieLens-100k (`u.data`, `u.item`, `u.genre`),
* generic CSV / TSV / JSONL / Parquet with a column mapping (`load_tabular`), or an item catalogue alone
  (`load_items`).

Every reader validates what it reads and fails with a `DataError` naming the file, the line (or row) and the field;
nothing is dropped silently. Reading one file is `textrec.data.formats`'; checking its columns `textrec.data.tables`'.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets

from textrec.data.formats import (  # noqa: F401 - iter_json_lines is importable from here as before it moved
    _read_any,
    _read_delimited,
    iter_json_lines,
)
from textrec.data.records import RecData, build_recdata
from textrec.data.tables import DataError, _as_id, _LinedTable, _require_columns, _Table


def _recbole_header(table: _Table) -> _Table:
    """Strip RecBole's `name:type` suffixes from column names."""
    return dataclasses.replace(table, columns={k.split(":")[0]: v for k, v in table.columns.items()})


def load_recbole(directory: str | Path, name: str | None = None, text_fields: Sequence[str] | None = None) -> RecData:
    """Load RecBole atomic files `<directory>/<name>.inter` and `<name>.item` (name defaults to the folder name)."""
    directory = Path(directory)
    name = name or directory.name
    inter = _recbole_header(_read_delimited(directory / f"{name}.inter", "\t", None))
    items = _recbole_header(_read_delimited(directory / f"{name}.item", "\t", None))
    return build_recdata(inter, items, text_fields, name=name)


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
    return build_recdata(inter, items, name=directory.name)


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
            from textrec.data.synthetic import make_synthetic

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


def dataset_name(data_cfg, data: RecData) -> str:
    """The name a run records for its data (config.json `dataset`, the model card's `datasets`, result rows): the
    name the loader gave what it actually read (`RecData.name`: "synthetic" for generated data, never the default
    `data.path`), else, for a `RecData` built by hand, the config's `data.name` or the folder name of `data.path`."""
    if data.name:
        return data.name
    if data_cfg.format == "synthetic":
        return "synthetic"
    return data_cfg.name or Path(data_cfg.path).name
