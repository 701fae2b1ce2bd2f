"""Data: interaction tables and item catalogues (`RecData`), their readers, splits (E1 leave-one-out, time cuts),
item text templates, model inputs (tokens, windows) and the synthetic generator with a planted signal."""

from textrec.data.formats import iter_json_lines
from textrec.data.readers import (
    dataset_name,
    load_data,
    load_grouplens_100k,
    load_items,
    load_recbole,
    load_tabular,
)
from textrec.data.records import DataError, InteractionArrays, RecData, build_recdata

__all__ = [
    "DataError",
    "InteractionArrays",
    "RecData",
    "build_recdata",
    "dataset_name",
    "iter_json_lines",
    "load_data",
    "load_grouplens_100k",
    "load_items",
    "load_recbole",
    "load_tabular",
]
