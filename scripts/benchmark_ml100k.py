"""Benchmark on MovieLens-100k under protocol E1 (both mask variants): one table, same split, same seed.

    python scripts/prepare_movielens.py
    python scripts/benchmark_ml100k.py                       # CPU budgets from the configs (about 1 hour here)
    python scripts/benchmark_ml100k.py --budget-scale 4      # longer budgets (e.g. on a GPU)
    python scripts/benchmark_ml100k.py --only id_only --only text_seq_lora

Each configuration is a run of recipes/train.py with its own training budget (`training.max_train_minutes` of
its YAML, times --budget-scale); evaluation time is not part of the budget. Finished runs are reused when the
script is started again (delete the run folder or pass --force to redo one). Writes docs/benchmarks/ml100k.json
(a list of rows, each with the machine, date and command) and docs/benchmarks/ml100k.md (the table).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    # name: (model label, config, extra overrides)
    "id_only": ("textrec ID-only (sequence)", "ml100k_idonly.yaml", []),
    "text_seq_lora": ("text item (MiniLM+LoRA) + sequence user", "ml100k_minilm.yaml", []),
    "text_seq_frozen": ("text item (MiniLM frozen) + sequence user", "ml100k_minilm_frozen.yaml", []),
    "text_text_lora": ("text item + text user (MiniLM+LoRA)", "ml100k_minilm_text_user.yaml", []),
    "smollm2_seq_frozen": ("text item (SmolLM2-135M frozen) + sequence user", "ml100k_smollm2.yaml", []),
}
METRICS = ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20", "mrr@20")


def run_config(name: str, out_root: Path, scale: float, force: bool, launcher: list[str]) -> dict:
    label, config, overrides = RUNS[name]
    out = out_root / name
    metrics_path = out / "metrics.json"
    if metrics_path.is_file() and not force:
        print(f"[{name}] reusing {metrics_path}")
        return json.loads(metrics_path.read_text())
    if out.exists():  # a forced or unfinished run starts clean (no resuming from an older code's checkpoints)
        shutil.rmtree(out)
    cfg = yaml.safe_load((ROOT / "recipes" / "configs" / config).read_text())
    budget = float(cfg["training"].get("max_train_minutes", 0)) * scale
    cmd = launcher + [
        str(ROOT / "recipes" / "train.py"),
        "--config",
        str(ROOT / "recipes" / "configs" / config),
        f"training.output_dir={out}",
        f"training.max_train_minutes={budget}",
        *overrides,
    ]
    print(f"[{name}] {' '.join(cmd)}", flush=True)
    started = time.perf_counter()
    with open(out_root / f"{name}.log", "w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"[{name}] failed ({proc.returncode}); see {out_root / f'{name}.log'}")
    print(f"[{name}] done in {time.perf_counter() - started:.0f}s", flush=True)
    return json.loads(metrics_path.read_text())


def rows_for(name: str, summary: dict) -> list[dict]:
    label = RUNS[name][0]
    rows = []
    for mask in (True, False):
        m = summary["results"][f"test_mask={mask}"]
        rows.append(
            {
                "model": label,
                "run": name,
                "mask_history": mask,
                **{k: m[k] for k in METRICS},
                "n_events": m["n_events"],
                "epoch_seconds": summary["epoch_seconds"],
                "train_seconds": summary["train_seconds"],
                "epochs": summary["epochs"],
                "examples_per_second": summary["examples_per_second"],
                "trainable_params": summary["trainable_params"],
                "peak_memory_mb": summary.get("peak_memory_mb"),
                "budget_minutes": summary["config"]["training"]["max_train_minutes"],
                "best_valid_ndcg@10": summary["best_valid_ndcg@10"],
            }
        )
    return rows


def popularity_rows(summary: dict) -> list[dict]:
    rows = []
    for mask in (True, False):
        m = summary["results"][f"popularity_mask={mask}"]
        rows.append(
            {
                "model": "popularity",
                "run": "popularity",
                "mask_history": mask,
                **{k: m[k] for k in METRICS},
                "n_events": m["n_events"],
                "epoch_seconds": 0.0,
                "train_seconds": 0.0,
                "epochs": 0,
                "examples_per_second": None,
                "trainable_params": 0,
                "peak_memory_mb": None,
                "budget_minutes": 0,
                "best_valid_ndcg@10": None,
            }
        )
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"ml-100k, protocol E1 (leave-one-out, full ranking, pessimistic ties), {rows[0]['n_events']} test users. "
        f"{meta['machine']}, {meta['date']}. Command: `{meta['command']}`",
        "",
        "| model | mask_history | NDCG@10 | Recall@10 | MRR@10 | NDCG@20 | s/epoch | epochs | budget (min) "
        "| trainable params | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mask in (True, False):
        for r in (r for r in rows if r["mask_history"] == mask):
            peak = f"{r['peak_memory_mb']:.0f}" if r["peak_memory_mb"] else "-"
            lines.append(
                f"| {r['model']} | {mask} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | {r['mrr@10']:.4f} | "
                f"{r['ndcg@20']:.4f} | {r['epoch_seconds']:.1f} | {r['epochs']} | {r['budget_minutes']:g} | "
                f"{r['trainable_params']:,} | {peak} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(RUNS),
        help="run only these (repeatable); finished runs of the others still go in the table",
    )
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every training budget")
    parser.add_argument("--out", default="outputs/bench_ml100k", help="run folders")
    parser.add_argument("--json", default="docs/benchmarks/ml100k.json")
    parser.add_argument("--md", default="docs/benchmarks/ml100k.md")
    parser.add_argument("--force", action="store_true", help="redo runs that already finished")
    parser.add_argument("--launcher", default=sys.executable, help="e.g. 'accelerate launch --num_processes 1'")
    args = parser.parse_args()
    out_root = ROOT / args.out
    out_root.mkdir(parents=True, exist_ok=True)
    rows, popularity = [], None
    for name in RUNS:  # --only picks what runs now; the table has every run that has finished
        metrics_path = out_root / name / "metrics.json"
        if args.only and name not in args.only:
            if not metrics_path.is_file():
                continue
            summary = json.loads(metrics_path.read_text())
        else:
            summary = run_config(name, out_root, args.budget_scale, args.force, args.launcher.split())
        popularity = popularity or popularity_rows(summary)
        rows.extend(rows_for(name, summary))
    rows = popularity + rows
    import torch

    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", CPU only"),
        "command": "python scripts/benchmark_ml100k.py " + " ".join(sys.argv[1:]),
        "torch": torch.__version__,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    rows = [{**r, **meta} for r in rows]  # a list of rows, each saying where and how it was measured
    Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    table = markdown(rows, meta)
    Path(args.md).write_text(table)
    print(table)


if __name__ == "__main__":
    main()
