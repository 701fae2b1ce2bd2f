"""scripts/benchmark_movielens.py merges into an earlier results file instead of replacing it: rows whose run folders
are gone stay, per-event ranks are stored beside the table, a later session's comparison can pair with them, an
interval that cannot be recomputed is carried, and rows measured under another definition of a run are refused;
scripts/select_on_validation.py ranks a grid's variants by validation."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from textrec.evaluate.results import Comparison, Result, ResultsFile

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str, root: Path, monkeypatch):
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ROOT", root)
    return module


@pytest.fixture
def bench(tmp_path, monkeypatch):
    return load_script("benchmark_movielens", tmp_path, monkeypatch)


def fake_run(folder: Path, ranks_true: list[int], ranks_false: list[int], valid: float, seed: int = 42) -> None:
    """A finished recipes/train.py run folder: metrics.json and ranks.json as the recipe writes them."""

    def result(ranks):
        ndcg = sum(1 / math.log2(r + 2) for r in ranks if r < 10) / len(ranks)
        return {k: ndcg for k in ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20", "mrr@20")} | {
            "n_events": len(ranks)
        }

    summary = {
        "results": {
            "test_mask=True": result(ranks_true),
            "test_mask=False": result(ranks_false),
            "popularity_mask=True": result([50] * len(ranks_true)),
            "popularity_mask=False": result([60] * len(ranks_true)),
        },
        "best_valid_ndcg@10": valid,
        "epochs": 3,
        "stopped": "early",
        "train_seconds": 10.0,
        "epoch_seconds": 3.3,
        "examples_per_second": 100.0,
        "trainable_params": 1000,
        "curve": [{"epoch": 1, "valid_ndcg@10": valid / 2}, {"epoch": 2, "valid_ndcg@10": valid}],
        "config": {"data": {"path": "data/ml-100k"}, "training": {"max_train_minutes": 1, "seed": seed}},
    }
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(summary))
    ranks = {"events": list(range(len(ranks_true))), "test_mask=True": ranks_true, "test_mask=False": ranks_false}
    (folder / "ranks.json").write_text(json.dumps(ranks))


def tabulate(bench, monkeypatch, *args) -> ResultsFile:
    argv = ["benchmark_movielens.py", "--dataset", "ml-100k", "--out", "out", "--reuse-only", "--table", "t", *args]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    return ResultsFile.load(bench.ROOT / "docs/benchmarks/t.json")


def test_later_runs_merge_with_rows_and_ranks_of_runs_no_longer_on_disk(bench, monkeypatch, tmp_path):
    events = 40
    frozen = [i % 30 for i in range(events)]
    lora = [max(0, r - 2) for r in frozen]  # LoRA ranks every target 2 places higher
    fake_run(tmp_path / "out/text_frozen_seed3", frozen, frozen, valid=0.20)
    first = tabulate(bench, monkeypatch, "--seeds", "3")
    assert {(r.method, r.seed) for r in first.rows} == {("popularity", None), ("text_frozen", 3)}
    row = next(r for r in first.rows if r.method == "text_frozen" and r.slice == "masked")
    assert row.metrics["valid_ndcg@10"] == 0.20 and row.extra["kind"] == "text_frozen" and row.extra["best_epoch"] == 2
    assert row.overrides == bench.RUNS["ml-100k"]["text_frozen"][2] and row.config == "ml100k_minilm_frozen.yaml"

    # a later session: the frozen run folder is gone (outputs/ is not committed), a LoRA run is new
    (tmp_path / "out/text_frozen_seed3/metrics.json").unlink()
    (tmp_path / "out/text_frozen_seed3/ranks.json").unlink()
    fake_run(tmp_path / "out/text_lora_seed3", lora, lora, valid=0.21)
    second = tabulate(bench, monkeypatch, "--seeds", "3", "--only", "text_lora")

    assert {("text_frozen", 3, "masked"), ("text_frozen", 3, "unmasked"), ("text_lora", 3, "masked")} <= {
        (r.method, r.seed, r.slice) for r in second.rows
    }
    assert len(second.commands) == 2
    again = tabulate(bench, monkeypatch, "--seeds", "3", "--only", "text_lora")  # the same merge, run twice
    assert again.commands == second.commands
    paired = [c for c in second.comparisons if c.name == "LoRA vs frozen" and c.slice == "masked"]
    assert len(paired) == 1 and not paired[0].carried
    assert paired[0].difference_low > 0  # LoRA's ranks are better on every event that was not already first
    # a named pair (--compare) is bootstrapped from the stored ranks too, the other way round here
    named = tabulate(bench, monkeypatch, "--seeds", "3", "--compare", "text_frozen", "text_lora")
    pair = [c for c in named.comparisons if c.name == "text_frozen vs text_lora" and c.slice == "masked"]
    assert len(pair) == 1 and pair[0].difference_high < 0
    stored = json.loads((tmp_path / "docs/benchmarks/t.ranks.json").read_text())
    assert stored["text_frozen/3/masked"] == frozen
    table = (tmp_path / "docs/benchmarks/t.md").read_text()
    assert "| MiniLM frozen + ids, sequence user | masked |" in table and "text_frozen vs text_lora" in table


def test_a_comparison_that_cannot_be_recomputed_is_carried(bench, monkeypatch, tmp_path):
    old = ResultsFile(
        rows=[
            Result("ml-100k", "E1", "id_only", {"ndcg@10": 0.1, "valid_ndcg@10": 0.1}, seed=0, slice=slice_)
            for slice_ in ("masked", "unmasked")
        ],
        comparisons=[
            Comparison(
                "best text vs ID-only", "ml-100k", "x", "id_only", "masked", [0], 0.01, 0, 0.02, 1.1, 1, 1.2, 40
            )
        ],
        commands=["python scripts/benchmark_movielens.py --seeds 0"],
    )
    for r in old.rows:
        r.overrides, r.extra["kind"] = bench.RUNS["ml-100k"]["id_only"][2], "id"
    old.save(tmp_path / "docs/benchmarks/t.json")
    fake_run(tmp_path / "out/text_frozen_seed0", [1, 2, 3], [4, 5, 6], valid=0.3)
    file = tabulate(bench, monkeypatch, "--seeds", "0")
    assert {("id_only", 0), ("text_frozen", 0)} <= {(r.method, r.seed) for r in file.rows}
    assert [c.a for c in file.comparisons if c.carried] == ["x"]
    assert "carried" in (tmp_path / "docs/benchmarks/t.md").read_text()


def test_rows_measured_under_another_definition_of_the_run_are_refused(bench, monkeypatch, tmp_path):
    row = Result("ml-100k", "E1", "text_frozen", {"ndcg@10": 0.1}, overrides=["x=1"], seed=0)
    ResultsFile(rows=[row]).save(tmp_path / "docs/benchmarks/t.json")
    with pytest.raises(SystemExit, match="text_frozen"):
        tabulate(bench, monkeypatch, "--seeds", "0")
    row.extra["overrides_recorded"] = False  # a converted row that never recorded its overrides is not refused
    ResultsFile(rows=[row]).save(tmp_path / "docs/benchmarks/t.json")
    fake_run(tmp_path / "out/id_only_seed0", [1, 2, 3], [4, 5, 6], valid=0.3)
    assert ("id_only", 0) in {(r.method, r.seed) for r in tabulate(bench, monkeypatch, "--seeds", "0").rows}


def test_a_selection_grid_is_ranked_by_validation_not_test(tmp_path, monkeypatch):
    select = load_script("select_on_validation", tmp_path, monkeypatch)
    grid = tmp_path / "outputs/selection/temperature_ml100k"
    fake_run(grid / "t0.05", [0] * 10, [0] * 10, valid=0.10)  # best on test
    fake_run(grid / "t0.1", [5] * 10, [5] * 10, valid=0.15)  # best on validation
    fake_run(grid / "idonly_t0.1", [9] * 10, [9] * 10, valid=0.12)
    argv = ["select_on_validation.py", "--grid", "temperature_ml100k", "--only", "none", "--minutes", "0"]
    monkeypatch.setattr(sys, "argv", argv)
    select.main()
    file = ResultsFile.load(tmp_path / "docs/benchmarks/selection_temperature_ml100k.json")
    assert {(r.method, r.slice, r.seed, r.dataset) for r in file.rows} == {
        (m, "masked", 42, "ml-100k") for m in ("t0.05", "t0.1", "idonly_t0.1")
    }
    assert select.winners(file) == {"ml100k_minilm_frozen.yaml": "t0.1", "ml100k_idonly.yaml": "idonly_t0.1"}
    table = (tmp_path / "docs/benchmarks/selection_temperature_ml100k.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| t0.") or line.startswith("| idonly")]
    assert [line.split(" | ")[0] for line in lines] == ["| t0.1", "| idonly_t0.1", "| t0.05"]  # by validation


E1_TABLES = ("ml100k", "ml100k_fresh_seeds", "ml100k_logq_inclusion", "ml100k_pos_probe", "ml1m")
GRIDS = ("lora_ml100k", "loss_ml100k", "refresh_ml100k", "temperature_ml100k")


@pytest.mark.parametrize("name", E1_TABLES + tuple(f"selection_{g}" for g in GRIDS))
def test_each_recorded_table_is_the_markdown_generated_from_its_results_file(name, tmp_path, monkeypatch):
    folder = SCRIPTS.parent / "docs" / "benchmarks"
    file = ResultsFile.load(folder / f"{name}.json")
    if name.startswith("selection_"):
        generated = load_script("select_on_validation", tmp_path, monkeypatch).markdown(file, file.notes["grid"])
    else:
        generated = load_script("benchmark_movielens", tmp_path, monkeypatch).markdown(file, file.rows[0].dataset)
    assert (folder / f"{name}.md").read_text() == generated
