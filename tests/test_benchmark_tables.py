"""scripts/benchmark_movielens.py merges into an earlier table instead of replacing it: rows whose run folders are
gone stay, per-event ranks are stored beside the table, and a later session's comparison can pair with them."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_movielens.py"


@pytest.fixture
def bench(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("benchmark_movielens_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    return module


def fake_run(folder: Path, ranks_true: list[int], ranks_false: list[int], valid: float) -> None:
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
        "config": {"training": {"max_train_minutes": 1}},
    }
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(summary))
    ranks = {"events": list(range(len(ranks_true))), "test_mask=True": ranks_true, "test_mask=False": ranks_false}
    (folder / "ranks.json").write_text(json.dumps(ranks))


def tabulate(bench, monkeypatch, *args):
    argv = ["benchmark_movielens.py", "--dataset", "ml-100k", "--out", "out", "--reuse-only", "--table", "t", *args]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    return json.loads((bench.ROOT / "docs/benchmarks/t.json").read_text())


def test_later_runs_merge_with_rows_and_ranks_of_runs_no_longer_on_disk(bench, monkeypatch, tmp_path):
    events = 40
    frozen = [i % 30 for i in range(events)]
    lora = [max(0, r - 2) for r in frozen]  # LoRA ranks every target 2 places higher
    fake_run(tmp_path / "out/text_frozen_seed3", frozen, frozen, valid=0.20)
    first = tabulate(bench, monkeypatch, "--seeds", "3")
    assert {(r["run"], r["seed"]) for r in first["rows"]} == {("popularity", None), ("text_frozen", 3)}

    # a later session: the frozen run folder is gone (outputs/ is not committed), a LoRA run is new
    (tmp_path / "out/text_frozen_seed3/metrics.json").unlink()
    (tmp_path / "out/text_frozen_seed3/ranks.json").unlink()
    fake_run(tmp_path / "out/text_lora_seed3", lora, lora, valid=0.21)
    second = tabulate(bench, monkeypatch, "--seeds", "3", "--only", "text_lora")

    runs = {(r["run"], r["seed"], r["mask_history"]) for r in second["rows"]}
    assert {("text_frozen", 3, True), ("text_frozen", 3, False), ("text_lora", 3, True)} <= runs
    assert len(second["meta"]["commands"]) == 2
    again = tabulate(bench, monkeypatch, "--seeds", "3", "--only", "text_lora")  # the same merge, run twice
    assert again["meta"]["commands"] == second["meta"]["commands"]
    paired = [c for c in second["comparisons"] if c["comparison"] == "LoRA vs frozen" and c["mask_history"]]
    assert len(paired) == 1 and not paired[0].get("carried")
    assert paired[0]["difference_low"] > 0  # LoRA's ranks are better on every event that was not already first
    stored = json.loads((tmp_path / "docs/benchmarks/t.ranks.json").read_text())
    # a named pair (--compare) is bootstrapped from the stored ranks too, the other way round here
    named = tabulate(bench, monkeypatch, "--seeds", "3", "--compare", "text_frozen", "text_lora")
    pair = [c for c in named["comparisons"] if c["comparison"] == "text_frozen vs text_lora" and c["mask_history"]]
    assert len(pair) == 1 and pair[0]["difference_high"] < 0
    assert stored["text_frozen/3"]["test_mask=True"] == frozen


def test_a_comparison_that_cannot_be_recomputed_is_carried(bench, monkeypatch, tmp_path):
    old = {
        "meta": {"command": "python scripts/benchmark_movielens.py --seeds 0"},
        "rows": [
            {"run": "id_only", "seed": 0, "kind": "id", "mask_history": m, "model": "ids", "dataset": "ml-100k"}
            | {"ndcg@10": 0.1, "recall@10": 0.2, "mrr@10": 0.05, "best_valid_ndcg@10": 0.1, "epochs": 1}
            | {"train_seconds": 1.0}
            for m in (True, False)
        ],
        "comparisons": [
            {"comparison": "best text vs ID-only", "a": "x", "b": "id_only", "mask_history": True, "seeds": [0]}
            | {"mean_difference": 0.01, "difference_low": 0.0, "difference_high": 0.02}
            | {"ratio": 1.1, "ratio_low": 1.0, "ratio_high": 1.2}
        ],
    }
    (tmp_path / "docs/benchmarks").mkdir(parents=True)
    (tmp_path / "docs/benchmarks/t.json").write_text(json.dumps(old))
    fake_run(tmp_path / "out/text_frozen_seed0", [1, 2, 3], [4, 5, 6], valid=0.3)
    doc = tabulate(bench, monkeypatch, "--seeds", "0")
    assert {("id_only", 0), ("text_frozen", 0)} <= {(r["run"], r["seed"]) for r in doc["rows"]}
    carried = [c for c in doc["comparisons"] if c.get("carried")]
    assert [c["a"] for c in carried] == ["x"]
    assert "carried" in (tmp_path / "docs/benchmarks/t.md").read_text()


COLD_SCRIPT = SCRIPT.parent / "benchmark_cold.py"


def cold_run(seed: int, shift: int) -> dict:
    """A finished E1-cold run as benchmark_cold keeps it: reports per slice, cost, per-event ranks and slices."""
    ranks = [(i * 7 + shift) % 40 for i in range(30)]
    slices = ["cold" if i % 5 == 0 else "warm" for i in range(30)]

    def report(rs):
        kept = [r for r in rs if r < 10]
        ndcg = sum(1 / math.log2(r + 2) for r in kept) / len(rs)
        return {"ndcg@10": ndcg, "recall@10": len(kept) / len(rs), "mrr@10": ndcg / 2, "n_events": len(rs)}

    by_slice = {
        "all": report(ranks),
        "warm": report([r for r, s in zip(ranks, slices) if s == "warm"]),
        "cold": report([r for r, s in zip(ranks, slices) if s == "cold"]),
    }
    refs = {"popularity": {k: {**v, "ndcg@10": v["ndcg@10"] / 3} for k, v in by_slice.items()}}
    metrics = {"epochs": 4, "optimizer_steps": 40, "train_seconds": 9.0, "trainable_params": 99, "stopped": "early"}
    metrics |= {"cold_items": [1, 2, 3], "results": {}}
    metrics["results"]["cold_start"] = {"model": by_slice, **refs}
    metrics["results"]["cold_start_valid"] = {"model": by_slice, **refs}
    return {"metrics": metrics, "ranks": {"test_mask=True": ranks, "slice": slices}}


def test_cold_table_rebuilt_from_its_rows_keeps_every_figure_and_carries_the_intervals(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("benchmark_cold_under_test", COLD_SCRIPT)
    cold = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cold)
    monkeypatch.setattr(cold, "ROOT", tmp_path)
    (tmp_path / "docs/benchmarks").mkdir(parents=True)
    results = {("text_ids", 0): cold_run(0, 0), ("text_only", 0): cold_run(0, 3), ("id_only", 0): cold_run(0, 5)}
    meta = {"dataset": "ml-100k", "machine": "test", "date": "today", "command": "first"}
    first = cold.write("ml-100k", "ml100k", meta, results, 0)
    assert first["comparisons"] and not any(c.get("carried") for c in first["comparisons"])
    stored = cold.stored_runs(tmp_path / "docs/benchmarks/cold_ml100k.runs.json")
    assert stored[("text_only", 0)]["ranks"] == results[("text_only", 0)]["ranks"]

    rebuilt = cold.results_from_table(first)  # a table from before the runs file: no ranks
    again = cold.write("ml-100k", "ml100k", meta, rebuilt, 0, first["comparisons"])
    for key in ("summary", "selection", "chosen", "targets"):
        assert again[key] == first[key], key
    assert again["meta"]["cold_items"] == 3
    assert [{k: v for k, v in c.items() if k != "carried"} for c in again["comparisons"]] == first["comparisons"]
    assert all(c["carried"] for c in again["comparisons"])


def test_rows_measured_under_another_definition_of_the_run_are_refused(bench, monkeypatch, tmp_path):
    (tmp_path / "docs/benchmarks").mkdir(parents=True)
    row = {"run": "text_frozen", "seed": 0, "kind": "text_frozen", "mask_history": True, "overrides": ["x=1"]}
    (tmp_path / "docs/benchmarks/t.json").write_text(json.dumps({"meta": {"command": "c"}, "rows": [row]}))
    with pytest.raises(SystemExit, match="text_frozen"):
        tabulate(bench, monkeypatch, "--seeds", "0")
