"""The E1-cold, E3 and E4 benchmark scripts on top of the results module: rows of runs whose folders are gone stay,
per-event ranks stored beside a table let a later session recompute its intervals (carried when they are gone too),
the choice is made on validation, and every recorded table is its JSON rendered by its script."""

import importlib.util
import json
import math
import shutil
import sys
from pathlib import Path

import pytest

from textrec.evaluate.results import ResultsFile, ranks_key

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "docs" / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report(ranks):
    kept = [r for r in ranks if r < 10]
    ndcg = sum(1 / math.log2(r + 2) for r in kept) / len(ranks)
    return {"ndcg@10": ndcg, "recall@10": len(kept) / len(ranks), "mrr@10": ndcg / 2, "n_events": len(ranks)}


def cold_run(folder: Path, shift: int, valid: dict) -> None:
    """A finished recipes/train.py E1-cold run: metrics.json and ranks.json as the recipe writes them; `valid` is
    the validation NDCG@10 of its warm and cold slices."""
    ranks = [(i * 7 + shift) % 40 for i in range(30)]
    slices = ["cold" if i % 5 == 0 else "warm" for i in range(30)]
    test = {"all": report(ranks)} | {s: report([r for r, p in zip(ranks, slices) if p == s]) for s in ("warm", "cold")}
    checked = {s: {**test[s], "ndcg@10": valid.get(s, test[s]["ndcg@10"])} for s in test}
    refs = {"popularity": {s: {**m, "ndcg@10": m["ndcg@10"] / 3} for s, m in test.items()}}
    training = {"cold_item_fraction": 0.1, "cold_item_seed": 0, "epochs": 5, "patience": 2, "max_train_minutes": 0}
    metrics = {"epochs": 4, "optimizer_steps": 40, "train_seconds": 9.0, "trainable_params": 99, "stopped": "early"}
    metrics |= {"cold_items": [1, 2, 3], "config": {"training": training}}
    metrics["results"] = {"cold_start": {"model": test, **refs}, "cold_start_valid": {"model": checked, **refs}}
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "ranks.json").write_text(json.dumps({"test_mask=True": ranks, "slice": slices}))


@pytest.fixture
def cold(tmp_path, monkeypatch):
    module = load("benchmark_cold")
    monkeypatch.setattr(module, "ROOT", tmp_path)
    return module


def tabulate(cold, monkeypatch) -> ResultsFile:
    argv = ["benchmark_cold.py", "--dataset", "ml-100k", "--seeds", "0", "1", "--reuse-only", "--jobs", "1"]
    monkeypatch.setattr(sys, "argv", argv + ["--out", "out"])
    cold.main()
    path = cold.ROOT / "docs/benchmarks/cold_ml100k.json"
    file = ResultsFile.load(path)
    assert path.with_suffix(".md").read_text() == cold.markdown(file)  # the table is its JSON rendered
    return file


def test_cold_rows_stay_when_their_runs_are_gone_and_the_intervals_are_recomputed_or_carried(cold, monkeypatch):
    out = cold.ROOT / "out"
    cold_run(out / "text_ids_seed0", 0, {"warm": 0.20, "cold": 0.01})
    cold_run(out / "text_ids_seed1", 1, {"warm": 0.21, "cold": 0.01})
    cold_run(out / "text_ids_iddrop50_bias_content5_seed0", 3, {"warm": 0.197, "cold": 0.05})  # within 3%
    cold_run(out / "text_ids_iddrop50_bias_content5_seed1", 4, {"warm": 0.19, "cold": 0.04})
    cold_run(out / "text_only_seed0", 5, {"warm": 0.15, "cold": 0.20})  # best cold, warm too low
    cold_run(out / "id_only_seed0", 6, {"warm": 0.19, "cold": 0.0})
    first = tabulate(cold, monkeypatch)
    assert first.notes["chosen"] == "text_ids_iddrop50_bias_content5"  # validation decides, not test
    assert [r["eligible"] for r in first.notes["selection"]] == [True, True, False]
    assert {(r.method, r.seed) for r in first.rows} >= {("popularity", None), ("text_ids", 1), ("id_only", 0)}
    assert first.ranks[ranks_key("text_ids", 0, "cold")] == [(i * 7) % 40 for i in range(0, 30, 5)]
    paired = {(c.name, c.slice): c for c in first.comparisons}
    chosen = paired["text_ids_iddrop50_bias_content5 vs text_ids", "warm"]
    assert chosen.seeds == [0, 1] and not chosen.carried and chosen.events == 24
    assert ("text_ids vs id_only", "warm") in paired and not any(c.carried for c in first.comparisons)

    shutil.rmtree(out)  # a later session: outputs/ is not committed
    again = tabulate(cold, monkeypatch)
    assert again.rows == first.rows and again.notes == first.notes and again.comparisons == first.comparisons
    assert len(again.commands) == 1  # the same tabulation, listed once

    (cold.ROOT / "docs/benchmarks/cold_ml100k.ranks.json").unlink()  # ranks gone too: the intervals are carried
    carried = tabulate(cold, monkeypatch)
    assert all(c.carried for c in carried.comparisons)
    assert [{**vars(c), "carried": False} for c in carried.comparisons] == [vars(c) for c in first.comparisons]
    assert "carried: ranks not stored" in (cold.ROOT / "docs/benchmarks/cold_ml100k.md").read_text()


def test_transfer_intervals_pair_each_side_at_its_own_fraction():
    transfer = load("benchmark_transfer")
    file = ResultsFile()
    for seed in (0, 1):
        file.ranks[ranks_key("adapted", seed, "0.2-all")] = [0] * 30 + [2] * 30
        file.ranks[ranks_key("id_only", seed, "1.0-all")] = [20] * 50 + [0] * 10
    (c,) = transfer.comparisons(file, "toy")
    assert (c.name, c.a, c.b, c.slice, c.seeds) == (
        "adapted@0.2 vs id_only@1.0",
        "adapted@0.2",
        "id_only@1.0",
        "all",
        [0, 1],
    )
    assert c.difference_low > 0 and c.events == 60


def test_fgsm_rows_carry_the_relative_drop_and_the_targets_read_the_summaries():
    fgsm = load("benchmark_fgsm")
    setting = {"dataset": "toy", "split": "test", "train_norm": "sign", "train_on": "outputs", "on": "outputs"}
    rows = []
    for seed in (0, 1):
        for method, weight, clean, attacked in (("normal", 0.0, 0.10, 0.02), ("adversarial", 1.0, 0.10, 0.06)):
            fixed = setting | {"method": method, "lambda": weight, "train_eps": 0.1 if weight else 0.0, "seed": seed}
            rows += [fixed | {"attack": "none", "eps": 0.0, "ndcg@10": clean}]
            rows += [fixed | {"attack": "sign", "eps": 0.1, "ndcg@10": attacked}]
    selection = [
        {"seed": 0, "method": "normal", "lambda": 0.0, "train_eps": 0.0, "valid_clean": 0.2, "valid_attacked": 0.1}
    ]
    costs = [{"seed": 0, "method": "normal", "seconds": 5.0, "steps": 10, "examples": 100, "epochs": 2.0}]
    config = {"adversarial": {"select_eps": 0.1}}
    report = {"rows": rows, "selection": selection, "costs": costs, "bootstrap": [], "popularity_ndcg@10": 0.01}
    report |= {"protocol": "E4", "chosen": {"lambda": 1.0, "train_eps": 0.1, "rule": "r"}, "config": config}
    file = fgsm.results_file(report, {})
    attacked = next(r for r in file.rows if (r.method, r.seed, r.slice) == ("adversarial", 1, "sign-outputs-0.1"))
    assert attacked.metrics["relative_drop"] == pytest.approx(0.4) and attacked.extra["lambda"] == 1.0
    (target,) = fgsm.checks(file)
    assert target["seeds"] == 2 and target["drop_ratio"] == pytest.approx(0.5) and target["robustness_met"]
    assert next(r for r in file.rows if r.protocol == "E4 selection").seconds == 5.0


RECORDED = [
    ("benchmark_cold", "cold_ml100k"),
    ("benchmark_cold", "cold_ml1m"),
    ("diagnose_cold", "cold_diagnosis_ml100k"),
    ("benchmark_fgsm", "fgsm_ml100k"),
    ("benchmark_fgsm", "fgsm_ml1m"),
    ("benchmark_transfer", "transfer_ml100k"),
    ("benchmark_transfer", "transfer_ml1m"),
]


@pytest.mark.parametrize("script, name", RECORDED)
def test_every_recorded_table_is_its_json_rendered(script, name):
    module, file = load(script), ResultsFile.load(BENCHMARKS / f"{name}.json")
    assert (BENCHMARKS / f"{name}.md").read_text() == module.markdown(file)
    if script == "benchmark_cold":  # the recorded choice and targets are what the rule gives on the rows
        assert module.choose(file, file.notes["first_seed"]) == (file.notes["chosen"], file.notes["selection"])
        assert module.targets(module.ordered(file), file.notes["chosen"]) == pytest.approx(file.notes["targets"])
