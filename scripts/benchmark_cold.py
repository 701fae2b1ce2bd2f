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
content similarity (cosine to the mean text vector of the whole history; and of the last 5). Finished runs are reused.

Output `docs/benchmarks/cold_<dataset>.json` (textrec-results/1): a row per method, seed and slice (all / warm / cold
test events, history masked; `valid_*`: the same slice on validation; references have no seed), the per-event test
ranks in `cold_<dataset>.ranks.json`, paired bootstrap 95% intervals (per-event NDCG@10 averaged over shared seeds),
and in the notes the selection, the choice and the issue's targets; `cold_<dataset>.md` is generated from it. Runs
already in the file count as finished, so a later session adds rows to the table (outputs/ is not committed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from textrec.evaluate.results import Result, ResultsFile, compare, environment, ranks_key, summarise, this_command  # noqa: E402
from textrec.evaluate.runs import run_date, run_once  # noqa: E402
from textrec.evaluate.tables import comparison_table, header, number, summary_table, table  # noqa: E402

CONFIGS = {
    d: (f"{d.replace('-', '')}_idonly.yaml", f"{d.replace('-', '')}_minilm_frozen.yaml") for d in ("ml-100k", "ml-1m")
}
DROP_BIAS = "model.id_dropout=0.5 model.item_bias=true"
METHODS = {  # name: (label, which config (0 = ID-only, 1 = text), overrides)
    "id_only": ("ID-only (sequence)", 0, ""),
    "text_ids": ("MiniLM frozen + ids", 1, ""),
    "text_ids_iddrop50": ("MiniLM frozen + ids, id dropout 0.5", 1, "model.id_dropout=0.5"),
    "text_ids_iddrop50_bias": ("MiniLM frozen + ids + bias, id dropout 0.5", 1, DROP_BIAS),
    "text_ids_iddrop50_bias_nologq": (
        "MiniLM frozen + ids + bias, id dropout 0.5, no logQ", 1, f"{DROP_BIAS} training.logq=none"
    ),
    "text_ids_iddrop50_bias_content5": (
        "MiniLM frozen + ids + bias, id dropout 0.5, content path 5", 1, f"{DROP_BIAS} model.user_content=5"
    ),
    "text_only_nologq_content5": (
        "MiniLM frozen, text only, no logQ, content path 5", 1,
        "model.id_embedding=false training.logq=none model.user_content=5",
    ),
    "text_only": ("MiniLM frozen, text only (+ bias)", 1, "model.id_embedding=false model.item_bias=true"),
}  # fmt: skip
REFERENCES = {"popularity": "popularity", "content_similarity": "content similarity (untrained MiniLM)"}
REFERENCES["content_similarity_last5"] = "content similarity last5 (untrained MiniLM)"
EVERY_SEED = ("text_ids",)  # the headline pair: the chosen candidate joins it; the others run on the first seed
SLICES = ("all", "warm", "cold")
WARM_TOLERANCE = 0.03
RULE = (
    f"the highest validation cold-slice NDCG@10 among the candidates whose validation warm-slice NDCG@10 is at "
    f"least {1 - WARM_TOLERANCE:.2f} x the best candidate's (first seed)"
)
# (a, b, slices) of the paired intervals; "chosen" stands for the chosen configuration
PAIRS = [("chosen", "text_ids", ("warm", "cold")), ("text_only", "text_ids", ("warm", "cold"))]
PAIRS += [("text_ids_iddrop50_bias", "text_ids", SLICES), ("chosen", "id_only", ("warm",))]
PAIRS += [("text_ids", "id_only", ("warm",))]


def settings(training: dict) -> list[str]:
    """The overrides every run of one benchmark shares (budget, stopping rule, held-out items)."""
    keys = ("cold_item_fraction", "cold_item_seed", "epochs", "patience", "max_train_minutes")
    return [f"training.{k}={training[k]}" for k in keys]


def command(args, name: str, seed: int, folder: Path) -> list[str]:
    training = dict(
        cold_item_fraction=args.cold_fraction, cold_item_seed=0, epochs=args.epochs, patience=args.patience
    )
    training["max_train_minutes"] = args.minutes
    config = ROOT / "recipes" / "configs" / CONFIGS[args.dataset][METHODS[name][1]]
    cmd = [sys.executable, str(ROOT / "recipes" / "train.py"), "--config", str(config)]
    cmd += [f"training.output_dir={folder}", f"training.seed={seed}", "training.progress=false"]
    return cmd + ["training.resume=never", *settings(training), *METHODS[name][2].split()]


def run_rows(dataset: str, name: str, seed: int, folder: Path, env: dict, jobs: int):
    """The rows of a finished run (the model and the references it reports, per slice: test metrics, and the same
    slice's validation metrics as `valid_*`), its per-event test ranks per slice, and the held-out items."""
    m = json.loads((folder / "metrics.json").read_text())
    ranks = json.loads((folder / "ranks.json").read_text())
    t = m["config"]["training"]
    label, which, overrides = METHODS[name]
    run = dict(method=name, label=label, config=CONFIGS[dataset][which], overrides=settings(t) + overrides.split())
    run |= dict(seed=seed, epochs=m["epochs"], steps=m["optimizer_steps"], seconds=m["train_seconds"])
    run |= dict(trainable_params=m["trainable_params"])
    run["extra"] = {"stopped": m["stopped"], "max_epochs": t["epochs"], "patience": t["patience"]}
    run["extra"] |= {"max_train_minutes": t["max_train_minutes"], "runs_at_once": jobs}
    where = {"dataset": dataset, "protocol": "E1-cold", **env, "date": run_date(folder / "metrics.json")}
    rows = []
    for method, by_slice in m["results"]["cold_start"].items():
        fields = run if method == "model" else dict(method=method, label=REFERENCES.get(method, method), extra={})
        fields = fields if method == "model" else fields | {"epochs": 0, "seconds": 0.0, "trainable_params": 0}
        for s, measured in by_slice.items():
            valid = m["results"]["cold_start_valid"].get(method, {}).get(s, {})
            metrics = {k: v for k, v in measured.items() if k != "n_events"}
            metrics |= {f"valid_{k}": v for k, v in valid.items() if k != "n_events"}
            extra = fields["extra"] | ({"valid_events": valid["n_events"]} if "n_events" in valid else {})
            row = Result(**where, **{**fields, "extra": extra}, slice=s, metrics=metrics, events=measured["n_events"])
            rows.append(row)
    pairs = list(zip(ranks["test_mask=True"], ranks["slice"]))
    stored = {ranks_key(name, seed, s): [r for r, p in pairs if s in ("all", p)] for s in SLICES}
    return rows, stored, m["cold_items"]


def choose(file: ResultsFile, seed) -> tuple[str | None, list[dict]]:
    """The cold-start configuration, chosen on validation slices of `seed` by RULE, and the selection table."""
    rows = [r for r in file.rows if r.protocol == "E1-cold" and r.seed == seed and r.method != "id_only"]
    valid = {(s.method, s.slice): s.mean.get("valid_ndcg@10") for s in summarise(rows)}
    picks = [{"method": n, **{f"valid_{s}_ndcg@10": valid.get((n, s)) for s in ("warm", "cold")}} for n in METHODS]
    picks = [p for p in picks if None not in p.values()]
    best_warm = max((p["valid_warm_ndcg@10"] for p in picks), default=0.0)
    eligible = [p for p in picks if p["valid_warm_ndcg@10"] >= (1 - WARM_TOLERANCE) * best_warm]
    chosen = max(eligible, key=lambda p: p["valid_cold_ndcg@10"])["method"] if eligible else None
    for p in picks:
        p |= {"eligible": p in eligible, "chosen": p["method"] == chosen}
    return chosen, picks


def ordered(file: ResultsFile) -> list:
    """Summaries over seeds of the E1-cold rows: references first, then the methods in METHODS order."""
    order = [*REFERENCES, *METHODS]
    found = summarise(r for r in file.rows if r.protocol == "E1-cold")
    return sorted(found, key=lambda s: (order.index(s.method) if s.method in order else len(order), s.slice))


def targets(summaries, chosen: str | None) -> dict:
    def mean(method, s):
        return next((x.mean["ndcg@10"] for x in summaries if x.method == method and x.slice == s), None)

    text = [n for n in METHODS if n != "id_only" and mean(n, "cold") is not None]
    contents = [c for c in (mean("content_similarity", "cold"), mean("content_similarity_last5", "cold")) if c]
    content = max(contents, default=None)  # the stronger of the two untrained references
    best_warm = max((mean(n, "warm") for n in METHODS if mean(n, "warm") is not None), default=None)
    out = {"content_similarity_cold": content, "best_warm": best_warm}
    if chosen and content and best_warm:
        cold, warm = mean(chosen, "cold"), mean(chosen, "warm")
        out |= {"chosen": chosen, "chosen_cold": cold, "cold_ratio_to_content": cold / content}
        out |= {"cold_target_2x_met": cold >= 2 * content, "chosen_warm": warm, "warm_ratio_to_best": warm / best_warm}
        out |= {"warm_target_met": warm >= (1 - WARM_TOLERANCE) * best_warm}
        out["best_cold_text_model"] = max(text, key=lambda n: mean(n, "cold"))
    return out


def update(file: ResultsFile, dataset: str, first_seed) -> None:
    """Recompute what the rows decide: the choice, the paired intervals (from the stored ranks) and the targets."""
    chosen, selection = choose(file, first_seed)
    fresh = {}
    for a, b, parts in PAIRS:
        a = chosen if a == "chosen" else a
        for c in compare(file, f"{a} vs {b}", dataset, a, b, parts) if a else []:
            fresh.setdefault((c.name, c.slice), c)
    file.set_comparisons(list(fresh.values()))
    file.notes |= {"first_seed": first_seed, "selection_rule": RULE, "selection": selection, "chosen": chosen}
    file.notes["targets"] = targets(ordered(file), chosen)


def markdown(file: ResultsFile) -> str:
    rows = [r for r in file.rows if r.protocol == "E1-cold"]
    first = {(r.method, r.slice): r for r in reversed(rows)}
    cost = [("events", lambda s: number(first[s.method, s.slice].events))]
    cost += [("params", lambda s: number(first[s.method, s.slice].trainable_params))]
    notes = file.notes
    title = f"{rows[0].dataset}, protocol E1-cold ({notes.get('cold_items')} of the items held out, seed 0), test, "
    lines = [header(title + "history masked", file, rows), "", summary_table(ordered(file), slices=SLICES, extra=cost)]
    lines += ["", f"Selection on validation (seed {notes['first_seed']}): {notes['selection_rule']}.", ""]
    picks = [[r["method"], *(number(r[f"valid_{s}_ndcg@10"]) for s in ("warm", "cold")), r["eligible"], r["chosen"]]
             for r in notes["selection"]]  # fmt: skip
    lines += [table(["candidate", "valid warm NDCG@10", "valid cold NDCG@10", "eligible", "chosen"], picks), ""]
    if file.comparisons:
        lines += ["Paired bootstrap, test NDCG@10 per event (averaged over shared seeds):", ""]
        lines += [comparison_table(file.comparisons), ""]
    lines += [table(["target", "value"], [[k, number(v)] for k, v in notes["targets"].items()])]
    return "\n".join(lines) + "\n"


def main() -> None:
    logging.basicConfig(format="%(message)s", level=logging.INFO)  # the runs\' progress (textrec.evaluate.runs)
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
    path = ROOT / "docs" / "benchmarks" / f"cold_{stem}.json"
    file, env, lock = ResultsFile.load(path), environment(), threading.Lock()
    file.add_command(this_command())

    def work(task):
        name, seed = task
        folder = out_root / f"{name}_seed{seed}"
        stored = any(r.method == name and r.seed == seed for r in file.rows)
        if (args.reuse_only or stored) and not (folder / "ranks.json").is_file():
            return  # nothing to run, or a stored run whose folder is gone: its stored rows and ranks stand
        log = out_root / f"{name}_seed{seed}.log"
        run_once(command(args, name, seed, folder), folder, log, done="ranks.json", cwd=ROOT)
        rows, ranks, cold = run_rows(args.dataset, name, seed, folder, env, args.jobs)
        with lock:
            file.merge(rows)
            file.ranks.update(ranks)
            file.notes |= {"cold_items": len(cold), "cold_item_ids": cold}
            update(file, args.dataset, args.seeds[0])
            file.save(path, markdown(file))

    first = [(n, args.seeds[0]) for n in args.methods or METHODS]
    first.sort(key=lambda t: (out_root / f"{t[0]}_seed{t[1]}.log").exists())  # started runs last
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(work, first))
        chosen, _ = choose(file, args.seeds[0])
        rest = [(n, s) for s in args.seeds[1:] for n in METHODS if n in EVERY_SEED or n == chosen or args.reuse_only]
        list(pool.map(work, rest))
    if not file.rows:
        raise SystemExit("no run finished and none stored: nothing to tabulate")
    update(file, args.dataset, args.seeds[0])
    file.save(path, markdown(file))
    print(markdown(file))


if __name__ == "__main__":
    main()
