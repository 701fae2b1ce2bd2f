"""Benchmark on MovieLens under protocol E1 (both mask variants): popularity, ID-only and the text models, 3 seeds.

    python scripts/prepare_movielens.py && python scripts/benchmark_movielens.py --dataset ml-100k
    python scripts/prepare_movielens.py --dataset ml-1m
    python scripts/benchmark_movielens.py --dataset ml-1m --seeds 0
    python scripts/benchmark_movielens.py --dataset ml-100k --only id_only --only text_frozen --seeds 0 1 2
    python scripts/benchmark_movielens.py --dataset ml-100k --budget-scale 4     # longer budgets (e.g. on a GPU)

Every run is recipes/train.py with its config's budget (`training.max_train_minutes` and `training.epochs`, times
--budget-scale for the minutes; evaluation is not part of the budget) and early stopping on validation; the same
leave-one-out split for every seed (the seed changes initialisation and batch order). Finished runs are reused
(delete a run folder or pass --force to redo one), and the JSON and markdown are rewritten after every run, so a
cut-off benchmark keeps what it finished.

The table is merged, never replaced: rows of an earlier `<table>.json` whose run folder is not on disk any more
(outputs/ is not committed) are kept, and each run's per-event test ranks go to `<table>.ranks.json`, so a later
session's comparisons can pair with runs it did not redo. An earlier comparison that cannot be recomputed (a run
without stored ranks) is kept as it was, marked `carried`.

Output (`docs/benchmarks/<dataset>.json`): one row per run and mask variant (`dataset`, `model`, `seed`,
`mask_history`, `ndcg@10`, `recall@10`, `mrr@10`, `epochs`, `train_seconds`, `trainable_params`, ...), a summary
row per model and mask (`seeds`, `ndcg@10_mean`, `ndcg@10_sd`), and paired bootstrap 95% intervals (1,000
resamples of test events; per-event NDCG@10 averaged over the seeds both models share) for the best text model
against ID-only and for LoRA against frozen. Best = highest mean validation NDCG@10, never test.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from textrec.evaluate.metrics import ndcg_per_event, paired_bootstrap  # noqa: E402
from textrec.files import atomic_write_text  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from select_on_validation import best_epoch  # noqa: E402

# The rows measured before 2026-11-25 ran with torch's N(0, 1) position embeddings; re-runs keep that init.
OLD_POSITIONS = ["model.seq_position_std=null"]
# the text settings chosen on the ml-100k E1-cold validation, and the epoch cap they ran under on ml-100k
ID_DROPOUT_CONTENT = ["model.id_dropout=0.5", "model.item_bias=true", "model.user_content=5"]
EPOCH_CAP = ["training.max_train_minutes=0", "training.epochs=80"]
RUNS = {
    # dataset: {name: (model label, config, extra overrides, kind)}; kind: id | text_frozen | text_lora | text
    "ml-100k": {
        "id_only": ("textrec ID-only (sequence)", "ml100k_idonly.yaml", OLD_POSITIONS, "id"),
        "text_frozen": (
            "MiniLM frozen + ids, sequence user",
            "ml100k_minilm_frozen.yaml",
            OLD_POSITIONS,
            "text_frozen",
        ),
        "text_frozen_iddrop": (
            "MiniLM frozen + ids + bias, id dropout 0.5, sequence user",
            "ml100k_minilm_frozen.yaml",
            # id dropout converges in more epochs: an epoch cap (80, patience 10) instead of the 8-minute budget
            ["model.id_dropout=0.5", "model.item_bias=true"] + EPOCH_CAP + OLD_POSITIONS,
            "text_frozen",
        ),
        "text_frozen_content": (
            "MiniLM frozen + ids + bias, id dropout 0.5, content path 5, sequence user",
            "ml100k_minilm_frozen.yaml",
            ID_DROPOUT_CONTENT + EPOCH_CAP + OLD_POSITIONS,
            "text_frozen",
        ),
        # position embeddings initialised at std 0.02 instead of torch's N(0, 1) (model.seq_position_std)
        "id_only_pos002": (
            "textrec ID-only (sequence), positions std 0.02",
            "ml100k_idonly.yaml",
            ["model.seq_position_std=0.02"],
            "id",
        ),
        "text_frozen_content_pos002": (
            "MiniLM frozen + ids + bias, id dropout 0.5, content path 5, positions std 0.02, sequence user",
            "ml100k_minilm_frozen.yaml",
            ID_DROPOUT_CONTENT + ["model.seq_position_std=0.02"] + EPOCH_CAP,
            "text_frozen",
        ),
        # temperature 0.1 instead of 0.05, chosen on seed-42 validation (selection_temperature_ml100k); ID-only gets
        # the same choice, and each side's row is picked by validation
        "id_only_t01": (
            "textrec ID-only (sequence), positions std 0.02, temperature 0.1",
            "ml100k_idonly.yaml",
            # an epoch budget (300, patience 10) instead of 8 minutes: at 0.1 it converges later, and a shared
            # CPU must change the seconds, not the result
            ["model.seq_position_std=0.02", "model.temperature=0.1", "training.max_train_minutes=0"],
            "id",
        ),
        "text_frozen_content_t01": (
            "MiniLM frozen + ids + bias, id dropout 0.5, content path 5, positions std 0.02, temperature 0.1",
            "ml100k_minilm_frozen.yaml",
            ID_DROPOUT_CONTENT + ["model.seq_position_std=0.02", "model.temperature=0.1"] + EPOCH_CAP,
            "text_frozen",
        ),
        "text_lora": ("MiniLM + LoRA + ids, sequence user", "ml100k_minilm.yaml", [], "text_lora"),
        # LoRA against text_frozen_content_pos002 (the same model settings): the config's 10-minute budget, more
        # than the frozen runs use before they stop early
        "text_lora_content_pos002": (
            "MiniLM + LoRA + ids + bias, id dropout 0.5, content path 5, positions std 0.02, sequence user",
            "ml100k_minilm.yaml",
            ID_DROPOUT_CONTENT + ["model.seq_position_std=0.02"],
            "text_lora",
        ),
        # the same, LoRA joining after 45 epochs on frozen text vectors (chosen on seed 0 validation,
        # outputs/probe/lora_warm45_seed0): the frozen model is nearly converged when LoRA starts
        "text_lora_content_warm45": (
            "MiniLM + LoRA after 45 frozen epochs + ids + bias, id dropout 0.5, content path 5, sequence user",
            "ml100k_minilm.yaml",
            ID_DROPOUT_CONTENT + ["training.encoder_warmup_epochs=45", "training.epochs=80"],
            "text_lora",
        ),
        "text_user": ("MiniLM + LoRA, text user tower", "ml100k_minilm_text_user.yaml", [], "text"),
        "smollm2_frozen": ("SmolLM2-135M frozen + ids, sequence user", "ml100k_smollm2.yaml", [], "text"),
        # the decoder-only encoder with the headline row's settings (text_frozen_content_pos002), vectors cached
        "smollm2_frozen_content": (
            "SmolLM2-135M frozen + ids + bias, id dropout 0.5, content path 5, sequence user",
            "ml100k_smollm2.yaml",
            ID_DROPOUT_CONTENT + EPOCH_CAP + ["training.text_cache_dir=outputs/text_cache"],
            "text",
        ),
    },
    "ml-1m": {
        "id_only": ("textrec ID-only (sequence)", "ml1m_idonly.yaml", [], "id"),
        "text_frozen": ("MiniLM frozen + ids, sequence user", "ml1m_minilm_frozen.yaml", [], "text_frozen"),
        "text_frozen_content": (  # the configuration chosen on ml-100k validation, under the ML-1M time budget
            "MiniLM frozen + ids + bias, id dropout 0.5, content path 5, sequence user",
            "ml1m_minilm_frozen.yaml",
            ID_DROPOUT_CONTENT,
            "text_frozen",
        ),
        # LoRA against text_frozen (the best text model on validation), same budget: 15 epochs on frozen text
        # vectors (about 25 of the 40 minutes), then LoRA with ml100k_minilm.yaml's encoder settings; not tuned on
        # ML-1M (one LoRA epoch costs about 2.5 frozen ones here)
        "text_lora": (
            "MiniLM + LoRA + ids, sequence user",
            "ml1m_minilm_frozen.yaml",
            [
                "model.train_mode=lora",
                "training.encoder_warmup_epochs=15",
                "training.encoder_lr=0.0002",
                "training.max_live_items=64",
                "training.cache_refresh_steps=40",
            ],
            "text_lora",
        ),
        # temperature 0.1, the choice of ml-100k validation (selection_temperature_ml100k), for both sides; ML-1M's
        # own validation prefers 0.05 for both
        "id_only_t01": (
            "textrec ID-only (sequence), temperature 0.1",
            "ml1m_idonly.yaml",
            ["model.temperature=0.1"],
            "id",
        ),
        "text_frozen_t01": (
            "MiniLM frozen + ids, sequence user, temperature 0.1",
            "ml1m_minilm_frozen.yaml",
            ["model.temperature=0.1"],
            "text_frozen",
        ),
        # decoder-only encoder, last-token pooling, vectors computed once (as ml100k_smollm2.yaml)
        "smollm2_frozen": (
            "SmolLM2-135M frozen + ids, sequence user",
            "ml1m_minilm_frozen.yaml",
            ["model.encoder=smollm2-135m", "model.pooling=last", "training.eval_batch_size=128"],
            "text",
        ),
    },
}
METRICS = ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20", "mrr@20")


def run_config(dataset, name, seed, out_root, scale, force, launcher) -> tuple[dict, dict]:
    label, config, overrides, _ = RUNS[dataset][name]
    out = out_root / f"{name}_seed{seed}"
    metrics_path, ranks_path = out / "metrics.json", out / "ranks.json"
    if metrics_path.is_file() and ranks_path.is_file() and not force:
        print(f"[{name} seed {seed}] reusing {metrics_path}", flush=True)
        return json.loads(metrics_path.read_text()), json.loads(ranks_path.read_text())
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
        f"training.seed={seed}",
        "training.progress=false",
        *overrides,
    ]
    launch(cmd, out_root / f"{name}_seed{seed}.log", f"{name} seed {seed}")
    return json.loads(metrics_path.read_text()), json.loads(ranks_path.read_text())


def launch(cmd: list[str], log_path: Path, label: str) -> None:
    """Run one recipe command from the repository root, its output to `log_path`; a failure stops the benchmark."""
    print(f"[{label}] {' '.join(cmd)}", flush=True)
    started = time.perf_counter()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"[{label}] failed ({proc.returncode}); see {log_path}")
    print(f"[{label}] done in {time.perf_counter() - started:.0f}s", flush=True)


def run_rows(dataset: str, name: str, seed: int, summary: dict) -> list[dict]:
    label, _, _, kind = RUNS[dataset][name]
    return [
        {
            "dataset": dataset,
            "model": label,
            "run": name,
            "kind": kind,
            "seed": seed,
            "mask_history": mask,
            **{k: summary["results"][f"test_mask={mask}"][k] for k in METRICS},
            "n_events": summary["results"][f"test_mask={mask}"]["n_events"],
            "best_valid_ndcg@10": summary["best_valid_ndcg@10"],
            "epochs": summary["epochs"],
            "stopped": summary["stopped"],
            "train_seconds": summary["train_seconds"],
            "epoch_seconds": summary["epoch_seconds"],
            "examples_per_second": summary["examples_per_second"],
            "trainable_params": summary["trainable_params"],
            "peak_memory_mb": summary.get("peak_memory_mb"),
            "budget_minutes": summary["config"]["training"]["max_train_minutes"],
            "overrides": RUNS[dataset][name][2],
            **best_epoch(summary),
        }
        for mask in (True, False)
    ]


def popularity_rows(dataset: str, summary: dict) -> list[dict]:
    return [
        {
            "dataset": dataset,
            "model": "popularity",
            "run": "popularity",
            "kind": "popularity",
            "seed": None,
            "mask_history": mask,
            **{k: summary["results"][f"popularity_mask={mask}"][k] for k in METRICS},
            "n_events": summary["results"][f"popularity_mask={mask}"]["n_events"],
            "epochs": 0,
            "train_seconds": 0.0,
            "trainable_params": 0,
        }
        for mask in (True, False)
    ]


def summaries(rows: list[dict]) -> list[dict]:
    out = []
    for run in dict.fromkeys(r["run"] for r in rows if r["kind"] != "popularity"):
        for mask in (True, False):
            rs = [r for r in rows if r["run"] == run and r["mask_history"] == mask]
            values = [r["ndcg@10"] for r in rs]
            valid = [r["best_valid_ndcg@10"] for r in rs]
            out.append(
                {
                    "summary": True,
                    "dataset": rs[0]["dataset"],
                    "model": rs[0]["model"],
                    "run": run,
                    "kind": rs[0]["kind"],
                    "mask_history": mask,
                    "seeds": [r["seed"] for r in rs],
                    "ndcg@10_mean": statistics.fmean(values),
                    "ndcg@10_sd": statistics.stdev(values) if len(values) > 1 else None,
                    "recall@10_mean": statistics.fmean(r["recall@10"] for r in rs),
                    "mrr@10_mean": statistics.fmean(r["mrr@10"] for r in rs),
                    "valid_ndcg@10_mean": statistics.fmean(valid),
                    "train_seconds_mean": statistics.fmean(r["train_seconds"] for r in rs),
                    "epochs_mean": statistics.fmean(r["epochs"] for r in rs),
                    "best_epochs": [r.get("best_epoch") for r in rs],
                    "encoder_joins": [r.get("encoder_warmup_epochs") for r in rs],
                }
            )
    return out


def comparisons(summary_rows: list[dict], ranks: dict, extra: list[tuple[str, str]] = ()) -> list[dict]:
    """Paired bootstrap (events) of per-event NDCG@10 averaged over the seeds both runs share: the best text model
    against the best ID-only one, LoRA against frozen, and any `extra` (a, b) pairs of runs (`--compare`)."""

    def best(kinds):  # chosen on validation (masked variant), never on test, among the runs with the most seeds
        most = max((len(s["seeds"]) for s in summary_rows), default=0)
        rows = [s for s in summary_rows if s["kind"] in kinds and s["mask_history"] and len(s["seeds"]) == most]
        return max(rows, key=lambda s: s["valid_ndcg@10_mean"])["run"] if rows else None

    pairs = [
        ("best text vs ID-only", best({"text_frozen", "text_lora", "text"}), best({"id"})),
        ("LoRA vs frozen", best({"text_lora"}), best({"text_frozen"})),
        *((f"{a} vs {b}", a, b) for a, b in extra),
    ]
    out = []
    for label, a, b in pairs:
        seeds = sorted({s for r, s in ranks if r == a} & {s for r, s in ranks if r == b})
        if a is None or a == b or not seeds:
            continue
        for mask in (True, False):
            key = f"test_mask={mask}"

            def per_event(run, key=key, seeds=seeds):
                return sum(ndcg_per_event(ranks[(run, s)][key]) for s in seeds) / len(seeds)

            out.append(
                {
                    "comparison": label,
                    "a": a,
                    "b": b,
                    "mask_history": mask,
                    "seeds": seeds,
                    **paired_bootstrap(per_event(a), per_event(b)),
                }
            )
    return out


def best_epochs(summary: dict) -> str:
    """Each seed's best validation epoch (the tested weights), and for a LoRA row the epoch LoRA joined after."""
    joins = summary.get("encoder_joins") or [None] * len(summary.get("best_epochs", []))
    return (
        ", ".join(
            ("?" if e is None else str(e)) + ("" if j is None else f" ({j})")
            for e, j in zip(summary.get("best_epochs", []), joins)
        )
        or "-"
    )


def markdown(rows, summary_rows, comps, meta) -> str:
    lines = [
        f"{meta['dataset']}, protocol E1 (leave-one-out, full ranking, pessimistic ties). {meta['machine']}, "
        f"{meta['date']}. Commands, in order: " + "; ".join(f"`{c}`" for c in meta.get("commands", [meta["command"]])),
        "",
        "| model | mask_history | NDCG@10 mean | sd | seeds | Recall@10 | MRR@10 | valid NDCG@10 | epochs | train s "
        "| best epochs (encoder joins after) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mask in (True, False):
        for r in (r for r in rows if r["kind"] == "popularity" and r["mask_history"] == mask):
            lines.append(
                f"| popularity | {mask} | {r['ndcg@10']:.4f} | - | - | {r['recall@10']:.4f} | "
                f"{r['mrr@10']:.4f} | - | 0 | 0 | - |"
            )
        for s in (s for s in summary_rows if s["mask_history"] == mask):
            sd = f"{s['ndcg@10_sd']:.4f}" if s["ndcg@10_sd"] is not None else "-"
            lines.append(
                f"| {s['model']} | {mask} | {s['ndcg@10_mean']:.4f} | {sd} | {len(s['seeds'])} | "
                f"{s['recall@10_mean']:.4f} | {s['mrr@10_mean']:.4f} | {s['valid_ndcg@10_mean']:.4f} | "
                f"{s['epochs_mean']:.1f} | {s['train_seconds_mean']:.0f} | {best_epochs(s)} |"
            )
    if comps:
        lines += [
            "",
            "| comparison | a | b | mask_history | seeds | difference [95% CI] | ratio [95% CI] |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in comps:
            carried = " (carried: ranks not stored)" if c.get("carried") else ""
            lines.append(
                f"| {c['comparison']}{carried} | {c['a']} | {c['b']} | {c['mask_history']} | {len(c['seeds'])} | "
                f"{c['mean_difference']:+.4f} [{c['difference_low']:+.4f}, {c['difference_high']:+.4f}] | "
                f"{c['ratio']:.3f} [{c['ratio_low']:.3f}, {c['ratio_high']:.3f}] |"
            )
    return "\n".join(lines) + "\n"


RANK_KEYS = ("test_mask=True", "test_mask=False")


def run_date(folder: Path) -> str:
    """The day a run finished (its metrics.json), not the day it was tabulated."""
    return time.strftime("%Y-%m-%d", time.localtime((folder / "metrics.json").stat().st_mtime))


def suffixed(stem: Path, suffix: str) -> Path:
    """`stem` + `suffix` (not Path.with_suffix, which would cut a table name such as `ml1m.v2` at its dot)."""
    return stem.with_name(stem.name + suffix)


def previous_table(stem: Path) -> tuple[list[dict], list[dict], dict, list[dict], list[str]]:
    """What an earlier benchmark wrote to `stem`.json / `stem`.ranks.json: (popularity rows, run rows, per-event
    ranks by (run, seed), comparisons, commands); empty when there is none."""
    path, ranks_path = suffixed(stem, ".json"), suffixed(stem, ".ranks.json")
    if not path.is_file():
        return [], [], {}, [], []
    try:
        doc = json.loads(path.read_text())
        ranks = json.loads(ranks_path.read_text()) if ranks_path.is_file() else {}
    except json.JSONDecodeError as err:
        raise SystemExit(f"{path} or its ranks: not valid JSON ({err}); move them away to start a new table") from None
    popularity = [r for r in doc["rows"] if r["kind"] == "popularity"]
    rows = [r for r in doc["rows"] if r["kind"] != "popularity"]
    meta = doc.get("meta", {})
    commands = meta.get("commands") or ([meta["command"]] if "command" in meta else [])
    by_run = {(run, int(seed)): v for key, v in ranks.items() for run, _, seed in [key.rpartition("/")]}
    return popularity, rows, by_run, doc.get("comparisons", []), commands


def merge_comparisons(new: list[dict], old: list[dict]) -> list[dict]:
    """The recomputed comparisons, plus earlier ones whose (comparison, mask) could not be recomputed."""
    done = {(c["comparison"], c["mask_history"]) for c in new}
    kept = [{**c, "carried": True} for c in old if (c["comparison"], c["mask_history"]) not in done]
    return new + kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k", choices=sorted(RUNS))
    parser.add_argument("--only", action="append", help="run only these (repeatable); finished others still count")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every training budget")
    parser.add_argument("--out", default=None, help="run folders (default: outputs/bench_<dataset>)")
    parser.add_argument("--force", action="store_true", help="redo runs that already finished")
    parser.add_argument("--reuse-only", action="store_true", help="start no run: tabulate the finished ones")
    parser.add_argument("--table", default=None, help="output name under docs/benchmarks (default: the dataset's)")
    parser.add_argument(
        "--compare", nargs=2, action="append", default=[], metavar=("A", "B"), help="also pair run A with run B"
    )
    parser.add_argument("--launcher", default=sys.executable, help="e.g. 'accelerate launch --num_processes 1'")
    args = parser.parse_args()
    unknown = [run for pair in args.compare for run in pair if run not in RUNS[args.dataset]]
    if unknown:
        parser.error(f"--compare: no run {unknown} for {args.dataset}; runs: {', '.join(RUNS[args.dataset])}")
    import torch

    stem = args.dataset.replace("-", "")
    out_root = ROOT / (args.out or f"outputs/bench_{stem}")
    table_name = args.table or stem
    meta = {
        "dataset": args.dataset,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", CPU only"),
        "command": "python scripts/benchmark_movielens.py " + " ".join(sys.argv[1:]),
        "torch": torch.__version__,
        "budget_scale": args.budget_scale,
    }
    stem = ROOT / "docs" / "benchmarks" / table_name
    popularity, old_rows, ranks, old_comps, commands = previous_table(stem)
    # a repeated command (a re-run of the same merge) is listed once
    meta["commands"] = [c for c in commands if c != meta["command"]] + [meta["command"]]
    measured: dict[tuple, list[dict]] = {}
    for r in old_rows:
        defined = RUNS[args.dataset].get(r["run"])
        if "overrides" in r and defined is not None and r["overrides"] != defined[2]:
            raise SystemExit(
                f"{stem}.json: run {r['run']!r} seed {r['seed']} was measured with overrides {r['overrides']}, but "
                f"RUNS now defines {defined[2]}: give the changed run a new name, or use another --table"
            )
        measured.setdefault((r["run"], r["seed"]), []).append(r)

    def write() -> str:  # after every run, so that a cut-off benchmark keeps what it finished
        rows = [r for rs in measured.values() for r in rs]
        summary_rows = summaries(rows)
        comps = merge_comparisons(comparisons(summary_rows, ranks, args.compare), old_comps)
        doc = {"meta": meta, "rows": popularity + rows, "summary": summary_rows, "comparisons": comps}
        stem.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(suffixed(stem, ".json"), json.dumps(doc, indent=2) + "\n")
        stored = {f"{run}/{s}": v for (run, s), v in ranks.items()}
        atomic_write_text(suffixed(stem, ".ranks.json"), json.dumps(stored, separators=(",", ":")) + "\n")
        table = markdown(popularity + rows, summary_rows, comps, meta)
        atomic_write_text(suffixed(stem, ".md"), table)
        return table

    for seed in args.seeds:  # seed-major: a cut-off benchmark has every model at the first seeds
        for name in RUNS[args.dataset]:
            done = (out_root / f"{name}_seed{seed}" / "ranks.json").is_file()
            if (args.only and name not in args.only and not done) or (args.reuse_only and not done):
                continue
            force = args.force and (not args.only or name in args.only)
            summary, run_ranks = run_config(
                args.dataset, name, seed, out_root, args.budget_scale, force, args.launcher.split()
            )
            ranks[(name, seed)] = {k: run_ranks[k] for k in RANK_KEYS}
            popularity = popularity or popularity_rows(args.dataset, summary)
            # replaces an earlier row; each row says where and when it was measured (the meta is the last command's)
            where = {"measured_on": meta["machine"], "measured_date": run_date(out_root / f"{name}_seed{seed}")}
            measured[(name, seed)] = [{**r, **where} for r in run_rows(args.dataset, name, seed, summary)]
            write()
    print(write() if measured else "no run finished and no earlier table: nothing written")


if __name__ == "__main__":
    main()
