"""The results module: rows that round-trip, files that merge, summaries over seeds, comparisons, selection on
validation, the markdown tables, and every recorded benchmark loading into one DataFrame."""

import json
from pathlib import Path

import pytest

from textrec.evaluate.results import (
    FORMAT,
    Result,
    ResultsFile,
    choose_on_validation,
    compare,
    environment,
    load_benchmarks,
    ranks_key,
    summarise,
)
from textrec.evaluate.tables import comparison_table, header, rows_table, summary_table

ROOT = Path(__file__).resolve().parents[1]


def _row(method, seed, test, valid, slice_="masked", **kw):
    return Result("toy", "E1", method, {"ndcg@10": test, "valid_ndcg@10": valid}, seed=seed, slice=slice_, **kw)


def test_a_file_round_trips_and_merges_by_key(tmp_path):
    path = tmp_path / "toy.json"
    file = ResultsFile(rows=[_row("a", 0, 0.1, 0.2), _row("b", 0, 0.3, 0.1)], commands=["first"])
    file.ranks[ranks_key("a", 0, "masked")] = [0, 5, 20]
    file.save(path, markdown="table\n")
    again = ResultsFile.load(path)
    assert again.rows == file.rows and again.ranks == file.ranks and again.commands == ["first"]
    assert (tmp_path / "toy.md").read_text() == "table\n" and json.loads(path.read_text())["format"] == FORMAT
    again.merge([_row("a", 0, 0.15, 0.25), _row("a", 1, 0.12, 0.2)])  # replaces a/0, adds a/1, keeps b/0
    assert sorted((r.method, r.seed, r.metrics["ndcg@10"]) for r in again.rows) == [
        ("a", 0, 0.15),
        ("a", 1, 0.12),
        ("b", 0, 0.3),
    ]
    again.add_command("second")
    again.add_command("first")
    assert again.commands == ["second", "first"]


def test_a_bad_row_names_the_file_and_the_row(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"format": FORMAT, "rows": [{"dataset": "d", "protocol": "E1", "method": "m"}]}))
    with pytest.raises(ValueError, match=r"bad.json row 0: missing fields \['metrics'\]"):
        ResultsFile.load(path)
    path.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="not a textrec-results/1 file"):
        ResultsFile.load(path)
    assert ResultsFile.load(tmp_path / "none.json").rows == []  # no file yet: an empty table


def test_summaries_and_the_choice_read_validation_only():
    rows = [_row("high_test", s, 0.30 + s / 100, 0.10) for s in range(3)]
    rows += [_row("high_valid", s, 0.20, 0.15 + s / 100) for s in range(3)]
    rows += [_row("one_seed", 0, 0.5, 0.9)]
    summaries = {s.method: s for s in summarise(rows)}
    assert summaries["high_test"].mean["ndcg@10"] == pytest.approx(0.31)
    assert summaries["high_test"].sd["ndcg@10"] == pytest.approx(0.01)
    assert summaries["one_seed"].sd["ndcg@10"] is None
    # the most-seeded candidates compete; validation decides, not test
    assert choose_on_validation(list(summaries.values()), summaries, "masked") == "high_valid"
    assert choose_on_validation(list(summaries.values()), ["nothing"], "masked") is None


def test_compare_pairs_the_seeds_both_methods_have():
    file = ResultsFile()
    for seed in (0, 1):
        file.ranks[ranks_key("good", seed, "masked")] = [0] * 50 + [3] * 50
        file.ranks[ranks_key("bad", seed, "masked")] = [30] * 80 + [0] * 20
    file.ranks[ranks_key("good", 2, "masked")] = [0] * 100  # no partner seed: left out
    (c,) = compare(file, "good vs bad", "toy", "good", "bad", ["masked", "unmasked"])
    assert c.seeds == [0, 1] and c.events == 100 and c.difference_low > 0 and c.ratio_low > 1
    file.comparisons = [c]
    file.set_comparisons([])
    assert file.comparisons[0].carried  # kept, marked: it could not be recomputed
    assert "carried" in comparison_table(file.comparisons)


def test_tables_show_the_figures_and_the_provenance():
    env = environment()
    assert env["textrec_version"] and env["threads"] >= 1 and "CPUs" in env["machine"]
    rows = [_row("a", s, 0.1 + s / 10, 0.2, label="model A", **env) for s in range(2)]
    text = summary_table(summarise(rows))
    assert "| model A | masked | 0.1500 | 0.0707 | 2 |" in text
    assert "0.2000" in text  # validation
    columns = [("method", "method"), ("seed", "seed"), ("NDCG", "metric.ndcg@10")]
    assert "| a | 0 | 0.1000 |" in rows_table(rows, columns)
    file = ResultsFile(rows=rows, commands=["python x.py"])
    assert env["machine"] in header("Toy", file) and "`python x.py`" in header("Toy", file)


def test_every_recorded_benchmark_loads_into_one_frame():
    frame = load_benchmarks(ROOT / "docs" / "benchmarks")
    files = {p.stem for p in (ROOT / "docs" / "benchmarks").glob("*.json") if not p.name.endswith(".ranks.json")}
    assert set(frame["file"]) == files
    assert {"dataset", "protocol", "method", "seed", "slice", "metric.ndcg@10", "git_commit"} <= set(frame.columns)
