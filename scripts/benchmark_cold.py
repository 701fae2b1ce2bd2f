"""Benchmark new items (protocol E1-cold): warm and cold test slices on MovieLens, ID-only against the text models.

    python scripts/prepare_movielens.py && python scripts/benchmark_cold.py --dataset ml-100k
    python scripts/benchmark_cold.py --dataset ml-100k --seeds 0 --jobs 1        # one seed, one run at a time

A seeded 10% of the items (seed 0) is held out of training entirely (`training.cold_item_fraction` of
recipes/train.py); every run is recipes/train.py with the same budget and stopping rule (at most `--epochs` epochs,
early stopping on validation NDCG@10 over all validation events with `--patience`, no time budget, so a shared
machine changes the seconds, not the result). Two phases:
1. Selection (first seed): the text candidates (text + ids; with id dropout 0.5, without and with a per-item bias;
   text-only with a bias) and ID-only. The cold-start configuration is chosen on VALIDATION: the highest validation
   cold-slice NDCG@10 among candidates whose validation warm slice is within 3% of the best validation warm slice.
2. The other seeds: the headline pair, text + ids and the chosen configuration (CPU time: ID-only, which cannot rank
   cold items at all, and text-only run on the first seed only).
References from the same runs: popularity (cold items have no count: they rank last) and the untrained encoder's
content similarity (cosine to the mean text vector of the whole history). Finished runs are reused.

Each finished run's results (its E1-cold reports, cost, and per-event test ranks and slices) are also kept in
`docs/benchmarks/cold_<dataset>.runs.json`, and runs found there count as finished: a later session adds rows to the
table instead of replacing it with what its own run folders hold (outputs/ is not committed).

Output `docs/benchmarks/cold_<dataset>.json`: rows (`dataset`, `method`, `slice`, `seed`, `ndcg@10`, ...), a summary
per method and slice (mean, sd over seeds), the selection table, paired bootstrap 95% intervals (test events of one
slice, per-event NDCG@10 averaged over shared seeds) and the issue's targets; `cold_<dataset>.md` holds the tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from textrec.evaluate.metrics import ndcg_per_event, paired_bootstrap  # noqa: E402
from textrec.files import atomic_write_text  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_movielens import launch  # noqa: E402

CONFIGS = {
    "ml-100k": ("ml100k_idonly.yaml", "ml100k_minilm_frozen.yaml"),
    "ml-1m": ("ml1m_idonly.yaml", "ml1m_minilm_frozen.yaml"),
}
# name: (label, which config (0 = ID-only, 1 = text), overrides)
METHODS = {
    "id_only": ("ID-only (sequence)", 0, []),
    "text_ids": ("MiniLM frozen + ids", 1, []),
    "text_ids_iddrop50": ("MiniLM frozen + ids, id dropout 0.5", 1, ["model.id_dropout=0.5"]),
    "text_ids_iddrop50_bias": (
        "MiniLM frozen + ids + bias, id dropout 0.5",
        1,
        ["model.id_dropout=0.5", "model.item_bias=true"],
    ),
    "text_ids_iddrop50_bias_nologq": (
        "MiniLM frozen + ids + bias, id dropout 0.5, no logQ",
        1,
        ["model.id_dropout=0.5", "model.item_bias=true", "training.logq_correction=false"],
    ),
    "text_ids_iddrop50_bias_content5": (
        "MiniLM frozen + ids + bias, id dropout 0.5, content path 5",
        1,
        ["model.id_dropout=0.5", "model.item_bias=true", "model.user_content=5"],
    ),
    "text_only_nologq_content5": (
        "MiniLM frozen, text only, no logQ, content path 5",
        1,
        ["model.id_embedding=false", "training.logq_correction=false", "model.user_content=5"],
    ),
    "text_only": ("MiniLM frozen, text only (+ bias)", 1, ["model.id_embedding=false", "model.item_bias=true"]),
}
EVERY_SEED = ("text_ids",)  # the headline pair: the chosen candidate joins it; the others run on the first seed
SLICES = ("all", "warm", "cold")
WARM_TOLERANCE = 0.03


def run(dataset, name, seed, args, out_root) -> dict:
    out = out_root / f"{name}_seed{seed}"
    log_path = out_root / f"{name}_seed{seed}.log"
    while log_path.is_file() and not (out / "ranks.json").is_file() and time.time() - log_path.stat().st_mtime < 180:
        time.sleep(30)  # another process is running it (its log is fresh): wait for it instead of starting again
    if (out / "metrics.json").is_file() and (out / "ranks.json").is_file():
        print(f"[{name} seed {seed}] reusing {out}", flush=True)
    else:
        _, which, overrides = METHODS[name]
        cmd = [sys.executable, str(ROOT / "recipes" / "train.py")]
        cmd += ["--config", str(ROOT / "recipes" / "configs" / CONFIGS[dataset][which])]
        cmd += [f"training.output_dir={out}", f"training.seed={seed}", "training.progress=false"]
        cmd += [f"training.cold_item_fraction={args.cold_fraction}", "training.cold_item_seed=0"]
        cmd += [f"training.epochs={args.epochs}", f"training.patience={args.patience}"]
        cmd += [f"training.max_train_minutes={args.minutes}"]
        cmd += ["training.resume=never", *overrides]
        launch(cmd, log_path, f"{name} seed {seed}")
    return {
        "metrics": json.loads((out / "metrics.json").read_text()),
        "ranks": json.loads((out / "ranks.json").read_text()),
    }


RUN_KEYS = ("epochs", "optimizer_steps", "train_seconds", "trainable_params", "stopped", "cold_items")


def compact(result: dict) -> dict:
    """The part of a run's results the tables read (no config, no other reports)."""
    m, ranks = result["metrics"], result["ranks"]
    metrics = {k: m[k] for k in RUN_KEYS} | {
        "results": {k: m["results"][k] for k in ("cold_start", "cold_start_valid")}
    }
    return {"metrics": metrics, "ranks": ranks and {k: ranks[k] for k in ("test_mask=True", "slice")}}


def stored_runs(path: Path) -> dict:
    """Results an earlier benchmark kept in `path` (cold_<dataset>.runs.json), by (method, seed)."""
    if not path.is_file():
        return {}
    try:
        stored = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"{path}: not valid JSON ({err}); move it away to start a new table") from None
    return {(name, int(seed)): v for key, v in stored.items() for name, _, seed in [key.rpartition("/")]}


def results_from_table(doc: dict) -> dict:
    """Runs of a table written before `cold_<dataset>.runs.json` existed, rebuilt from its rows: every figure the
    tables read, but no per-event ranks (so no paired interval), and the count of cold items instead of the list."""
    results: dict = {}
    refs_test, refs_valid = {}, {}
    for r in doc["rows"]:
        test = {k: r[k] for k in ("ndcg@10", "recall@10", "mrr@10", "n_events")}
        valid = {} if r.get("valid_ndcg@10") is None else {"ndcg@10": r["valid_ndcg@10"]}
        if r["seed"] is None:  # a reference row: popularity or content similarity
            refs_test.setdefault(r["method"], {})[r["slice"]] = test
            refs_valid.setdefault(r["method"], {})[r["slice"]] = valid
            continue
        run = results.setdefault((r["method"], r["seed"]), {"metrics": {}, "ranks": None})
        run["metrics"].update({k: r[k] for k in RUN_KEYS if k in r})
        run["metrics"]["cold_items"] = doc["meta"]["cold_items"]
        reports = run["metrics"].setdefault(
            "results", {"cold_start": {"model": {}}, "cold_start_valid": {"model": {}}}
        )
        reports["cold_start"]["model"][r["slice"]] = test
        reports["cold_start_valid"]["model"][r["slice"]] = valid
    for run in results.values():  # the references are the same in every run
        run["metrics"]["results"]["cold_start"].update(refs_test)
        run["metrics"]["results"]["cold_start_valid"].update(refs_valid)
    return results


def rows_of(dataset, name, seed, result) -> list[dict]:
    m = result["metrics"]
    rows = []
    for s in SLICES:
        test, valid = m["results"]["cold_start"]["model"].get(s), m["results"]["cold_start_valid"]["model"].get(s)
        if test is None:
            continue
        rows.append(
            {
                "dataset": dataset,
                "method": name,
                "label": METHODS[name][0],
                "slice": s,
                "seed": seed,
                "ndcg@10": test["ndcg@10"],
                "recall@10": test["recall@10"],
                "mrr@10": test["mrr@10"],
                "n_events": test["n_events"],
                "valid_ndcg@10": valid["ndcg@10"] if valid else None,
                "epochs": m["epochs"],
                "optimizer_steps": m["optimizer_steps"],
                "train_seconds": m["train_seconds"],
                "trainable_params": m["trainable_params"],
                "stopped": m["stopped"],
            }
        )
    return rows


def reference_rows(dataset, results: dict) -> list[dict]:
    """Popularity and the untrained encoder's content similarity (whole history; last 5 items), from the first text
    run that reports each (they do not depend on the run)."""
    out = []
    for method in ("popularity", "content_similarity", "content_similarity_last5"):
        runs = [r for (n, _), r in sorted(results.items()) if method in r["metrics"]["results"]["cold_start"]]
        if not runs:
            continue
        report = runs[0]["metrics"]["results"]["cold_start"][method]
        valid = runs[0]["metrics"]["results"]["cold_start_valid"].get(method, {})
        for s in SLICES:
            if s in report:
                m = report[s]
                out.append(
                    {
                        "dataset": dataset,
                        "method": method,
                        "label": method.replace("_", " ") + (" (untrained MiniLM)" if "content" in method else ""),
                        "slice": s,
                        "seed": None,
                        "ndcg@10": m["ndcg@10"],
                        "recall@10": m["recall@10"],
                        "mrr@10": m["mrr@10"],
                        "n_events": m["n_events"],
                        "valid_ndcg@10": valid.get(s, {}).get("ndcg@10"),
                        "epochs": 0,
                        "train_seconds": 0.0,
                        "trainable_params": 0,
                    }
                )
    return out


def choose(results: dict, seed: int) -> tuple[str | None, list[dict]]:
    """The cold-start configuration, chosen on validation slices of `seed` (see the module docstring)."""
    candidates = [n for n in METHODS if n != "id_only" and (n, seed) in results]
    table = []
    for n in candidates:
        v = results[(n, seed)]["metrics"]["results"]["cold_start_valid"]["model"]
        table.append(
            {"method": n, "valid_warm_ndcg@10": v["warm"]["ndcg@10"], "valid_cold_ndcg@10": v["cold"]["ndcg@10"]}
        )
    if not table:
        return None, table
    best_warm = max(r["valid_warm_ndcg@10"] for r in table)
    eligible = [r for r in table if r["valid_warm_ndcg@10"] >= (1 - WARM_TOLERANCE) * best_warm]
    chosen = max(eligible, key=lambda r: r["valid_cold_ndcg@10"])["method"]
    for r in table:
        r["eligible"] = r in eligible
        r["chosen"] = r["method"] == chosen
    return chosen, table


def summaries(rows) -> list[dict]:
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        for s in SLICES:
            rs = [r for r in rows if r["method"] == method and r["slice"] == s]
            if not rs:
                continue
            values = [r["ndcg@10"] for r in rs]
            out.append(
                {
                    "summary": True,
                    "dataset": rs[0]["dataset"],
                    "method": method,
                    "label": rs[0]["label"],
                    "slice": s,
                    "seeds": [r["seed"] for r in rs],
                    "ndcg@10_mean": statistics.fmean(values),
                    "ndcg@10_sd": statistics.stdev(values) if len(values) > 1 else None,
                    "recall@10_mean": statistics.fmean(r["recall@10"] for r in rs),
                    "n_events": rs[0]["n_events"],
                    "epochs_mean": statistics.fmean(r["epochs"] for r in rs),
                    "train_seconds_mean": statistics.fmean(r["train_seconds"] for r in rs),
                    "trainable_params": rs[0]["trainable_params"],
                }
            )
    return out


def comparisons(results: dict, chosen: str | None) -> list[dict]:
    pairs = [(chosen, "text_ids", ("warm", "cold")), ("text_only", "text_ids", ("warm", "cold"))]
    pairs += [("text_ids_iddrop50_bias", "text_ids", ("all", "warm", "cold"))]
    pairs += [(chosen, "id_only", ("warm",)), ("text_ids", "id_only", ("warm",))]
    out = []
    for a, b, parts in pairs:
        ranked = {(n, s) for (n, s), r in results.items() if r["ranks"]}  # runs kept from a table alone have none
        seeds = sorted({s for n, s in ranked if n == a} & {s for n, s in ranked if n == b})
        if a is None or a == b or not seeds:
            continue
        for part in parts:

            def per_event(name, part=part, seeds=seeds):
                total = 0
                for s in seeds:
                    ranks = results[(name, s)]["ranks"]
                    keep = [r for r, sl in zip(ranks["test_mask=True"], ranks["slice"]) if part in ("all", sl)]
                    total = total + ndcg_per_event(keep)
                return total / len(seeds)

            out.append({"a": a, "b": b, "slice": part, "seeds": seeds, **paired_bootstrap(per_event(a), per_event(b))})
    return out


def carry(new: list[dict], old) -> list[dict]:
    """The recomputed comparisons, plus earlier ones that could not be recomputed (their runs' ranks are gone)."""
    done = {(c["a"], c["b"], c["slice"]) for c in new}
    return new + [{**c, "carried": True} for c in old if (c["a"], c["b"], c["slice"]) not in done]


def targets(summary_rows, chosen) -> dict:
    def mean(method, s):
        return next((r["ndcg@10_mean"] for r in summary_rows if r["method"] == method and r["slice"] == s), None)

    text = [n for n in METHODS if n != "id_only" and mean(n, "cold") is not None]
    contents = [c for c in (mean("content_similarity", "cold"), mean("content_similarity_last5", "cold")) if c]
    content = max(contents, default=None)  # the stronger of the two untrained references
    best_warm = max((mean(n, "warm") for n in METHODS if mean(n, "warm") is not None), default=None)
    out = {"content_similarity_cold": content, "best_warm": best_warm}
    if chosen and content and best_warm:
        out.update(
            {
                "chosen": chosen,
                "chosen_cold": mean(chosen, "cold"),
                "cold_ratio_to_content": mean(chosen, "cold") / content,
                "cold_target_2x_met": mean(chosen, "cold") >= 2 * content,
                "chosen_warm": mean(chosen, "warm"),
                "warm_ratio_to_best": mean(chosen, "warm") / best_warm,
                "warm_target_met": mean(chosen, "warm") >= (1 - WARM_TOLERANCE) * best_warm,
                "best_cold_text_model": max(text, key=lambda n: mean(n, "cold")),
            }
        )
    return out


def markdown(doc) -> str:
    meta = doc["meta"]
    lines = [
        f"{meta['dataset']}, protocol E1-cold ({meta['cold_items']} of the items held out, seed 0), test, history "
        f"masked. {meta['machine']}, {meta['date']}. Commands, in order: "
        + "; ".join(f"`{c}`" for c in meta.get("commands", [meta["command"]])),
        "",
        "| method | slice | NDCG@10 mean | sd | seeds | Recall@10 | events | epochs | train s | params |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["summary"]:
        sd = f"{r['ndcg@10_sd']:.4f}" if r["ndcg@10_sd"] is not None else "-"
        lines.append(
            f"| {r['label']} | {r['slice']} | {r['ndcg@10_mean']:.4f} | {sd} | {len(r['seeds'])} | "
            f"{r['recall@10_mean']:.4f} | {r['n_events']} | {r['epochs_mean']:.1f} | {r['train_seconds_mean']:.0f} | "
            f"{r['trainable_params']:,} |"
        )
    lines += ["", "Selection on validation (first seed):", ""]
    lines += ["| candidate | valid warm NDCG@10 | valid cold NDCG@10 | eligible | chosen |", "|---|---|---|---|---|"]
    for r in doc["selection"]:
        lines.append(
            f"| {r['method']} | {r['valid_warm_ndcg@10']:.4f} | {r['valid_cold_ndcg@10']:.4f} | {r['eligible']} | "
            f"{r['chosen']} |"
        )
    if doc["comparisons"]:
        lines += ["", "| a | b | slice | seeds | difference [95% CI] |", "|---|---|---|---|---|"]
        for c in doc["comparisons"]:
            carried = " (carried: ranks not stored)" if c.get("carried") else ""
            lines.append(
                f"| {c['a']}{carried} | {c['b']} | {c['slice']} | {len(c['seeds'])} | {c['mean_difference']:+.4f} "
                f"[{c['difference_low']:+.4f}, {c['difference_high']:+.4f}] |"
            )
    lines += ["", "Targets: " + json.dumps(doc["targets"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k", choices=sorted(CONFIGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=80, help="maximum epochs of every run")
    parser.add_argument("--patience", type=int, default=8, help="validations without improvement before stopping")
    parser.add_argument("--minutes", type=float, default=0, help="training budget per run (0: none, epochs only)")
    parser.add_argument(
        "--methods", nargs="+", choices=sorted(METHODS), default=None, help="first-seed candidates (default: all)"
    )
    parser.add_argument("--cold-fraction", type=float, default=0.1)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each single-threaded)")
    parser.add_argument("--reuse-only", action="store_true", help="start no run: tabulate the finished ones")
    parser.add_argument("--out", default=None, help="run folders (default: outputs/cold_<dataset>)")
    args = parser.parse_args()
    stem = args.dataset.replace("-", "")
    out_root = ROOT / (args.out or f"outputs/cold_{stem}")
    meta = {
        "dataset": args.dataset,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, CPU only, 1 thread per run, {args.jobs} runs at once",
        "command": "OMP_NUM_THREADS=1 python scripts/benchmark_cold.py " + " ".join(sys.argv[1:]),
        "cold_fraction": args.cold_fraction,
        "epochs": args.epochs,
        "patience": args.patience,
        "minutes": args.minutes,
    }
    runs_path, table_path = ROOT / f"docs/benchmarks/cold_{stem}.runs.json", ROOT / f"docs/benchmarks/cold_{stem}.json"
    earlier = json.loads(table_path.read_text()) if table_path.is_file() else None
    results: dict = stored_runs(runs_path) or (results_from_table(earlier) if earlier else {})
    commands = (earlier["meta"].get("commands") or [earlier["meta"]["command"]]) if earlier and results else []
    # a repeated command (a re-run of the same merge) is listed once
    meta["commands"] = [c for c in commands if c != meta["command"]] + [meta["command"]]
    old_comps = earlier.get("comparisons", []) if earlier and results else []
    lock = threading.Lock()

    def work(task):
        name, seed = task
        on_disk = (out_root / f"{name}_seed{seed}" / "ranks.json").is_file()
        if (args.reuse_only or task in results) and not on_disk:
            return  # nothing to run, or a stored run whose folder is gone: its stored results stand
        result = compact(run(args.dataset, name, seed, args, out_root))
        with lock:
            results[(name, seed)] = result
            write(args.dataset, stem, meta, results, args.seeds[0], old_comps)

    first = [(n, args.seeds[0]) for n in args.methods or METHODS]
    first.sort(key=lambda t: (out_root / f"{t[0]}_seed{t[1]}.log").exists())  # started runs last
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(work, first))
        chosen, _ = choose(results, args.seeds[0])
        rest = [(n, s) for s in args.seeds[1:] for n in METHODS if n in EVERY_SEED or n == chosen or args.reuse_only]
        list(pool.map(work, rest))
    if not results:
        raise SystemExit("no run finished and none stored: nothing to tabulate")
    print(markdown(write(args.dataset, stem, meta, results, args.seeds[0], old_comps)))


def write(dataset, stem, meta, results, first_seed, old_comps=()) -> dict:
    chosen, selection = choose(results, first_seed)
    rows = [
        r
        for (n, s), res in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        for r in rows_of(dataset, n, s, res)
    ]
    any_text = next((res for (n, _), res in results.items() if n != "id_only"), None)
    refs = reference_rows(dataset, results)
    count = any_text and any_text["metrics"]["cold_items"]
    meta = {**meta, "cold_items": len(count) if isinstance(count, list) else count}
    summary_rows = summaries(refs + rows)
    doc = {
        "meta": meta,
        "rows": refs + rows,
        "summary": summary_rows,
        "selection": selection,
        "chosen": chosen,
        "comparisons": carry(comparisons(results, chosen), old_comps),
        "targets": targets(summary_rows, chosen),
    }
    stored = {f"{n}/{s}": r for (n, s), r in sorted(results.items())}
    atomic_write_text(
        ROOT / f"docs/benchmarks/cold_{stem}.runs.json", json.dumps(stored, separators=(",", ":")) + "\n"
    )
    atomic_write_text(ROOT / f"docs/benchmarks/cold_{stem}.json", json.dumps(doc, indent=2) + "\n")
    atomic_write_text(ROOT / f"docs/benchmarks/cold_{stem}.md", markdown(doc))
    return doc


if __name__ == "__main__":
    main()
