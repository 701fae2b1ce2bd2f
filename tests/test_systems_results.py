"""The systems benchmarks (scale, serving, throughput, sequence_step, load_test) record `textrec-results/1` files:
each table is generated from its JSON by the script's own `markdown`, the conversion from the old layouts kept
every figure, a run merges into the file it finds, and the scale fit and table read the rows they are given."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from textrec.evaluate.results import Result, ResultsFile

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "docs" / "benchmarks"


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONVERTER = load(ROOT / "tests" / "scripts" / "convert_results_v1_systems.py", "convert_results_v1_systems_under_test")
CONVERTED = "7e384e84189cc94c63f1a623cbc8ef239591111b"  # the commit that wrote the converted files
PROTOCOLS = {"scale": "scale", "serving": "serving", "throughput": "throughput", "sequence_step": "sequence_step"}
PROTOCOLS["load_test"] = "load"


def script(name: str):
    return load(ROOT / "scripts" / f"{CONVERTER.SCRIPTS[name]}.py", f"{name}_script_under_test")


@pytest.mark.parametrize("name", sorted(CONVERTER.SCRIPTS))
def test_each_table_is_generated_from_its_results_file(name):
    file = ResultsFile.load(BENCHMARKS / f"{name}.json")
    assert file.rows and file.commands and {r.protocol for r in file.rows} == {PROTOCOLS[name]}
    assert all(r.textrec_version and r.machine and r.date for r in file.rows)
    assert (BENCHMARKS / f"{name}.md").read_text() == script(name).markdown(file)


@pytest.mark.parametrize("name", sorted(CONVERTER.SCRIPTS))
def test_the_conversion_kept_every_figure_of_the_old_file(name, tmp_path):
    known = subprocess.run(["git", "cat-file", "-e", f"{CONVERTER.OLD}^{{commit}}"], cwd=ROOT, capture_output=True)
    if known.returncode:
        pytest.skip(f"commit {CONVERTER.OLD[:10]} (the old files) is not in this checkout")
    # the file as the conversion wrote it (a later run may replace its rows with new measurements)
    converted = subprocess.run(
        ["git", "show", f"{CONVERTED}:docs/benchmarks/{name}.json"], cwd=ROOT, capture_output=True, text=True
    )
    if converted.returncode:
        pytest.skip(f"commit {CONVERTED[:10]} (the converted files) is not in this checkout")
    path = tmp_path / f"{name}.json"
    path.write_text(converted.stdout)
    count, missing = CONVERTER.missing_figures(name, CONVERTER.OLD, path)
    assert count > 0 and missing == []


def test_a_run_merges_into_the_file_it_finds(tmp_path, monkeypatch):
    bench = script("sequence_step")
    out = tmp_path / "sequence_step"
    threads = torch.get_num_threads()  # the script sets torch's threads: keep this process's
    argv = [
        str(ROOT / "scripts" / "benchmark_sequence_step.py"),
        "--steps",
        "1",
        "--threads",
        str(threads),
        "--out",
        str(out),
    ]
    monkeypatch.setattr(sys, "argv", [*argv, "--shapes", "4x6,2x6"])
    bench.main()
    first = ResultsFile.load(out.with_suffix(".json"))
    monkeypatch.setattr(sys, "argv", [*argv, "--shapes", "4x6"])
    bench.main()
    again = ResultsFile.load(out.with_suffix(".json"))
    assert [r.slice for r in again.rows] == ["2x6", "4x6"]  # 4x6 replaced, 2x6 kept
    assert again.rows[0] == first.rows[1] and again.rows[1] != first.rows[0]
    assert len(again.commands) == 2 and all(
        c.split("python ", 1)[1].startswith("scripts/benchmark_sequence_step.py") for c in again.commands
    )
    row = again.rows[1]
    assert row.git_commit and "CPUs" in row.machine and row.threads == threads and row.steps == 1
    assert row.metrics["speedup"] == pytest.approx(row.metrics["unfused_s_per_step"] / row.metrics["fused_s_per_step"])
    assert out.with_suffix(".md").read_text() == bench.markdown(again)


def _size(rows: int, per_step: float, extrapolated: bool = True) -> Result:
    metrics = {f"{p}_s": rows * 1e-6 for p in ("read_validate", "arrays", "leave_one_out", "windows")}
    metrics |= {"load_split_s": 3 * rows * 1e-6, "data_path_s": 4 * rows * 1e-6, "file_mb": rows / 5e4}
    metrics |= {"peak_mb_windows": 500.0, "peak_mb_epoch": 900.0, "seconds_per_step": per_step}
    metrics |= {"examples_per_second": 64 / per_step, "epoch_seconds": per_step * rows / 1e4}
    extra = {"rows": rows, "users": rows // 165, "items": 100, "model": "ID-only", "extrapolated": extrapolated}
    extra |= {"steps_per_epoch": rows // 10_000, "loadavg": [0.5, 0.5, 0.5], "cpus": 2}
    return Result("synthetic", "scale", "data_path", metrics, slice=str(rows), steps=2, extra=extra, machine="m")


def test_scale_fits_every_synthetic_size_and_tables_them():
    bench = script("scale")
    file = ResultsFile(rows=[_size(2_000_000, 1.0), _size(1_000_000, 1.0, extrapolated=False)])
    assert bench.growth_rows(ResultsFile(rows=file.rows[:1]), {}) == []  # one size: no fit
    growth = {r.slice: r for r in bench.growth_rows(file, {"machine": "m"})}
    assert set(growth) == {*bench.FITTED, "steps_per_epoch", "epoch_seconds"}
    assert growth["data_path_s"].metrics["seconds_per_million_rows"] == pytest.approx(4.0)
    assert growth["epoch_seconds"].metrics["loglog_slope"] == pytest.approx(1.0)
    file.rows += list(growth.values())
    text = bench.markdown(file)
    assert "| 1,000,000 | 6,060 | 100 | 20 | 1.0 | 1.0 | 1.0 | 1.0 | 3.0 | 500 | 2 | 1.00 | 64 | 100 | 900 |" in text
    assert "| 2 of 200 |" in text and "| 200 (extrapolated) |" in text  # sizes in row order, not file order
    assert text.index("| 1,000,000 |") < text.index("| 2,000,000 |") and "| data_path | 0.00 | 4.00 | 1.00 |" in text
    assert "1-minute load average 0.5 to 0.5 after the sizes, on 2 CPUs." in text  # not shared: no warning


def test_throughput_rows_from_measured_seconds_have_the_recorded_shape():
    bench = script("throughput")
    file = ResultsFile.load(BENCHMARKS / "throughput.json")
    plain = [r for r in file.rows if r.method != "cached_lora_step"]  # cached rows: measured with --top-layers
    by = {r.method: r for r in plain}
    measured = {m: r.metrics["seconds_per_step"] for m, r in by.items()} | {
        "live_items": by["lora_step"].extra["live_items"], "cached": {}
    }  # fmt: skip
    rows = bench.result_rows(measured, by["lora_step"].extra["batch_windows"], by["lora_step"].steps, {})
    assert [(r.method, r.steps, r.extra) for r in rows] == [(r.method, r.steps, r.extra) for r in plain]
    assert all(r.metrics == pytest.approx(by[r.method].metrics, rel=1e-12) for r in rows)
