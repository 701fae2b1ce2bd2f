"""Benchmark protocol E3 (domain transfer) with recipes/domain_transfer.py, several training seeds.

    python scripts/prepare_movielens.py && python scripts/benchmark_transfer.py --dataset ml-100k --seeds 0 1 2
    python scripts/prepare_movielens.py --dataset ml-1m
    python scripts/benchmark_transfer.py --dataset ml-1m --seeds 0
    python scripts/benchmark_transfer.py --dataset ml-100k --report-only      # rewrite the report from finished runs

Each seed is one run of the recipe (`transfer.seed`; the domains, cold items and user fractions are the same for
every seed) in its own process with one torch thread, under `outputs/transfer_bench/<dataset>/seed_<s>/`. Finished
runs are reused (delete a run folder or pass --force); the JSON, markdown and plot are rewritten after every run.

Output `docs/benchmarks/transfer_<dataset>.{json,md,png}`: per-run rows (`dataset`, `method`, `fraction`, `slice`,
`seed`, `ndcg@10`, `recall@10`, `steps`, `seconds`, `trainable_params`, ...), summary rows (mean and sd over seeds),
and paired bootstrap 95% intervals on the target test events (per-event NDCG@10 averaged over seeds first) for the
comparisons the issue sets targets on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from textrec.protocols.reports import transfer_markdown, transfer_plot  # noqa: E402
from textrec.protocols.transfer import paired_interval, summarise  # noqa: E402

CONFIGS = {"ml-100k": "transfer_ml100k_minilm.yaml", "ml-1m": "transfer_ml1m_minilm.yaml"}
# (a, b, what the issue asks of a against b)
COMPARISONS = [
    ("zero_shot|0.0", "content_similarity_last5|0.0", "ratio >= 1.5"),
    ("zero_shot|0.0", "content_similarity|0.0", "ratio >= 1.5"),
    ("zero_shot|0.0", "adapted|1.0", "ratio >= 0.4"),
    ("adapted|0.2", "id_only|1.0", "difference > 0"),
    ("adapted|0.05", "scratch|0.05", "difference > 0"),
    ("adapted|0.2", "scratch|0.2", "difference > 0"),
    ("adapted|1.0", "scratch|1.0", "difference > 0"),
    ("adapted|1.0", "id_only|1.0", "difference > 0"),
]


def run_seed(dataset: str, seed: int, out: Path, overrides: list[str], force: bool) -> bool:
    if (out / "report.json").exists() and not force:
        return True
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(ROOT / "recipes" / "domain_transfer.py"), "--config"]
    cmd += [str(ROOT / "recipes" / "configs" / CONFIGS[dataset]), f"transfer.seed={seed}"]
    cmd += [f"transfer.output_dir={out}", f"transfer.dataset={dataset}", *overrides]
    print(" ".join(cmd), flush=True)
    started = time.time()
    with open(out / "log.txt", "w") as log:
        proc = subprocess.run(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
    print(f"seed {seed}: exit {proc.returncode} after {time.time() - started:.0f} s", flush=True)
    return proc.returncode == 0


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


def write_report(dataset: str, runs: dict[int, Path], command: str) -> None:
    done = {s: read_run(p) for s, p in runs.items() if (p / "report.json").exists()}
    if not done:
        return
    reports, ranks = {s: d[0] for s, d in done.items()}, {s: d[1] for s, d in done.items()}
    rows = [r for report in reports.values() for r in report["rows"]]
    intervals = []
    for a, b, target in COMPARISONS:
        seeds = [s for s in reports if a in ranks[s] and b in ranks[s]]
        if seeds:
            interval = paired_interval([ranks[s][a] for s in seeds], [ranks[s][b] for s in seeds])
            intervals.append({"a": a, "b": b, "target": target, "seeds": seeds, **interval})
    first = next(iter(reports.values()))
    summary = summarise(rows)
    out = {
        "command": command,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, 1 torch thread, shared with other jobs",
        "seeds": sorted(reports),
        "config": first["config"],
        **{k: first[k] for k in ("source_items", "target_items", "cold_items", "target_test_events")},
        "rows": rows,
        "summary": summary,
        "intervals": intervals,
    }
    docs = ROOT / "docs" / "benchmarks"
    name = dataset.replace("-", "")
    (docs / f"transfer_{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    table = transfer_markdown(summary)
    lines = [f"Paired bootstrap 95% intervals of test NDCG@10 (seeds {sorted(reports)}):", ""]
    lines += ["| a | b | target | a - b [95% CI] | a / b [95% CI] |", "|---|---|---|---|---|"]
    for i in intervals:
        a, b = i["a"].replace("|", " at "), i["b"].replace("|", " at ")
        lines.append(
            f"| {a} | {b} | {i['target']} | {i['mean_difference']:+.4f} [{i['difference_low']:+.4f}, "
            f"{i['difference_high']:+.4f}] | {i['ratio']:.3f} [{i['ratio_low']:.3f}, {i['ratio_high']:.3f}] |"
        )
    header = (
        f"E3 domain transfer on {dataset}: `{command}`\n\nMean ± sd over seeds; steps and seconds: the target fit.\n\n"
    )
    (docs / f"transfer_{name}.md").write_text(header + table + "\n" + "\n".join(lines) + "\n")
    transfer_plot(summary, docs / f"transfer_{name}.png")
    print(table)
    print("\n".join(lines))


def main():
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
    parser.add_argument("overrides", nargs="*", help="recipe overrides, e.g. transfer.max_train_minutes=5")
    args = parser.parse_args()
    command = "python scripts/benchmark_transfer.py " + " ".join(sys.argv[1:])
    runs = {s: Path(args.out) / args.dataset / f"seed_{s}" for s in args.seeds}
    for seed, path in runs.items():
        if not args.report_only:
            run_seed(args.dataset, seed, path / args.part if args.part else path, args.overrides, args.force)
        write_report(args.dataset, runs, command)


if __name__ == "__main__":
    main()
