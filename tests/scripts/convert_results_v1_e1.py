"""One-off: convert the E1 benchmark tables and the selection grids of docs/benchmarks to `textrec-results/1` files.

    python tests/scripts/convert_results_v1_e1.py              # reads the old files from git HEAD
    python tests/scripts/convert_results_v1_e1.py --rev <commit>  # once HEAD holds the converted files

The old files (rows keyed by prose `model` labels and `run` names with `mask_history` true/false, a `summary` and
`comparisons`; the selection grids: `meta` and rows of variants) are read from git, so the conversion can be re-run.
Each old row becomes one `Result` per run, seed and slice (masked / unmasked); its ranks are re-keyed to
`method/seed/slice`. The script checks that the summaries recomputed by `summarise` equal the old summary rows
(means and sd to 1e-9) and that the comparisons whose ranks are stored are recomputed by `compare` to the same
figures (before writing), and that the file as written loads back equal, holds every numeric leaf of the old rows
and comparisons, and has every old row's field in its place in the new row (after writing; a failure names the file).
The markdown tables are generated from the new files by the benchmark scripts' own `markdown` functions.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import re
import subprocess
from pathlib import Path

import yaml

from textrec.evaluate.results import FORMAT, Comparison, Result, ResultsFile, compare, ranks_key, summarise

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "docs" / "benchmarks"
E1_TABLES = ("ml100k", "ml100k_fresh_seeds", "ml100k_logq_inclusion", "ml100k_pos_probe", "ml1m")
SELECTIONS = ("selection_lora_ml100k", "selection_loss_ml100k", "selection_refresh_ml100k")
SELECTIONS += ("selection_temperature_ml100k",)
TOLERANCE = 1e-9
CONVERTED = (
    "converted from the earlier table format by tests/scripts/convert_results_v1_e1.py: textrec 0.1.0, git commit "
    "not recorded then; `machine` / `threads` / `date` are the row's own measured_on / measured_date where it had "
    "them, else the table's last command's (the day of that tabulation, not necessarily of the run)"
)

# old E1 row key -> where it goes in the new row ("metric.x", "extra.x" or a field of Result)
E1_PLACES = {
    "dataset": "dataset",
    "run": "method",
    "model": "label",
    "seed": "seed",
    "n_events": "events",
    "epochs": "epochs",
    "train_seconds": "seconds",
    "trainable_params": "trainable_params",
    "overrides": "overrides",
    "measured_date": "date",
    "best_valid_ndcg@10": "metric.valid_ndcg@10",
    **{k: f"metric.{k}" for k in ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20", "mrr@20")},
    **{k: f"extra.{k}" for k in ("kind", "stopped", "epoch_seconds", "examples_per_second", "peak_memory_mb")},
    **{k: f"extra.{k}" for k in ("budget_minutes", "best_epoch", "encoder_warmup_epochs")},
}
SELECTION_PLACES = {
    "variant": "method",
    "config": "config",
    "overrides": "overrides",
    "valid_ndcg@10": "metric.valid_ndcg@10",
    "test_ndcg@10": "metric.ndcg@10",
    "epochs": "epochs",
    "train_seconds": "seconds",
    **{k: f"extra.{k}" for k in ("stopped", "best_epoch", "encoder_warmup_epochs")},
}


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_for_conversion", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def git_json(rev: str, path: str) -> dict | None:
    shown = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True)
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def machine_and_threads(text: str) -> tuple[str, int | None]:
    """'x86_64, 1 threads, CPU only' -> ('x86_64, CPU only', 1)."""
    found = re.fullmatch(r"(.*?), (\d+) threads(.*)", text)
    return (found[1] + found[3], int(found[2])) if found else (text, None)


def provenance(row: dict, meta: dict) -> dict:
    machine, threads = machine_and_threads(row.get("measured_on", meta["machine"]))
    date = row.get("measured_date", meta["date"])
    return {"textrec_version": "0.1.0", "git_commit": "", "machine": machine, "threads": threads, "date": date}


def placed(fields: dict, places: dict, where: str, **fixed) -> Result:
    """A Result from `fields` moved to their `places`; an old key without a place is an error, never dropped."""
    unknown = sorted(set(fields) - set(places))
    if unknown:
        raise SystemExit(f"{where}: no place for {unknown}")
    new: dict = {"protocol": "E1", "metrics": {}, "extra": {}, **fixed}
    for key, value in fields.items():
        kind, _, name = places[key].partition(".")
        if name:
            new["metrics" if kind == "metric" else "extra"][name] = value
        else:
            new[kind] = value
    return Result(**new)


def e1_row(row: dict, meta: dict, runs: dict, where: str) -> Result:
    fields = {k: v for k, v in row.items() if k not in ("mask_history", "measured_on", "measured_date")}
    slice_ = "masked" if row["mask_history"] else "unmasked"
    config = runs[row["run"]][1] if row["run"] in runs else ""
    result = placed(fields, E1_PLACES, where, slice=slice_, config=config, **provenance(row, meta))
    if "overrides" not in row and row["run"] != "popularity":
        result.extra["overrides_recorded"] = False  # the benchmark's refusal of redefined runs cannot check it
    return result


def selection_row(row: dict, meta: dict, where: str, rev: str) -> Result:
    if not row["config"].startswith("ml100k_"):
        raise SystemExit(f"{where}: not an ml-100k config: {row['config']}")
    config = subprocess.run(["git", "show", f"{rev}:recipes/configs/{row['config']}"], cwd=ROOT, capture_output=True)
    seed = (yaml.safe_load(config.stdout) or {}).get("training", {}).get("seed", 42)  # the recipe's default: 42
    fixed = {"dataset": "ml-100k", "label": row["variant"], "slice": "masked", "seed": seed}
    return placed(row, SELECTION_PLACES, where, **fixed, **provenance(row, meta))


def comparison(c: dict, dataset: str) -> Comparison:
    stats = {k: c[k] for k in ("mean_difference", "difference_low", "difference_high", "ratio", "ratio_low")}
    stats |= {k: c[k] for k in ("ratio_high", "events", "resamples", "seeds")}
    slice_ = "masked" if c["mask_history"] else "unmasked"
    return Comparison(c["comparison"], dataset, c["a"], c["b"], slice_, carried=c.get("carried", False), **stats)


# -- checks ------------------------------------------------------------------------------------------------------


def leaves(value) -> list:
    """Every number (not bool) inside a JSON value."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in leaves(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def check_leaves(old: dict, path: Path) -> int:
    """Every numeric leaf of the old rows and comparisons is found in the new file as written."""
    new = set(leaves(json.loads(path.read_text())))
    missing = [x for x in leaves(old["rows"]) + leaves(old.get("comparisons", [])) if x not in new]
    if missing:
        raise SystemExit(f"{path}: old figures not found in the new file: {missing[:10]}")
    return len(leaves(old["rows"]) + leaves(old.get("comparisons", [])))


def check_places(old_rows: list[dict], file: ResultsFile, places: dict, name: str) -> None:
    """Every old row's fields are where they belong in the new row (read back from the file), the old mask in its
    slice and the old machine string in machine and threads."""
    if len(old_rows) != len(file.rows):
        raise SystemExit(f"{name}: {len(old_rows)} rows became {len(file.rows)}")
    for i, (old, new) in enumerate(zip(old_rows, file.rows)):
        flat = {f.name: getattr(new, f.name) for f in dataclasses.fields(new)}
        flat |= {f"metric.{k}": v for k, v in new.metrics.items()} | {f"extra.{k}": v for k, v in new.extra.items()}
        moved = {places[k]: v for k, v in old.items() if k in places}
        if "mask_history" in old:
            moved["slice"] = "masked" if old["mask_history"] else "unmasked"
        if "measured_on" in old:
            moved["machine"], moved["threads"] = machine_and_threads(old["measured_on"])
        wrong = {k: (v, flat.get(k)) for k, v in moved.items() if flat.get(k) != v}
        if wrong:
            raise SystemExit(f"{name} row {i}: (old, new) differ: {wrong}")


def check_summaries(old: dict, file: ResultsFile, name: str) -> int:
    """The old summary rows equal the summaries recomputed from the new rows (means and sd to 1e-9)."""
    new = {(s.method, s.slice): s for s in summarise(file.rows)}
    wanted = {(s["run"], "masked" if s["mask_history"] else "unmasked") for s in old["summary"]}
    trained = {k for k in new if k[0] != "popularity"}
    if wanted != trained:
        raise SystemExit(f"{name}: summaries differ in their groups: {sorted(wanted ^ trained)}")
    for s in old["summary"]:
        key = (s["run"], "masked" if s["mask_history"] else "unmasked")
        got, rows = new[key], [r for r in file.rows if (r.method, r.slice) == key]
        pairs = [(s[f"{m}_mean"], got.mean[m]) for m in ("ndcg@10", "recall@10", "mrr@10", "valid_ndcg@10")]
        pairs += [(s["ndcg@10_sd"], got.sd["ndcg@10"]), (s["train_seconds_mean"], got.mean["seconds"])]
        pairs += [(s["epochs_mean"], got.mean["epochs"])]
        for want, have in pairs:
            if (
                (want is None) != (have is None)
                or want is not None
                and not math.isclose(want, have, abs_tol=TOLERANCE)
            ):
                raise SystemExit(f"{name} {key}: summary {want} recomputed as {have}")
        same = [
            (sorted(s["seeds"], key=str), got.seeds),
            ((s["model"], s["dataset"], s["kind"]), (got.label, got.dataset, rows[0].extra["kind"])),
            (
                s.get("best_epochs", [r.extra.get("best_epoch") for r in rows]),
                [r.extra.get("best_epoch") for r in rows],
            ),
        ]
        joins = [r.extra.get("encoder_warmup_epochs") for r in rows]
        same.append((s.get("encoder_joins", joins), joins))
        for want, have in same:
            if want != have:
                raise SystemExit(f"{name} {key}: summary {want} recomputed as {have}")
    return len(old["summary"])


def check_comparisons(file: ResultsFile, name: str) -> list[str]:
    """The comparisons whose ranks are stored are recomputed by `compare` to the same figures."""
    done = []
    for c in file.comparisons:
        if c.carried or not all(ranks_key(m, s, c.slice) in file.ranks for m in (c.a, c.b) for s in c.seeds):
            continue
        (again,) = compare(file, c.name, c.dataset, c.a, c.b, [c.slice])
        for field in ("mean_difference", "difference_low", "difference_high", "ratio", "ratio_low", "ratio_high"):
            if not math.isclose(getattr(again, field), getattr(c, field), abs_tol=TOLERANCE):
                raise SystemExit(f"{name} {c.name} {c.slice}: {field} {getattr(c, field)} recomputed as {again}")
        if (again.seeds, again.events) != (c.seeds, c.events):
            raise SystemExit(f"{name} {c.name} {c.slice}: seeds/events {c.seeds}/{c.events} recomputed as {again}")
        done.append(f"{c.name} ({c.slice})")
    return done


# -- conversion --------------------------------------------------------------------------------------------------


def convert_e1(name: str, old: dict, ranks: dict | None, bench) -> ResultsFile:
    meta = old["meta"]
    runs = bench.RUNS[meta["dataset"]]
    rows = [e1_row(r, meta, runs, f"{name} row {i}") for i, r in enumerate(old["rows"])]
    notes = {"torch": meta["torch"], "budget_scale": meta["budget_scale"], "converted": CONVERTED}
    if any(r.extra.get("overrides_recorded") is False for r in rows):
        notes["overrides"] = "rows marked overrides_recorded: false did not record them (config: their run's in RUNS)"
    file = ResultsFile(rows=rows, commands=meta.get("commands") or [meta["command"]], notes=notes)
    file.comparisons = [comparison(c, meta["dataset"]) for c in old.get("comparisons", [])]
    for key, by_mask in (ranks or {}).items():
        run, _, seed = key.rpartition("/")
        for slice_, mask in (("masked", "test_mask=True"), ("unmasked", "test_mask=False")):
            file.ranks[ranks_key(run, int(seed), slice_)] = by_mask[mask]
    return file


def convert_selection(name: str, old: dict, rev: str) -> ResultsFile:
    meta = old["meta"]
    rows = [selection_row(r, meta, f"{name} row {i}", rev) for i, r in enumerate(old["rows"])]
    notes = {k: meta[k] for k in ("grid", "minutes", "epochs", "patience")} | {"converted": CONVERTED}
    notes["seed"] = "not passed: the configs' training.seed (the recipe's default, 42)"
    return ResultsFile(rows=rows, commands=[meta["command"]], notes=notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", default="HEAD", help="the git revision that holds the old files")
    args = parser.parse_args()
    bench, select = script("benchmark_movielens"), script("select_on_validation")
    for name in E1_TABLES + SELECTIONS:
        old = git_json(args.rev, f"docs/benchmarks/{name}.json")
        if old is None or old.get("format") == FORMAT:
            raise SystemExit(f"{args.rev}:docs/benchmarks/{name}.json is not an old table; pass --rev <older commit>")
        path = BENCHMARKS / f"{name}.json"
        if name in E1_TABLES:
            file = convert_e1(name, old, git_json(args.rev, f"docs/benchmarks/{name}.ranks.json"), bench)
            old_ranks = git_json(args.rev, f"docs/benchmarks/{name}.ranks.json") or {}
            if len(file.ranks) != 2 * len(old_ranks):
                raise SystemExit(f"{name}: {len(old_ranks)} runs' ranks became {len(file.ranks)} lists")
            summaries = check_summaries(old, file, name)
            recomputed = check_comparisons(file, name)
            file.save(path, bench.markdown(file, old["meta"]["dataset"]))
        else:
            file = convert_selection(name, old, args.rev)
            summaries, recomputed = 0, []
            file.save(path, select.markdown(file, old["meta"]["grid"]))
        if ResultsFile.load(path) != file:
            raise SystemExit(f"{path}: does not load back as written")
        check_places(old["rows"], ResultsFile.load(path), E1_PLACES if name in E1_TABLES else SELECTION_PLACES, name)
        figures = check_leaves(old, path)
        print(
            f"{name}: {len(file.rows)} rows, {len(file.comparisons)} comparisons, {len(file.ranks)} rank lists; "
            f"{figures} old figures found, {summaries} summaries equal, recomputed from ranks: {recomputed or 'none'}"
        )


if __name__ == "__main__":
    main()
