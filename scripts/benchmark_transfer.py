"""Benchmark protocol E3 (domain transfer) with recipes/domain_transfer.py, several training seeds.

    python scripts/prepare_movielens.py && python scripts/benchmark_transfer.py --dataset ml-100k --seeds 0 1 2
    python scripts/prepare_movielens.py --dataset ml-1m
    python scripts/benchmark_transfer.py --dataset ml-1m --seeds 0
    python scripts/benchmark_transfer.py --dataset ml-100k --report-only      # rewrite the report from finished runs

Each seed is one run of the recipe (`training.seed`; the domains, cold items and user fractions are the same for
every seed) in its own process with one torch thread, under `outputs/transfer_bench/<dataset>/seed_<s>/`. Finished
runs are reused (delete a run folder or pass --force); the JSON, markdown and plot are rewritten after every run.

Output `docs/benchmarks/transfer_<dataset>.{json,md,png}`: a textrec-results/1 file with one row per method, seed,
share of target training users and slice of the target test events (protocol E3; slice `<fraction>-<all|warm|cold>`,
e.g. `0.05-cold`, the fraction also in `extra`; steps and seconds: the target fit, the source fit's in `extra`), the
per-event test ranks beside it (`.ranks.json`), and paired bootstrap 95% intervals on all target test events
(per-event NDCG@10 averaged over seeds first) for the comparisons the issue sets targets on (the targets: notes).
Rows of seeds whose run folders are gone stay in the file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from textrec.evaluate.results import Result, ResultsFile, compare, environment, ranks_key, summarise  # noqa: E402
from textrec.evaluate.runs import run_date, run_once  # noqa: E402
from textrec.evaluate.tables import header, number, table  # noqa: E402
from textrec.protocols.reports import transfer_plot  # noqa: E402

CONFIGS = {"ml-100k": "transfer_ml100k_minilm.yaml", "ml-1m": "transfer_ml1m_minilm.yaml"}
METHODS = {
    "content_similarity": "content similarity (untrained encoder, whole history)",
    "content_similarity_last5": "content similarity (untrained encoder, last 5 items)",
    "popularity": "popularity of the target users' training items",
    "zero_shot": "zero-shot: trained on the source only",
    "adapted": "source model + LoRA adaptation on the target",
    "scratch": "target only, from the pretrained encoder",
    "id_only": "ID-only on the target",
}
# (a, fraction of a), (b, fraction of b), what the issue asks of a against b
COMPARISONS = [
    (("zero_shot", 0.0), ("content_similarity_last5", 0.0), "ratio >= 1.5"),
    (("zero_shot", 0.0), ("content_similarity", 0.0), "ratio >= 1.5"),
    (("zero_shot", 0.0), ("adapted", 1.0), "ratio >= 0.4"),
    (("adapted", 0.2), ("id_only", 1.0), "difference > 0"),
    (("adapted", 0.05), ("scratch", 0.05), "difference > 0"),
    (("adapted", 0.2), ("scratch", 0.2), "difference > 0"),
    (("adapted", 1.0), ("scratch", 1.0), "difference > 0"),
    (("adapted", 1.0), ("id_only", 1.0), "difference > 0"),
]
METRICS = ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20", "mrr@20")
FIELDS = {"n_events": "events", "epochs": "epochs", "steps": "steps", "seconds": "seconds"}
FIELDS |= {"trainable_params": "trainable_params"}
VALID = ("best_valid_ndcg@10", "target_valid_ndcg")  # a fit's best validation; zero-shot: the source fit's


def run_seed(dataset: str, seed: int, out: Path, overrides: list[str], force: bool) -> None:
    cmd = [sys.executable, str(ROOT / "recipes" / "domain_transfer.py"), "--config"]
    cmd += [str(ROOT / "recipes" / "configs" / CONFIGS[dataset]), f"training.seed={seed}"]
    cmd += [f"transfer.output_dir={out}", f"transfer.dataset={dataset}", *overrides]
    run_once(cmd, out, out / "log.txt", done="report.json", force=force, cwd=ROOT)


def read_run(path: Path) -> tuple[dict, dict]:
    """A seed's report and ranks; a part re-run under `path/<part>/` (--part) replaces the rows and ranks of the
    methods it trained."""
    report, ranks = json.loads((path / "report.json").read_text()), json.loads((path / "ranks.json").read_text())
    for part in sorted(p for p in path.iterdir() if (p / "report.json").exists()):
        redone = json.loads((part / "report.json").read_text())["config"]["transfer"]["methods"]
        report["rows"] = [r for r in report["rows"] if r["method"] not in redone]
        report["rows"] += [r for r in json.loads((part / "report.json").read_text())["rows"] if r["method"] in redone]
        part_ranks = json.loads((part / "ranks.json").read_text())
        ranks.update({k: v for k, v in part_ranks.items() if k.split("|")[0] in redone})
    return report, ranks


def result(row: dict, dataset: str, env: dict, overrides=()) -> Result:
    """A recipe report row (one method, fraction, seed and slice) as a `Result`."""
    fraction = float(row["fraction"])
    metrics = {k: row[k] for k in METRICS if k in row}
    for name in (k for k in VALID if row.get(k) is not None):
        metrics["valid_ndcg@10"] = row[name]
    fields = {new: row[old] for old, new in FIELDS.items() if old in row}
    known = {*METRICS, *VALID, *FIELDS, "dataset", "method", "seed", "slice"}
    extra = {k: v for k, v in row.items() if k not in known}
    label = f"{METHODS.get(row['method'], row['method'])}, {fraction:.0%} of target users"
    return Result(dataset, "E3", row["method"], metrics, label, CONFIGS.get(dataset, ""), list(overrides),
                  row["seed"], f"{fraction}-{row['slice']}", **fields, **env, extra=extra)  # fmt: skip


def comparisons(file: ResultsFile, dataset: str) -> list:
    """COMPARISONS from the stored ranks, each side at its own fraction (named `<method>@<fraction>`)."""
    view = ResultsFile()  # the ranks keyed by method@fraction, so that `compare` pairs across fractions
    for key, ranks in file.ranks.items():
        method, seed, slice_ = key.split("/")
        fraction, part = slice_.rsplit("-", 1)
        view.ranks[ranks_key(f"{method}@{fraction}", seed, part)] = ranks
    out = []
    for (a, fa), (b, fb), _ in COMPARISONS:
        out += compare(view, f"{a}@{fa} vs {b}@{fb}", dataset, f"{a}@{fa}", f"{b}@{fb}", ["all"])
    return out


def markdown(file: ResultsFile) -> str:
    rows = [r for r in file.rows if r.protocol == "E3"]
    summaries = {(s.method, s.slice): s for s in summarise(rows)}
    groups = dict.fromkeys((r.method, float(r.extra["fraction"])) for r in rows)
    lines = [header(f"E3 domain transfer on {rows[0].dataset}", file, rows), ""]
    lines += ["Mean ± sd over seeds; steps and seconds: the target fit.", ""]

    def cell(method, fraction, part, metric="ndcg@10"):
        s = summaries.get((method, f"{fraction}-{part}"))
        if s is None or metric not in s.mean:
            return "-"
        return number(s.mean[metric]) + (f" ± {s.sd[metric]:.4f}" if s.sd[metric] else "")

    def mean(values):
        values = [v for v in values if v is not None]
        return number(round(sum(values) / len(values))) if values else "-"

    body = []
    for method, fraction in groups:
        same = [r for r in rows if (r.method, r.slice) == (method, f"{fraction}-all")]
        source = mean(r.extra.get("source_steps") for r in same), mean(r.extra.get("source_seconds") for r in same)
        body.append(
            [method, f"{fraction:.0%}", len(same), *(cell(method, fraction, p) for p in ("all", "warm", "cold"))]
            + [cell(method, fraction, "all", "recall@10"), cell(method, fraction, "all", "valid_ndcg@10")]
            + [mean(r.steps for r in same), mean(r.seconds for r in same)]
            + ["-" if source[0] == "-" else f"{source[0]} / {source[1]}", number(same[0].trainable_params)]
        )
    heads = ["method", "target users", "seeds", "NDCG@10 all", "warm", "cold", "Recall@10 all", "valid NDCG@10"]
    lines += [table(heads + ["steps", "seconds", "source steps / s", "trainable params"], body), ""]
    lines += ["Paired bootstrap 95% intervals of test NDCG@10 (all target test events):", ""]
    asked = file.notes.get("targets", {})
    body = [
        [c.a + (" (carried: ranks not stored)" if c.carried else ""), c.b, asked.get(c.name, "-"), len(c.seeds),
         f"{c.mean_difference:+.4f} [{c.difference_low:+.4f}, {c.difference_high:+.4f}]",
         f"{c.ratio:.3f} [{c.ratio_low:.3f}, {c.ratio_high:.3f}]"]
        for c in file.comparisons
    ]  # fmt: skip
    lines.append(table(["a", "b", "target", "seeds", "a - b [95% CI]", "a / b [95% CI]"], body))
    return "\n".join(lines) + "\n"


def plot_rows(file: ResultsFile) -> list[dict]:
    """The summaries in the shape `transfer_plot` reads."""
    out = []
    for s in summarise(r for r in file.rows if r.protocol == "E3"):
        fraction, part = s.slice.rsplit("-", 1)
        out.append({"method": s.method, "fraction": float(fraction), "slice": part, "ndcg@10": s.mean["ndcg@10"],
                    "ndcg@10_sd": s.sd["ndcg@10"] or 0.0})  # fmt: skip
    return out


def write_report(dataset: str, runs: dict[int, Path], command: str, overrides: list[str]) -> None:
    done = {s: read_run(p) for s, p in runs.items() if (p / "report.json").exists()}
    if not done:
        return
    docs = ROOT / "docs" / "benchmarks"
    path, env = docs / f"transfer_{dataset.replace('-', '')}.json", environment()
    file = ResultsFile.load(path)
    file.add_command(command)
    for seed, (report, ranks) in done.items():
        where = {**env, "date": run_date(runs[seed] / "report.json")}
        file.merge(result(r, dataset, where, overrides) for r in report["rows"])
        for key, value in ranks.items():
            method, fraction = key.split("|")
            file.ranks[ranks_key(method, seed, f"{float(fraction)}-all")] = value
        keep = ("source_items", "target_items", "cold_items", "target_test_events", "config")
        file.notes |= {k: report[k] for k in keep}
    file.set_comparisons(comparisons(file, dataset))
    file.notes["targets"] = {f"{a}@{fa} vs {b}@{fb}": target for (a, fa), (b, fb), target in COMPARISONS}
    file.save(path, markdown(file))
    transfer_plot(plot_rows(file), path.with_suffix(".png"))
    print(markdown(file))


def main():
    logging.basicConfig(format="%(message)s", level=logging.INFO)  # the runs\' progress (textrec.evaluate.runs)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(CONFIGS), default="ml-100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="outputs/transfer_bench")
    parser.add_argument("--force", action="store_true", help="re-run finished seeds")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report from finished runs")
    parser.add_argument(
        "--part",
        help="re-run into seed_<s>/<part>/ (e.g. with transfer.methods=[id_only]): its rows "
        "replace those of the methods it trains",
    )
    parser.add_argument("overrides", nargs="*", help="recipe overrides, e.g. training.max_train_minutes=5")
    args = parser.parse_args()
    command = "python scripts/benchmark_transfer.py " + " ".join(sys.argv[1:])
    os.environ["OMP_NUM_THREADS"] = "1"  # every run: one torch thread
    runs = {s: Path(args.out) / args.dataset / f"seed_{s}" for s in args.seeds}
    for seed, path in runs.items():
        if not args.report_only:
            run_seed(args.dataset, seed, path / args.part if args.part else path, args.overrides, args.force)
        write_report(args.dataset, runs, command, args.overrides)


if __name__ == "__main__":
    main()
