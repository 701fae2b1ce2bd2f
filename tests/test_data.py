"""Loaders: every format reads good data, and bad data fails with a message naming file, line/row and field."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from textrec.data import DataError, load_grouplens_100k, load_recbole, load_tabular
from textrec.data.text import ItemTemplate, default_template

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"


def write_recbole(tmp_path, inter_rows, item_rows, inter_header=INTER_HEADER, item_header=ITEM_HEADER):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "toy.inter").write_text(inter_header + "".join("\t".join(r) + "\n" for r in inter_rows))
    (folder / "toy.item").write_text(item_header + "".join("\t".join(r) + "\n" for r in item_rows))
    return folder


ITEMS = [("1", "Toy Story", "1995", "Animation Comedy"), ("2", "GoldenEye", "1995", "Action")]
INTER = [("10", "1", "4", "100"), ("10", "2", "3", "101"), ("11", "2", "5", "99")]


def test_recbole_reads_good_files(tmp_path):
    data = load_recbole(write_recbole(tmp_path, INTER, ITEMS))
    assert len(data.interactions) == 3 and data.num_items == 2 and data.has_ratings
    assert data.interactions["timestamp"] == [100.0, 101.0, 99.0]
    text = default_template(data.text_fields).render_all(data.items)
    assert text[0] == "Toy Story (1995). Genres: Animation Comedy"


@pytest.mark.parametrize(
    "inter, items, header, message",
    [
        (
            [r[:3] for r in INTER],
            ITEMS,
            "user_id:token\titem_id:token\trating:float\n",
            r"toy\.inter: missing column 'timestamp'",
        ),
        (INTER + [("12", "7", "4", "100")], ITEMS, None, r"toy\.inter, line 5: field 'item_id': unknown item id '7'"),
        ([("10", "1", "4", "yesterday")], ITEMS, None, r"toy\.inter, line 2: field 'timestamp' is not a number"),
        ([], ITEMS, None, r"toy\.inter: the file has no data rows"),
        (
            INTER,
            ITEMS + [("1", "Again", "1999", "Drama")],
            None,
            r"toy\.item: duplicate item id '1' \(line 2 and line 4\)",
        ),
        ([("10", "1", "4")], ITEMS, None, r"toy\.inter, line 2: expected 4 fields, found 3"),
    ],
)
def test_recbole_malformed(tmp_path, inter, items, header, message):
    folder = write_recbole(tmp_path, inter, items, inter_header=header or INTER_HEADER)
    with pytest.raises(DataError, match=message):
        load_recbole(folder)


def test_recbole_empty_file(tmp_path):
    folder = write_recbole(tmp_path, INTER, ITEMS)
    (folder / "toy.item").write_text("")
    with pytest.raises(DataError, match=r"toy\.item: the file is empty"):
        load_recbole(folder)


def write_grouplens(tmp_path, data_lines, item_lines):
    (tmp_path / "u.data").write_text("".join(line + "\n" for line in data_lines))
    (tmp_path / "u.item").write_text("".join(line + "\n" for line in item_lines), encoding="latin-1")
    (tmp_path / "u.genre").write_text("unknown|0\nAction|1\nComedy|2\n\n")
    return tmp_path


def test_grouplens_layout(tmp_path):
    folder = write_grouplens(
        tmp_path,
        ["1\t1\t5\t874965758", "1\t2\t3\t876893171", "2\t1\t4\t878542960"],
        ["1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1", "2|Café (1996)|01-Jan-1996||http://y|0|1|0"],
    )
    data = load_grouplens_100k(folder)
    assert data.items["movie_title"] == ["Toy Story", "Café"]
    assert data.items["release_year"] == ["1995", "1996"]
    assert data.items["class"] == ["Comedy", "Action"]
    assert data.interactions["rating"] == [5.0, 3.0, 4.0]


def test_grouplens_unknown_item(tmp_path):
    folder = write_grouplens(tmp_path, ["1\t9\t5\t874965758"], ["1|Toy Story (1995)|01-Jan-1995||u|0|0|1"])
    with pytest.raises(DataError, match=r"u\.data, line 1: field 'item_id': unknown item id '9'"):
        load_grouplens_100k(folder)


def _write_tables(tmp_path, fmt, inter, items):
    ip, tp = tmp_path / f"inter.{fmt}", tmp_path / f"items.{fmt}"
    for path, rows in ((ip, inter), (tp, items)):
        if fmt == "csv":
            cols = list(rows[0]) if rows else ["user", "movie", "ts"]
            path.write_text(",".join(cols) + "\n" + "".join(",".join(str(r[c]) for c in cols) + "\n" for r in rows))
        elif fmt == "jsonl":
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            mixed = any(isinstance(r.get("ts"), str) for r in rows)
            rows = [{k: str(v) for k, v in r.items()} for r in rows] if mixed else rows
            pq.write_table(pa.Table.from_pylist(rows) if rows else pa.table({"user": []}), path)
    return ip, tp


GOOD_INTER = [{"user": "a", "movie": "m1", "ts": 1}, {"user": "a", "movie": "m2", "ts": 2}]
GOOD_ITEMS = [{"mid": "m1", "name": "First"}, {"mid": "m2", "name": "Second"}]
MAPPING = {"user_id": "user", "item_id": "movie", "timestamp": "ts"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_tabular_good(tmp_path, fmt):
    ip, tp = _write_tables(tmp_path, fmt, GOOD_INTER, GOOD_ITEMS)
    data = load_tabular(ip, tp, MAPPING, {"item_id": "mid"})
    assert data.item_ids == ["m1", "m2"] and data.interactions["item_id"] == ["m1", "m2"]
    assert ItemTemplate("{name}").render_all(data.items) == ["First", "Second"]


@pytest.mark.parametrize("fmt, where", [("csv", "line 3"), ("jsonl", "line 2"), ("parquet", "row 2")])
def test_tabular_bad_rows_name_the_row(tmp_path, fmt, where):
    bad = GOOD_INTER[:1] + [{"user": "a", "movie": "m2", "ts": "noon"}]
    ip, tp = _write_tables(tmp_path, fmt, bad, GOOD_ITEMS)
    with pytest.raises(DataError, match=rf"inter\.{fmt}, {where}: field 'timestamp' is not a number: 'noon'"):
        load_tabular(ip, tp, MAPPING, {"item_id": "mid"})
    unknown = GOOD_INTER[:1] + [{"user": "a", "movie": "m9", "ts": 3}]
    ip, tp = _write_tables(tmp_path, fmt, unknown, GOOD_ITEMS)
    with pytest.raises(DataError, match=rf"inter\.{fmt}, {where}: field 'item_id': unknown item id 'm9'"):
        load_tabular(ip, tp, MAPPING, {"item_id": "mid"})


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_tabular_missing_column_duplicate_ids_empty(tmp_path, fmt):
    ip, tp = _write_tables(tmp_path, fmt, GOOD_INTER, GOOD_ITEMS)
    with pytest.raises(DataError, match=rf"inter\.{fmt}: missing column 'when'"):
        load_tabular(ip, tp, {**MAPPING, "timestamp": "when"}, {"item_id": "mid"})
    ip, tp = _write_tables(tmp_path, fmt, GOOD_INTER, GOOD_ITEMS + [{"mid": "m1", "name": "Again"}])
    with pytest.raises(DataError, match=rf"items\.{fmt}: duplicate item id 'm1'"):
        load_tabular(ip, tp, MAPPING, {"item_id": "mid"})
    ip, tp = _write_tables(tmp_path, fmt, [], GOOD_ITEMS)
    with pytest.raises(DataError, match=rf"inter\.{fmt}: (the file has no data rows|the file is empty)"):
        load_tabular(ip, tp, MAPPING, {"item_id": "mid"})


def test_template_names_missing_field(tmp_path):
    data = load_recbole(write_recbole(tmp_path, INTER, ITEMS))
    with pytest.raises(DataError, match="names field 'plot'"):
        ItemTemplate("{movie_title}: {plot}").render_all(data.items)


ITEMS_CSV = "item_id,title\n1,Toy Story\n2,GoldenEye\n"


def _tabular(tmp_path, inter_text, items_text=ITEMS_CSV, suffix=".csv"):
    ip, tp = tmp_path / f"events{suffix}", tmp_path / "items.csv"
    if isinstance(inter_text, bytes):
        ip.write_bytes(inter_text)
    else:
        ip.write_text(inter_text)
    tp.write_text(items_text)
    return load_tabular(ip, tp)


@pytest.mark.parametrize(
    "rows, message",
    [
        ("u1,1,inf\n", "line 2: field 'timestamp' is infinite"),
        ("u1,1,-inf\n", "line 2: field 'timestamp' is infinite"),
        ("u1,1,1e400\n", "line 2: field 'timestamp' is infinite or too large"),
        ("u1,1,5\nu1,1,5\n", r"duplicate interaction \(user 'u1', item '1', timestamp 5\) at line 2 and line 3"),
    ],
)
def test_bad_numbers_and_duplicate_events_are_refused(tmp_path, rows, message):
    with pytest.raises(DataError, match=message):
        _tabular(tmp_path, "user_id,item_id,timestamp\n" + rows)


def test_rating_inf_and_bool_timestamps_are_refused(tmp_path):
    with pytest.raises(DataError, match="line 2: field 'rating' is infinite"):
        _tabular(tmp_path, "user_id,item_id,timestamp,rating\nu1,1,5,inf\n")
    lines = [json.dumps({"user_id": "u1", "item_id": "1", "timestamp": True})]
    with pytest.raises(DataError, match="line 1: field 'timestamp' is a boolean"):
        _tabular(tmp_path, "\n".join(lines) + "\n", suffix=".jsonl")


def test_nan_ids_and_text_are_missing_values_not_the_text_nan(tmp_path):
    events = pa.table({"user_id": ["u1", "u2"], "item_id": [1.0, float("nan")], "timestamp": [1.0, 2.0]})
    pq.write_table(events, tmp_path / "events.parquet")
    (tmp_path / "items.csv").write_text(ITEMS_CSV)
    with pytest.raises(DataError, match="row 2: field 'item_id' is empty"):
        load_tabular(tmp_path / "events.parquet", tmp_path / "items.csv")
    nan_id = [json.dumps({"user_id": "u1", "item_id": float("nan"), "timestamp": 1})]
    with pytest.raises(DataError, match="line 1: field 'item_id' is empty"):
        _tabular(tmp_path, "\n".join(nan_id) + "\n", suffix=".jsonl")
    items = [json.dumps({"item_id": "1", "title": "Toy Story"}), json.dumps({"item_id": "2", "title": float("nan")})]
    (tmp_path / "items.jsonl").write_text("\n".join(items) + "\n")
    data = load_tabular(_write(tmp_path), tmp_path / "items.jsonl")
    assert data.items["title"] == ["Toy Story", ""]


def _write(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text("user_id,item_id,timestamp\nu1,1,1\nu1,2,2\n")
    return path


def test_csv_line_numbers_count_multi_line_quoted_fields(tmp_path):
    text = 'user_id,item_id,timestamp,note\nu1,1,1,"two\nlines"\nu1,1,oops,x\n'
    with pytest.raises(DataError, match="line 4: field 'timestamp' is not a number"):
        _tabular(tmp_path, text)


def test_common_file_shapes_are_read(tmp_path):
    data = _tabular(tmp_path, "\ufeffuser_id,item_id,timestamp\nu1,1,1\n")  # a UTF-8 byte-order mark
    assert data.interactions["user_id"] == ["u1"]
    stamps = pa.array([1_700_000_000, 1_700_000_060], type=pa.timestamp("s"))
    pq.write_table(
        pa.table({"user_id": ["u", "u"], "item_id": ["1", "2"], "timestamp": stamps}), tmp_path / "t.parquet"
    )
    (tmp_path / "items.csv").write_text(ITEMS_CSV)
    data = load_tabular(tmp_path / "t.parquet", tmp_path / "items.csv")
    assert data.interactions["timestamp"] == [1_700_000_000.0, 1_700_000_060.0]


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ("user_id,item_id,item_id,timestamp\nu1,1,1,1\n", ".csv", "column 'item_id' appears more than once"),
        (b'{"user_id": "u\xff", "item_id": "1", "timestamp": 1}\n', ".jsonl", "line 1: not valid UTF-8"),
        (b"PAR1 this is not parquet", ".parquet", "not a readable Parquet file"),
    ],
)
def test_broken_files_name_the_file(tmp_path, content, suffix, message):
    with pytest.raises(DataError, match=message):
        _tabular(tmp_path, content, suffix=suffix)


def _recbole_text(tmp_path, inter_text: str):
    folder = tmp_path / "toy"
    folder.mkdir(exist_ok=True)
    (folder / "toy.inter").write_bytes(inter_text.encode("utf-8"))
    (folder / "toy.item").write_text(ITEM_HEADER + "".join("\t".join(r) + "\n" for r in ITEMS))
    return folder


@pytest.mark.parametrize(
    "body",
    [
        "\ufeff" + INTER_HEADER + "10\t1\t4\t100\n\n11\t2\t5\t99\r\n10\t2\t3\t101\r",  # BOM, blank line, CR endings
        INTER_HEADER + " 10 \t1\t4\t 100\n11\t2\t5\t99\n10\t 2\t3\t1_01\n",  # text Arrow's parser refuses
        "\n\n" + INTER_HEADER + "10\t1\t4\t1e2\n11\t2\t5.0\t99\n\n\n10\t2\t3\t101.0",
    ],
)
def test_tab_separated_files_read_by_arrow_equal_the_row_reader(tmp_path, body):
    """The pyarrow reader and the csv-module reader give the same RecData (ids stripped, Python's float rules)."""
    from textrec.data.formats import _read_rows
    from textrec.data.readers import _recbole_header
    from textrec.data.records import build_recdata

    folder = _recbole_text(tmp_path, body)
    fast = load_recbole(folder)
    table = _recbole_header(_read_rows(folder / "toy.inter", "\t", None))
    items = _recbole_header(_read_rows(folder / "toy.item", "\t", None))
    slow = build_recdata(table, items)
    assert fast.interactions.to_dict() == slow.interactions.to_dict()
    assert fast.interactions["user_id"] == ["10", "11", "10"]
    assert fast.interactions["timestamp"] == [100.0, 99.0, 101.0]


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            "10\t1\t4\t100\n\n\n10\t1\t4\t100.0\n",
            r"duplicate interaction \(user '10', item '1', timestamp 100.0\) at "
            r"line 2 and line 5",
        ),
        ("10\t1\t4\t100\n11\t1\t4\t5\n\n11\t 1\t4\t5\n10\t1\t4\t100\n", r"at line 3 and line 5"),
        ("10\t1\t4\t100\n\n \t2\t4\t5\n", r"toy\.inter, line 4: field 'user_id' is empty"),
        ("10\t1\t4\t100\n\n11\t2\t4\tnan\n", r"toy\.inter, line 4: field 'timestamp' is empty or NaN"),
        ("10\t1\t4\t100\n11\t2\tinf\t5\n", r"toy\.inter, line 3: field 'rating' is infinite or too large: 'inf'"),
        ("10\t1\t4\t100\n\n11\t3\t4\t5\n", r"toy\.inter, line 4: field 'item_id': unknown item id '3'"),
        ("10\t1\t4\t100\n\n11\t2\t4\n", r"toy\.inter, line 4: expected 4 fields, found 3"),
    ],
)
def test_tab_separated_errors_name_the_true_line(tmp_path, rows, message):
    with pytest.raises(DataError, match=message):
        load_recbole(_recbole_text(tmp_path, INTER_HEADER + rows))


def test_tab_separated_bad_utf8_is_named(tmp_path):
    folder = _recbole_text(tmp_path, INTER_HEADER)
    (folder / "toy.inter").write_bytes(INTER_HEADER.encode() + b"1\xff\t1\t4\t100\n")
    with pytest.raises(DataError, match=r"toy\.inter: not valid utf-8 text"):
        load_recbole(folder)


def test_synthetic_data_refuses_histories_longer_than_the_catalogue():
    from textrec.data.synthetic import make_synthetic

    with pytest.raises(ValueError, match="exceeds num_items"):
        make_synthetic(num_users=3, num_items=10)
