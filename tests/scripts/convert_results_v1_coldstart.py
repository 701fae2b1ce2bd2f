"""One-off: convert the E1-cold, E2, E3 and E4 benchmark files of docs/benchmarks to `textrec-results/1` files.

    python tests/scripts/convert_results_v1_coldstart.py                # reads the old files from git HEAD
    python tests/scripts/convert_results_v1_coldstart.py --rev a6ac1e3  # once HEAD holds the converted files

Old files (read from git, so the conversion can be re-run) and what they become:
- cold_ml100k, cold_ml1m (+ cold_ml1m.runs.json, the store of finished runs): protocol E1-cold rows (method, seed,
  slice all / warm / cold; references without a seed); the runs' per-event ranks go to cold_ml1m.ranks.json (and the
  runs file is removed); selection, choice and targets to the notes (checked against benchmark_cold's own rule).
- cold_diagnosis_ml100k: protocol E1-cold diagnosis rows (diagnose_cold.rows_of).
- fgsm_ml100k, fgsm_ml1m: protocol E4 rows per attack (slice `<attack>-<place>-<eps>`), E4 selection rows (slice
  valid), popularity, the per-seed bootstrap intervals as comparisons (benchmark_fgsm.results_file).
- fgsm_sweep (no script writes it; scripts/fgsm_sweep.py was never committed): protocol E4 rows, one per model.
- transfer_ml100k, transfer_ml1m: protocol E3 rows (slice `<fraction>-<all|warm|cold>`; benchmark_transfer.result),
  the intervals as comparisons named `<method>@<fraction> vs <method>@<fraction>`, the issue's targets in the notes.
- incremental_ml100k (copied by hand from the recipe's report; no script writes it): protocol E2 rows per strategy,
  slice `mean` (the headline) and `period<t>` (the row R[t][*] of the matrix and the update's cost), the intervals
  against full_retrain as comparisons.
Checks, each failure naming the file: the summaries, selections and targets recomputed from the new rows equal the
old ones (to 1e-9), the file loads back as written, every numeric leaf of the old file (the summaries excepted: they
are recomputed) is found in the new file or its ranks, and the stored ranks equal the old ones. The markdown is
generated from the new files by the scripts' own `markdown` functions (E2 and the sweep: the functions below).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import statistics
import subprocess
from pathlib import Path

from textrec.evaluate.results import FORMAT, Comparison, Result, ResultsFile, ranks_key
from textrec.evaluate.tables import header, number, table

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "docs" / "benchmarks"
TOLERANCE = 1e-9
CONVERTED = (
    "converted from the earlier table format by tests/scripts/convert_results_v1_coldstart.py: textrec 0.1.0, git "
    "commit not recorded then; `machine` / `threads` are the old file's machine string, `date` its date (where it had "
    "none: the day of the git commit that wrote it)"
)
STATS = ("mean_difference", "difference_low", "difference_high", "ratio", "ratio_low", "ratio_high", "events")


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_for_conversion", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def git_json(rev: str, name: str) -> dict | None:
    shown = subprocess.run(["git", "show", f"{rev}:docs/benchmarks/{name}"], cwd=ROOT, capture_output=True, text=True)
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def provenance(machine: str, date: str, threads: int | None = None) -> dict:
    """'x86_64, CPU only, 1 thread per run, 2 runs at once' -> machine 'x86_64, CPU only, 2 runs at once', 1."""
    for pattern in (r", (\d+) threads? per run", r", (\d+) torch threads?", r", OMP_NUM_THREADS=(\d+)"):
        found = re.search(pattern, machine)
        if found:
            machine, threads = machine[: found.start()] + machine[found.end() :], int(found[1])
            break
    return {"textrec_version": "0.1.0", "git_commit": "", "machine": machine, "threads": threads, "date": date}


def comparison(c: dict, dataset: str, **fields) -> Comparison:
    """An old paired interval (a, b, slice, seeds and the bootstrap's figures); `fields` replace what it names."""
    named = {"name": f"{c['a']} vs {c['b']}", "a": c["a"], "b": c["b"], "slice": c.get("slice"), "seeds": c["seeds"]}
    stats = {k: c[k] for k in STATS} | {"resamples": c.get("resamples", 1000), "carried": c.get("carried", False)}
    return Comparison(dataset=dataset, **(named | fields), **stats)


# -- E1-cold ---------------------------------------------------------------------------------------------------


def convert_cold(old: dict, runs: dict | None, cold) -> ResultsFile:
    """The table's rows, with every figure of its run (as benchmark_cold.run_rows reads it) where the runs file
    holds the run."""
    meta = old["meta"]
    env = provenance(meta["machine"], meta["date"])
    knobs = {"cold_item_fraction": meta["cold_fraction"], "cold_item_seed": 0, "epochs": meta["epochs"]}
    knobs |= {"patience": meta["patience"], "max_train_minutes": meta.get("minutes", 0)}
    shared = [o for o in cold.settings(knobs) if "minutes" not in o or "minutes" in meta]  # not recorded before
    runs = {tuple(k.rsplit("/", 1)): v for k, v in (runs or {}).items()}
    rows = []
    for i, r in enumerate(old["rows"]):
        model = r["seed"] is not None
        source = runs.get((r["method"], str(r["seed"])))
        if not model:  # the references came from the first stored run that reports them
            source = next(
                (v for _, v in sorted(runs.items()) if r["method"] in v["metrics"]["results"]["cold_start"]), None
            )
        metrics = {k: r[k] for k in ("ndcg@10", "recall@10", "mrr@10")}
        metrics |= {"valid_ndcg@10": r["valid_ndcg@10"]} if r.get("valid_ndcg@10") is not None else {}
        extra = {}
        if source:
            reports = source["metrics"]["results"]
            test = reports["cold_start"]["model" if model else r["method"]][r["slice"]]
            valid = reports["cold_start_valid"]["model" if model else r["method"]].get(r["slice"], {})
            again = {k: v for k, v in test.items() if k != "n_events"} | {f"valid_{k}": v for k, v in valid.items()}
            if any(again.get(k) != v for k, v in metrics.items()) or test["n_events"] != r["n_events"]:
                raise SystemExit(f"cold {meta['dataset']} row {i}: the runs file and the table differ")
            metrics = {k: v for k, v in again.items() if k != "valid_n_events"}
            extra |= {"valid_events": valid["n_events"]} if "n_events" in valid else {}
        fields = dict(dataset=r["dataset"], protocol="E1-cold", method=r["method"], label=r["label"], seed=r["seed"])
        fields |= dict(slice=r["slice"], events=r["n_events"], epochs=r["epochs"], seconds=r["train_seconds"])
        fields |= dict(steps=r.get("optimizer_steps"), trainable_params=r["trainable_params"], **env)
        if model:
            label, which, overrides = cold.METHODS[r["method"]]
            at_once = int(re.search(r"(\d+) runs at once", meta["machine"])[1])
            extra = {"stopped": r["stopped"], "max_epochs": meta["epochs"], "patience": meta["patience"]} | extra
            extra |= {"max_train_minutes": meta["minutes"]} if "minutes" in meta else {}
            extra |= {"runs_at_once": at_once}
            fields |= dict(config=cold.CONFIGS[r["dataset"]][which], overrides=shared + overrides.split())
        rows.append(Result(metrics=metrics, extra=extra, **fields))
    notes = {"cold_items": meta["cold_items"], "cold_item_fraction": meta["cold_fraction"]}
    ids = {tuple(v["metrics"]["cold_items"]) for v in runs.values() if isinstance(v["metrics"]["cold_items"], list)}
    if len(ids) > 1:
        raise SystemExit(f"cold {meta['dataset']}: the runs held out different items")
    notes |= {"cold_item_ids": list(ids.pop())} if ids else {}
    notes |= {"first_seed": 0, "selection_rule": cold.RULE, "selection": old["selection"], "chosen": old["chosen"]}
    notes |= {"targets": old["targets"], "converted": CONVERTED}
    file = ResultsFile(rows=rows, commands=meta.get("commands") or [meta["command"]], notes=notes)
    file.comparisons = [comparison(c, meta["dataset"]) for c in old["comparisons"]]
    for (name, seed), run in runs.items():
        pairs = list(zip(run["ranks"]["test_mask=True"], run["ranks"]["slice"])) if run["ranks"] else []
        for s in cold.SLICES if pairs else ():
            file.ranks[ranks_key(name, int(seed), s)] = [r for r, p in pairs if s in ("all", p)]
    return file


def check_cold(old: dict, file: ResultsFile, cold, name: str) -> int:
    chosen, selection = cold.choose(file, 0)
    if (chosen, selection) != (old["chosen"], old["selection"]):
        raise SystemExit(f"{name}: the selection recomputed differs: {chosen} {selection}")
    close(old["targets"], cold.targets(cold.ordered(file), chosen), f"{name} targets")
    new = {(s.method, s.slice): s for s in cold.ordered(file)}
    for s in old["summary"]:
        got = new[s["method"], s["slice"]]
        want = {k: s[f"{k}_mean"] for k in ("ndcg@10", "recall@10")} | {"sd": s["ndcg@10_sd"], "seeds": s["seeds"]}
        have = {k: got.mean[k] for k in ("ndcg@10", "recall@10")} | {"sd": got.sd["ndcg@10"], "seeds": got.seeds}
        want |= {"epochs": s["epochs_mean"], "seconds": s["train_seconds_mean"]}
        have |= {"epochs": got.mean["epochs"], "seconds": got.mean["seconds"]}
        close(want, have, f"{name} summary {s['method']} {s['slice']}")
    return len(old["summary"])


# -- E4 ----------------------------------------------------------------------------------------------------------


def convert_fgsm(old: dict, fgsm, date: str) -> ResultsFile:
    meta = old["meta"]
    report = {"rows": [r for r in old["rows"] if not r.get("summary")], "selection": old["validation"]}
    report |= {k: old[k] for k in ("costs", "bootstrap")} | {k: meta[k] for k in ("protocol", "chosen", "config")}
    report["popularity_ndcg@10"] = meta["popularity_ndcg@10"]
    file = fgsm.results_file(report, provenance(meta["machine"], date))
    file.commands = [meta["command"]]
    file.notes |= {"targets": old["targets"], "converted": CONVERTED}
    return file


def check_fgsm(old: dict, file: ResultsFile, fgsm, name: str) -> int:
    for want, have in zip(old["targets"], fgsm.checks(file), strict=True):
        close(want, have, f"{name} targets")
    get, summaries = fgsm.tested(file), [r for r in old["rows"] if r.get("summary")]
    for s in summaries:
        got = get[s["method"], f"{s['attack']}-{s['on']}-{s['eps']}"]
        want = {k: s[k] for k in ("ndcg@10", "ndcg@10_sd", "relative_drop", "relative_drop_sd", "seeds")}
        have = {"ndcg@10": got.mean["ndcg@10"], "ndcg@10_sd": got.sd["ndcg@10"], "seeds": len(got.seeds)}
        have |= {"relative_drop": got.mean["relative_drop"], "relative_drop_sd": got.sd["relative_drop"]}
        close(want, have, f"{name} summary {s['method']} {s['attack']} {s['on']} {s['eps']}")
    return len(summaries)


def convert_sweep(old: dict) -> ResultsFile:
    meta = old["meta"]
    env = provenance(meta["machine"], meta["date"])
    normal = {(r["normal_clean"], r["normal_sign_drop"], r["normal_l2_drop"], r["attack_eps"]) for r in old["rows"]}
    if len(normal) != 1:
        raise SystemExit("fgsm_sweep: the runs' normal models differ")
    clean, sign, l2, eps = normal.pop()
    common = {"dataset": "ml-100k", "protocol": "E4", "slice": "all", **env}
    rows = [Result(method="normal", label="normal training", **common, extra={"attack_eps": eps, "runs": 4},
                   metrics={"ndcg@10": clean, "fgsm_relative_drop": sign, "l2_relative_drop": l2})]  # fmt: skip
    for r in old["rows"]:
        metrics = {"ndcg@10": r["adversarial_clean"], "fgsm_relative_drop": r["adversarial_sign_drop"]}
        metrics["l2_relative_drop"] = r["adversarial_l2_drop"]
        extra = {k: r[k] for k in ("train_norm", "train_eps", "attack_eps", "clean_ratio")}
        name, label = f"adversarial_{r['train_norm']}_eps{r['train_eps']}", f"{r['train_norm']} eps {r['train_eps']}"
        rows.append(Result(method=name, label=label, metrics=metrics, seconds=r["seconds"], extra=extra, **common))
    notes = {
        "about": "a sweep of the training perturbation (18 epochs on frozen text vectors per model; each row one "
        "recipe run with its own normal model, the same in every run); drops are relative, under attacks on the "
        "outputs at attack_eps (eps then absolute, before the per-vector relative eps of fgsm_ml100k)",
        "written_by": "scripts/fgsm_sweep.py, never committed; no script writes this file now",
        "converted": CONVERTED,
    }
    return ResultsFile(rows=rows, commands=[meta["command"]], notes=notes)


def sweep_markdown(file: ResultsFile) -> str:
    normal = next(r for r in file.rows if r.method == "normal")
    body = []
    for r in (r for r in file.rows if r.method != "normal"):
        drops = "collapsed", "collapsed"  # the adversarial model lost over 90% of its clean NDCG@10
        if r.extra["clean_ratio"] >= 0.1:
            drops = tuple(
                f"{normal.metrics[k]:.1%} / {r.metrics[k]:.1%}" for k in ("fgsm_relative_drop", "l2_relative_drop")
            )
        clean = f"{number(normal.metrics['ndcg@10'])} / {number(r.metrics['ndcg@10'])} ({r.extra['clean_ratio']:.3f})"
        body.append([r.label, clean, *drops])
    heads = ["training", "clean NDCG@10 normal / adversarial (ratio)", "FGSM drop normal / adversarial"]
    title = f"E4 on ml-100k, a sweep of the training perturbation (attacks at eps {normal.extra['attack_eps']})"
    return header(title, file) + "\n\n" + table(heads + ["L2 drop normal / adversarial"], body) + "\n"


# -- E3 ----------------------------------------------------------------------------------------------------------


def convert_transfer(old: dict, transfer, date: str) -> ResultsFile:
    dataset = old["rows"][0]["dataset"]
    env = provenance(old["machine"], date)
    file = ResultsFile(rows=[transfer.result(r, dataset, env) for r in old["rows"]], commands=[old["command"]])
    for c in old["intervals"]:
        (a, fa), (b, fb) = (c["a"].split("|"), c["b"].split("|"))
        named = {"name": f"{a}@{fa} vs {b}@{fb}", "a": f"{a}@{fa}", "b": f"{b}@{fb}", "slice": "all"}
        file.comparisons.append(comparison(c, dataset, **named))
        file.notes.setdefault("targets", {})[named["name"]] = c["target"]
    keep = ("source_items", "target_items", "cold_items", "target_test_events", "config")
    file.notes |= {k: old[k] for k in keep} | {"converted": CONVERTED}
    return file


def check_transfer(old: dict, file: ResultsFile, transfer, name: str) -> int:
    asked = {f"{a}@{fa} vs {b}@{fb}": t for (a, fa), (b, fb), t in transfer.COMPARISONS}
    if file.notes["targets"] != asked:
        raise SystemExit(f"{name}: the targets differ from benchmark_transfer's: {file.notes['targets']}")
    for s in old["summary"]:
        rows = [r for r in file.rows if (r.method, r.slice) == (s["method"], f"{float(s['fraction'])}-{s['slice']}")]
        have = {"seeds": sorted(r.seed for r in rows)}
        for key in (k for k in s if f"{k}_sd" in s):
            values = [value(r, key) for r in rows if value(r, key) is not None]
            have |= {key: statistics.fmean(values), f"{key}_sd": statistics.stdev(values) if len(values) > 1 else 0.0}
        close({k: s[k] for k in have}, have, f"{name} summary {s['method']} {s['fraction']} {s['slice']}")
    return len(old["summary"])


def value(row: Result, key: str):
    return row.metrics.get(key, row.extra.get(key, getattr(row, key, None)))


# -- E2 ----------------------------------------------------------------------------------------------------------


def convert_incremental(old: dict) -> ResultsFile:
    env = provenance(old["machine"], old["date"])
    headline = {r["strategy"]: r for r in old["rows"]}
    rows, comparisons, seed = [], [], old["config"]["incremental"]["seed"]
    base = {"seconds": old["base_cost"]["seconds"], "steps": old["base_cost"]["steps"]}
    base |= {"epochs": old["base_cost"]["epochs"], "extra": {"examples": old["base_cost"]["examples"], "base": True}}
    for name, s in old["strategies"].items():
        common = {"dataset": "ml-100k", "protocol": "E2", "method": name, "label": name, "seed": seed, **env}
        top = headline[name]
        metrics = {"prequential_ndcg@10": s["mean_prequential"], "current_ndcg@10": top["mean_current_ndcg@10"]}
        metrics |= {"forgetting": s["mean_forgetting"], "relative_forgetting": s["mean_relative_forgetting"]}
        metrics |= {"bwt": s["bwt"], "valid_prequential_ndcg@10": s["mean_valid_prequential"]}
        extra = {"examples_seen": s["examples_seen"]}
        cost = {"steps": s["optimizer_steps"], "seconds": s["cumulative_seconds"]}
        cost |= {"trainable_params": s["trainable_params"], "extra": extra}
        rows.append(Result(**common, slice="mean", metrics=metrics, **cost))
        for t, matrix_row in enumerate(s["matrix"]):
            metrics = {f"period{j}_ndcg@10": v for j, v in enumerate(matrix_row)} | {
                "current_ndcg@10": s["current"][t]
            }
            if t:
                metrics |= {"prequential_ndcg@10": s["prequential"][t - 1]}
                metrics |= {"valid_prequential_ndcg@10": s["valid_prequential"][t - 1]}
            if t < len(s["forgetting"]):
                metrics["forgetting"] = s["forgetting"][t]
            cost = base if not t else dict(s["costs"][t - 1])
            if t:
                fields = {k: cost.pop(k) for k in ("seconds", "steps", "epochs", "trainable_params") if k in cost}
                cost = fields | {"extra": cost}
            rows.append(Result(**common, slice=f"period{t}", metrics=metrics, events=old["eval_events"][t], **cost))
        if s.get("prequential_vs_full_retrain"):
            interval = s["prequential_vs_full_retrain"] | {"a": name, "b": "full_retrain", "seeds": [seed]}
            comparisons.append(comparison(interval, "ml-100k", slice="prequential"))
    notes = {
        "protocol": old["protocol"],
        "periods": old["periods"],
        "eval_events": old["eval_events"],
        "valid_events": old["valid_events"],
        "rows": "slice mean: the strategy's headline (means over the slices; seconds and steps: all its updates, "
        "the base fit excluded); slice period<t>: the model after training through period t, its NDCG@10 on every "
        "period's test events (the matrix row R[t][*]) and the cost of its update (period0: the shared base fit)",
        "config": old["config"],
        "written_by": "copied by hand from recipes/incremental_lora.py's report; no script writes this file",
        "converted": CONVERTED,
    }
    return ResultsFile(rows=rows, comparisons=comparisons, commands=[old["command"]], notes=notes)


def incremental_markdown(file: ResultsFile) -> str:
    means = {r.method: r for r in file.rows if r.slice == "mean"}
    full, vs_full = means.get("full_retrain"), {c.a: c for c in file.comparisons}
    body = []
    for name, r in means.items():
        m, c = r.metrics, vs_full.get(name)
        ratio = f"{m['prequential_ndcg@10'] / full.metrics['prequential_ndcg@10']:.3f}" if full else "-"
        ratio += f" [{c.ratio_low:.3f}, {c.ratio_high:.3f}]" if c else ""
        cells = [number(m[k]) for k in ("prequential_ndcg@10", "current_ndcg@10", "forgetting")]
        cells += [f"{m['relative_forgetting']:.1%}", f"{m['bwt']:+.4f}", number(round(r.seconds)), number(r.steps)]
        time = f"{r.seconds / full.seconds:.3f}" if full and full.seconds else "-"
        body.append([name, *cells, number(r.extra["examples_seen"]), ratio, time])
    heads = ["strategy", "mean prequential NDCG@10", "mean current NDCG@10", "mean forgetting", "relative forgetting"]
    heads += ["BWT", "cumulative s", "steps", "examples", "x full_retrain prequential [95% CI]", "x full_retrain time"]
    periods = sorted({r.slice for r in file.rows if r.slice.startswith("period")} - {"period0"})
    per = [[n] + [number(r.metrics["prequential_ndcg@10"]) for p in periods for r in file.rows
                  if (r.method, r.slice) == (n, p)] for n in means]  # fmt: skip
    lines = [header("E2 on ml-100k: base period, then 5 slices of the time-sorted stream", file), ""]
    lines += [table(heads, body), "", "Prequential NDCG@10 per slice (before the update on it):", ""]
    lines += [table(["strategy", *(p.replace("period", "slice ") for p in periods)], per)]
    return "\n".join(lines) + "\n"


# -- checks ------------------------------------------------------------------------------------------------------


def close(want, have, where: str) -> None:
    """Equal dicts / lists, numbers to TOLERANCE, None and 0.0 alike (an sd over one seed)."""
    if isinstance(want, dict) and isinstance(have, dict) and want.keys() == have.keys():
        for k in want:
            close(want[k], have[k], f"{where}.{k}")
    elif isinstance(want, list) and isinstance(have, list) and len(want) == len(have):
        for w, h in zip(want, have):
            close(w, h, where)
    elif want != have:
        numbers = all(x is None or isinstance(x, (int, float)) and not isinstance(x, bool) for x in (want, have))
        if not numbers or not math.isclose(want or 0.0, have or 0.0, abs_tol=TOLERANCE):
            raise SystemExit(f"{where}: {want!r} recomputed as {have!r}")


def leaves(value) -> list:
    """Every number (not bool) inside a JSON value."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in leaves(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def check_leaves(old, path: Path) -> int:
    """Every numeric leaf of `old` is found in the new file as written (or its ranks file)."""
    new = leaves(json.loads(path.read_text()))
    ranks = path.with_name(path.stem + ".ranks.json")
    new = set(new + (leaves(json.loads(ranks.read_text())) if ranks.is_file() else []))
    missing = [x for x in leaves(old) if x not in new]
    if missing:
        raise SystemExit(f"{path}: old figures not found in the new file: {missing[:10]}")
    return len(leaves(old))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", default="HEAD", help="the git revision that holds the old files")
    args = parser.parse_args()
    cold, diagnose = script("benchmark_cold"), script("diagnose_cold")
    fgsm, transfer = script("benchmark_fgsm"), script("benchmark_transfer")
    names = ["cold_ml100k", "cold_ml1m", "cold_diagnosis_ml100k", "fgsm_ml100k", "fgsm_ml1m", "fgsm_sweep"]
    for name in names + ["transfer_ml100k", "transfer_ml1m", "incremental_ml100k"]:
        old = git_json(args.rev, f"{name}.json")
        if old is None or old.get("format") == FORMAT:
            raise SystemExit(f"{args.rev}:docs/benchmarks/{name}.json is not an old file; pass --rev <older commit>")
        date = git("log", "-1", "--format=%as", args.rev, "--", f"docs/benchmarks/{name}.json").strip()
        runs = git_json(args.rev, f"{name}.runs.json") if name.startswith("cold_ml") else None
        skip, summaries = {}, 0
        if name.startswith("cold_ml"):
            file, skip = convert_cold(old, runs, cold), {"summary"}
            summaries, markdown = check_cold(old, file, cold, name), cold.markdown
        elif name.startswith("cold_diagnosis"):
            env = provenance("", old["date"], threads=1)  # the command ran with OMP_NUM_THREADS=1
            rows = [r for found in old["runs"] for r in diagnose.rows_of(old["dataset"], found, env)]
            file = ResultsFile(rows=rows, commands=[old["command"]], notes={"converted": CONVERTED})
            markdown = diagnose.markdown
        elif name == "fgsm_sweep":
            file, markdown = convert_sweep(old), sweep_markdown
        elif name.startswith("fgsm"):
            file, markdown = convert_fgsm(old, fgsm, date), fgsm.markdown
            summaries = check_fgsm(old, file, fgsm, name)
            old = {**old, "rows": [r for r in old["rows"] if not r.get("summary")]}
        elif name.startswith("transfer"):
            file, skip, markdown = convert_transfer(old, transfer, date), {"summary"}, transfer.markdown
            summaries = check_transfer(old, file, transfer, name)
        else:
            file, markdown = convert_incremental(old), incremental_markdown
        path = BENCHMARKS / f"{name}.json"
        file.save(path, markdown(file))
        if ResultsFile.load(path) != file:
            raise SystemExit(f"{path}: does not load back as written")
        figures = check_leaves({k: v for k, v in old.items() if k not in skip}, path)
        if runs:
            figures += check_leaves({k: {"metrics": v["metrics"]} for k, v in runs.items()}, path)
            again = convert_cold(old, runs, cold).ranks
            if ResultsFile.load(path).ranks != again or not all(
                again[ranks_key(*k.rsplit("/", 1), "all")] == v["ranks"]["test_mask=True"]
                for k, v in runs.items()
                if v["ranks"]
            ):
                raise SystemExit(f"{path}: the stored ranks differ from the runs file's")
            (BENCHMARKS / f"{name}.runs.json").unlink(missing_ok=True)
        print(
            f"{name}: {len(file.rows)} rows, {len(file.comparisons)} comparisons, {len(file.ranks)} rank lists; "
            f"{figures} old figures found, {summaries} summaries recomputed equal"
        )


if __name__ == "__main__":
    main()
